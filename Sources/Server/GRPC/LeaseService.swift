import EtcdAPI
import EtcdProto
import GRPCCore
import Node

/// etcdserverpb.Lease over gRPC.
struct LeaseService: Etcdserverpb_Lease.SimpleServiceProtocol {
    let handler: EtcdHandler

    func leaseGrant(request: Etcdserverpb_LeaseGrantRequest, context: ServerContext) async throws
        -> Etcdserverpb_LeaseGrantResponse
    {
        try await rpc { () async throws(EtcdError) in try await handler.leaseGrant(request) }
    }

    func leaseRevoke(request: Etcdserverpb_LeaseRevokeRequest, context: ServerContext) async throws
        -> Etcdserverpb_LeaseRevokeResponse
    {
        try await rpc { () async throws(EtcdError) in try await handler.leaseRevoke(request) }
    }

    func leaseKeepAlive(
        request: RPCAsyncSequence<Etcdserverpb_LeaseKeepAliveRequest, any Error>,
        response: RPCWriter<Etcdserverpb_LeaseKeepAliveResponse>,
        context: ServerContext
    ) async throws {
        for try await keepAlive in request {
            let answer = try await rpc { () async throws(EtcdError) in try await handler.leaseKeepAlive(keepAlive.id) }
            try await response.write(answer)
        }
    }

    func leaseTimeToLive(request: Etcdserverpb_LeaseTimeToLiveRequest, context: ServerContext) async throws
        -> Etcdserverpb_LeaseTimeToLiveResponse
    {
        try await rpc { () async throws(EtcdError) in try await handler.leaseTimeToLive(request) }
    }

    func leaseLeases(request: Etcdserverpb_LeaseLeasesRequest, context: ServerContext) async throws
        -> Etcdserverpb_LeaseLeasesResponse
    {
        try await rpc { () async throws(EtcdError) in try await handler.leaseLeases() }
    }
}
