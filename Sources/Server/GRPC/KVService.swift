import EtcdAPI
import EtcdProto
import GRPCCore
import Node

/// etcdserverpb.KV over gRPC.
struct KVService: Etcdserverpb_KV.SimpleServiceProtocol {
    let handler: EtcdHandler

    func range(request: Etcdserverpb_RangeRequest, context: ServerContext) async throws -> Etcdserverpb_RangeResponse
    {
        try await rpc { () async throws(EtcdError) in try await handler.range(request) }
    }

    func put(request: Etcdserverpb_PutRequest, context: ServerContext) async throws -> Etcdserverpb_PutResponse {
        try await rpc { () async throws(EtcdError) in try await handler.put(request) }
    }

    func deleteRange(request: Etcdserverpb_DeleteRangeRequest, context: ServerContext) async throws
        -> Etcdserverpb_DeleteRangeResponse
    {
        try await rpc { () async throws(EtcdError) in try await handler.deleteRange(request) }
    }

    func txn(request: Etcdserverpb_TxnRequest, context: ServerContext) async throws -> Etcdserverpb_TxnResponse {
        try await rpc { () async throws(EtcdError) in try await handler.txn(request) }
    }

    func compact(request: Etcdserverpb_CompactionRequest, context: ServerContext) async throws
        -> Etcdserverpb_CompactionResponse
    {
        try await rpc { () async throws(EtcdError) in try await handler.compact(request) }
    }
}
