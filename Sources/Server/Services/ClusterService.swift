import Auth
import EtcdAPI
import EtcdProto
import GRPCCore
import Node

/// etcdserverpb.Cluster over gRPC.
struct ClusterService: Etcdserverpb_Cluster.SimpleServiceProtocol {
    let handler: EtcdHandler

    func memberAdd(request: Etcdserverpb_MemberAddRequest, context: ServerContext) async throws
        -> Etcdserverpb_MemberAddResponse
    {
        try await rpc { () async throws(EtcdError) in
            try await handler.memberAdd(request, try await handler.currentCaller())
        }
    }

    func memberRemove(request: Etcdserverpb_MemberRemoveRequest, context: ServerContext) async throws
        -> Etcdserverpb_MemberRemoveResponse
    {
        try await rpc { () async throws(EtcdError) in
            try await handler.memberRemove(request, try await handler.currentCaller())
        }
    }

    func memberUpdate(request: Etcdserverpb_MemberUpdateRequest, context: ServerContext) async throws
        -> Etcdserverpb_MemberUpdateResponse
    {
        try await rpc { () async throws(EtcdError) in
            try await handler.memberUpdate(request, try await handler.currentCaller())
        }
    }

    func memberList(request: Etcdserverpb_MemberListRequest, context: ServerContext) async throws
        -> Etcdserverpb_MemberListResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            try handler.authorize(.memberList, caller)
            if request.linearizable { try await handler.node.readBarrier() }
            return try handler.memberList(caller)
        }
    }

    func memberPromote(request: Etcdserverpb_MemberPromoteRequest, context: ServerContext) async throws
        -> Etcdserverpb_MemberPromoteResponse
    {
        try await rpc { () async throws(EtcdError) in
            try await handler.memberPromote(request, try await handler.currentCaller())
        }
    }
}
