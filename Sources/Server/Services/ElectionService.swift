import Auth
import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import MVCC
import Node

/// v3electionpb.Election: leader election on keys owned by leases; the oldest candidate key leads.
struct ElectionService: V3electionpb_Election.SimpleServiceProtocol {
    let handler: EtcdHandler

    static let missingLeader = EtcdError(.unknown, "\"leader\" field must be provided")
    static let notLeader = EtcdError(.unknown, "election: not leader")
    static let noLeader = EtcdError(.unknown, "election: no leader")

    func campaign(request: V3electionpb_CampaignRequest, context: ServerContext) async throws
        -> V3electionpb_CampaignResponse
    {
        try await rpc { () async throws(EtcdError) in try await campaign(request, try await handler.currentCaller()) }
    }

    /// Campaign for `caller` (the gRPC service and the JSON gateway).
    func campaign(_ request: V3electionpb_CampaignRequest, _ caller: Caller) async throws(EtcdError)
        -> V3electionpb_CampaignResponse
    {
        let recipes = Recipes(handler: handler, caller: caller)
        let prefix = request.name + Data("/".utf8)
        let key = Recipes.ownKey(prefix: prefix, lease: request.lease)
        let queued = try await recipes.enqueue(key: key, prefix: prefix, value: request.value, lease: request.lease)
        var leader = V3electionpb_LeaderKey()
        leader.name = request.name
        leader.key = key
        leader.rev = queued.myRevision
        leader.lease = request.lease
        if let existing = queued.existing, existing.value != request.value {
            try await proclaim(leader, value: request.value, caller)
        }
        let header = try await recipes.waitDeletes(prefix: prefix, maxCreate: queued.myRevision - 1)
        var response = V3electionpb_CampaignResponse()
        response.header = header
        response.leader = leader
        return response
    }

    func proclaim(request: V3electionpb_ProclaimRequest, context: ServerContext) async throws
        -> V3electionpb_ProclaimResponse
    {
        try await rpc { () async throws(EtcdError) in try await proclaim(request, try await handler.currentCaller()) }
    }

    func proclaim(_ request: V3electionpb_ProclaimRequest, _ caller: Caller) async throws(EtcdError)
        -> V3electionpb_ProclaimResponse
    {
        guard request.hasLeader else { throw Self.missingLeader }
        let header = try await proclaim(request.leader, value: request.value, caller)
        var response = V3electionpb_ProclaimResponse()
        response.header = header
        return response
    }

    @discardableResult
    private func proclaim(_ leader: V3electionpb_LeaderKey, value: Data, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_ResponseHeader
    {
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = [ownership(leader)]
        var put = Etcdserverpb_PutRequest()
        put.key = leader.key
        put.value = value
        put.lease = leader.lease
        var op = Etcdserverpb_RequestOp()
        op.requestPut = put
        txn.success = [op]
        let response = try await handler.txn(txn, caller)
        guard response.succeeded else { throw Self.notLeader }
        return response.header
    }

    private func ownership(_ leader: V3electionpb_LeaderKey) -> Etcdserverpb_Compare {
        var compare = Etcdserverpb_Compare()
        compare.key = leader.key
        compare.target = .create
        compare.result = .equal
        compare.createRevision = leader.rev
        return compare
    }

    func leader(request: V3electionpb_LeaderRequest, context: ServerContext) async throws
        -> V3electionpb_LeaderResponse
    {
        try await rpc { () async throws(EtcdError) in try await leader(request, try await handler.currentCaller()) }
    }

    func leader(_ request: V3electionpb_LeaderRequest, _ caller: Caller) async throws(EtcdError)
        -> V3electionpb_LeaderResponse
    {
        let range = try await handler.range(
            Recipes(handler: handler, caller: caller).firstCreated(prefix: request.name + Data("/".utf8)), caller)
        guard let kv = range.kvs.first else { throw Self.noLeader }
        var response = V3electionpb_LeaderResponse()
        response.header = range.header
        response.kv = kv
        return response
    }

    func observe(
        request: V3electionpb_LeaderRequest, response: RPCWriter<V3electionpb_LeaderResponse>, context: ServerContext
    ) async throws {
        let caller = try await rpc { () async throws(EtcdError) in try await handler.currentCaller() }
        try await observe(request, caller) { try await response.write($0) }
    }

    /// Reports the election's leader, then each change, through `write` until the task is cancelled; an
    /// `EtcdError` is thrown before anything is written (the caller may not watch the election's keys), other
    /// errors come from `write`.
    func observe(
        _ request: V3electionpb_LeaderRequest, _ caller: Caller,
        write: (V3electionpb_LeaderResponse) async throws -> Void
    ) async throws {
        let prefix = request.name + Data("/".utf8)
        try await rpc { () async throws(EtcdError) in
            // Observing watches the election's keys: read on the prefix, as etcd's watch check asks.
            var watched = Etcdserverpb_WatchCreateRequest()
            watched.key = prefix
            watched.rangeEnd = KeyRange.prefixEnd(prefix)
            try handler.check(caller) { (store, info) throws(AuthError) in try store.checkWatch(watched, info) }
        }
        let recipes = Recipes(handler: handler, caller: caller)
        while !Task.isCancelled {
            let current = try await rpc { () async throws(EtcdError) in
                try await handler.range(recipes.firstCreated(prefix: prefix), caller)
            }
            var leader: Mvccpb_KeyValue
            var header = current.header
            if let first = current.kvs.first {
                leader = first
            } else {
                // No leader yet: wait for the first put under the prefix.
                let watch = InternalWatch(
                    handler: handler, range: KeyRange(key: prefix, rangeEnd: KeyRange.prefixEnd(prefix)),
                    startRevision: current.header.revision)
                defer { watch.close() }
                var found: Mvccpb_KeyValue?
                while found == nil, let events = await watch.next() {
                    found = events.first { $0.type == .put }?.kv
                }
                guard let found else { return }
                leader = found
                header.revision = found.modRevision
            }
            var message = V3electionpb_LeaderResponse()
            message.header = header
            message.kv = leader
            try await write(message)
            // Follow the leader's key until it is deleted, reporting each new value.
            let watch = InternalWatch(handler: handler, range: .single(leader.key), startRevision: header.revision + 1)
            defer { watch.close() }
            var deleted = false
            while !deleted, let events = await watch.next() {
                for event in events {
                    if event.type == .delete {
                        deleted = true
                        break
                    }
                    var update = V3electionpb_LeaderResponse()
                    update.header = handler.node.header(revision: event.kv.modRevision)
                    update.kv = event.kv
                    try await write(update)
                }
            }
            if !deleted { return }
        }
    }

    func resign(request: V3electionpb_ResignRequest, context: ServerContext) async throws
        -> V3electionpb_ResignResponse
    {
        try await rpc { () async throws(EtcdError) in try await resign(request, try await handler.currentCaller()) }
    }

    func resign(_ request: V3electionpb_ResignRequest, _ caller: Caller) async throws(EtcdError)
        -> V3electionpb_ResignResponse
    {
        guard request.hasLeader else { throw Self.missingLeader }
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = [ownership(request.leader)]
        var delete = Etcdserverpb_DeleteRangeRequest()
        delete.key = request.leader.key
        var op = Etcdserverpb_RequestOp()
        op.requestDeleteRange = delete
        txn.success = [op]
        let result = try await handler.txn(txn, caller)
        var response = V3electionpb_ResignResponse()
        response.header = result.header
        return response
    }
}
