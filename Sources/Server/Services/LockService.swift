import Auth
import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import Node

/// v3lockpb.Lock: distributed mutexes on keys owned by leases.
struct LockService: V3lockpb_Lock.SimpleServiceProtocol {
    let handler: EtcdHandler

    func lock(request: V3lockpb_LockRequest, context: ServerContext) async throws -> V3lockpb_LockResponse {
        try await rpc { () async throws(EtcdError) in try await lock(request, try await handler.currentCaller()) }
    }

    /// Acquires the lock for `caller` (the gRPC service and the JSON gateway).
    func lock(_ request: V3lockpb_LockRequest, _ caller: Caller) async throws(EtcdError) -> V3lockpb_LockResponse {
        let recipes = Recipes(handler: handler, caller: caller)
        let prefix = request.name + Data("/".utf8)
        let key = Recipes.ownKey(prefix: prefix, lease: request.lease)
        let queued = try await recipes.enqueue(key: key, prefix: prefix, value: Data(), lease: request.lease)
        var header = queued.header
        if let owner = queued.owner, owner != queued.myRevision {
            header = try await recipes.waitDeletes(prefix: prefix, maxCreate: queued.myRevision - 1)
            // The lease may have expired while waiting: then the lock was never acquired.
            var check = Etcdserverpb_RangeRequest()
            check.key = key
            if try await handler.range(check, caller).kvs.isEmpty {
                throw EtcdError(.unknown, "mutex: session is expired")
            }
        }
        var response = V3lockpb_LockResponse()
        response.header = header
        response.key = key
        return response
    }

    func unlock(request: V3lockpb_UnlockRequest, context: ServerContext) async throws -> V3lockpb_UnlockResponse {
        try await rpc { () async throws(EtcdError) in try await unlock(request, try await handler.currentCaller()) }
    }

    func unlock(_ request: V3lockpb_UnlockRequest, _ caller: Caller) async throws(EtcdError)
        -> V3lockpb_UnlockResponse
    {
        var delete = Etcdserverpb_DeleteRangeRequest()
        delete.key = request.key
        let deleted = try await handler.deleteRange(delete, caller)
        var response = V3lockpb_UnlockResponse()
        response.header = deleted.header
        return response
    }
}
