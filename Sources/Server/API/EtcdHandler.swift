import Auth
import EtcdProto
import Foundation
import GRPCCore
import MVCC
import NIOCore
import Node
import Synchronization

/// The etcd v3 API over a member, independent of transport: the gRPC services and the JSON gateway both call
/// it, so the two can never disagree. Every method returns a fully stamped response or throws `EtcdError`.
public final class EtcdHandler: Sendable {
    public let node: MemberNode
    /// Reaches the leader for what only it can answer (lease keep-alives, promotions); nil on a lone member.
    let peers: PeerTransport?
    /// Follower keep-alives on their way to the leader, batched.
    let renewals: LeaseRenewalForwarder?

    public init(node: MemberNode, peers: PeerTransport? = nil) {
        self.node = node
        self.peers = peers
        renewals = peers.map { LeaseRenewalForwarder(node: node, peers: $0) }
    }

    var config: NodeConfig { node.config }

    #if DEBUG
        /// TEST ONLY, and only in debug builds: serve linearizable reads locally, skipping ReadIndex. It exists so the
        /// fault harness can show that it catches the stale reads this produces (a mutation check); a release build
        /// has no such switch.
        static let unsafeLocalReads = ProcessInfo.processInfo.environment["QUORUM_TESTING_UNSAFE_LOCAL_READS"] == "1"
    #else
        static let unsafeLocalReads = false
    #endif

    // MARK: KV

    /// Every call comes in two forms: one taking a completion, which the client transport uses to answer from
    /// the event loop without a task per call (the completion runs on the Raft loop's thread or the caller's), and
    /// an async one built on it, for everything else.
    public typealias Completion<Response> = @Sendable (Result<Response, EtcdError>) -> Void

    public func range(_ r: Etcdserverpb_RangeRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_RangeResponse
    {
        try TxnRules.validate(r)
        if needsReadBarrier(r) { try await node.readBarrier() }
        return try rangeNow(r, caller)
    }

    /// Whether a Range must wait for ReadIndex first (it is linearizable).
    public func needsReadBarrier(_ r: Etcdserverpb_RangeRequest) -> Bool {
        !r.serializable && !Self.unsafeLocalReads
    }

    /// Serves a validated Range against the state applied so far. With auth on, as etcd's `doSerialize`: the
    /// caller needs read on the range, and the answer is dropped if the auth store changed during the read.
    public func rangeNow(_ r: Etcdserverpb_RangeRequest, _ caller: Caller) throws(EtcdError)
        -> Etcdserverpb_RangeResponse
    {
        try check(caller) { (store, info) throws(AuthError) in try store.checkRange(r, info) }
        var response = try execute {
            try RangeExecutorFacade.range(r, store: node.store)
        }
        try check(caller) { (store, info) throws(AuthError) in try store.ensureRevisionUnchanged(info) }
        response.header = node.header(revision: response.header.revision)
        node.observer.rangeServed()
        return response
    }

    public func put(_ r: Etcdserverpb_PutRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_PutResponse
    {
        try await awaiting { put(r, caller, completion: $0) }
    }

    /// Writes are checked where they are applied, against the identity the proposal carries (`stamp`).
    public func put(
        _ r: Etcdserverpb_PutRequest, _ caller: Caller, deadline: Int64? = nil,
        completion: @escaping Completion<Etcdserverpb_PutResponse>
    ) {
        do throws(EtcdError) {
            try TxnRules.validate(r)
            try checkQuota(cost: r.key.count + r.value.count)
        } catch {
            return completion(.failure(error))
        }
        var request = Quorumpb_RaftRequest()
        request.put = r
        stamp(&request, caller)
        propose(request, deadline: deadline, completion) { applied in
            guard case .put(var response) = applied else { return nil }
            response.header = self.node.header(revision: response.header.revision)
            return response
        }
    }

    public func deleteRange(_ r: Etcdserverpb_DeleteRangeRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_DeleteRangeResponse
    {
        try await awaiting { deleteRange(r, caller, completion: $0) }
    }

    public func deleteRange(
        _ r: Etcdserverpb_DeleteRangeRequest, _ caller: Caller, deadline: Int64? = nil,
        completion: @escaping Completion<Etcdserverpb_DeleteRangeResponse>
    ) {
        do throws(EtcdError) { try TxnRules.validate(r) } catch { return completion(.failure(error)) }
        var request = Quorumpb_RaftRequest()
        request.deleteRange = r
        stamp(&request, caller)
        propose(request, deadline: deadline, completion) { applied in
            guard case .deleteRange(var response) = applied else { return nil }
            response.header = self.node.header(revision: response.header.revision)
            return response
        }
    }

    public func txn(_ r: Etcdserverpb_TxnRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_TxnResponse
    {
        try await awaiting { txn(r, caller, completion: $0) }
    }

    public func txn(
        _ r: Etcdserverpb_TxnRequest, _ caller: Caller, deadline: Int64? = nil,
        completion: @escaping Completion<Etcdserverpb_TxnResponse>
    ) {
        do throws(EtcdError) {
            try TxnRules.validate(r, maxOps: config.maxTxnOps)
            if TxnRules.hasPut(r) { try checkQuota(cost: 256) }
        } catch {
            return completion(.failure(error))
        }
        var request = Quorumpb_RaftRequest()
        request.txn = r
        stamp(&request, caller)
        propose(request, deadline: deadline, completion) { applied in
            guard case .txn(var response) = applied else { return nil }
            response.header = self.node.header(revision: response.header.revision)
            return response
        }
    }

    public func compact(_ r: Etcdserverpb_CompactionRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_CompactionResponse
    {
        try await awaiting { compact(r, caller, completion: $0) }
    }

    public func compact(
        _ r: Etcdserverpb_CompactionRequest, _ caller: Caller, deadline: Int64? = nil,
        completion: @escaping Completion<Etcdserverpb_CompactionResponse>
    ) {
        do throws(EtcdError) { try authorize(.compact, caller) } catch { return completion(.failure(error)) }
        var request = Quorumpb_RaftRequest()
        request.compaction = r
        propose(request, deadline: deadline, completion) { applied in
            guard case .compaction(var response) = applied else { return nil }
            response.header = self.node.header(revision: response.header.revision)
            return response
        }
    }

    // MARK: Leases

    public func leaseGrant(_ r: Etcdserverpb_LeaseGrantRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_LeaseGrantResponse
    {
        try await awaiting { leaseGrant(r, caller, completion: $0) }
    }

    public func leaseGrant(
        _ r: Etcdserverpb_LeaseGrantRequest, _ caller: Caller, deadline: Int64? = nil,
        completion: @escaping Completion<Etcdserverpb_LeaseGrantResponse>
    ) {
        do throws(EtcdError) {
            try authorize(.leaseGrant, caller)
            if r.ttl > Lessor.maxTTL { throw .leaseTTLTooLarge }
            try checkQuota(cost: 64)
        } catch {
            return completion(.failure(error))
        }
        node.propose(node.leaseGrantRequest(ttl: r.ttl, id: r.id), deadline: deadline) { result in
            completion(
                result.flatMap { applied in
                    guard case .leaseGrant(var response) = applied else { return .failure(self.unexpected()) }
                    response.header = self.node.header(revision: response.header.revision)
                    return .success(response)
                })
        }
    }

    public func leaseRevoke(_ r: Etcdserverpb_LeaseRevokeRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_LeaseRevokeResponse
    {
        try await awaiting { leaseRevoke(r, caller, completion: $0) }
    }

    /// Needs some identity here, and write on every attached key where it is applied.
    public func leaseRevoke(
        _ r: Etcdserverpb_LeaseRevokeRequest, _ caller: Caller, deadline: Int64? = nil,
        completion: @escaping Completion<Etcdserverpb_LeaseRevokeResponse>
    ) {
        do throws(EtcdError) { try authorize(.leaseRevoke, caller) } catch { return completion(.failure(error)) }
        var request = Quorumpb_RaftRequest()
        request.leaseRevoke = r
        stamp(&request, caller)
        propose(request, deadline: deadline, completion) { applied in
            guard case .leaseRevoke(var response) = applied else { return nil }
            response.header = self.node.header(revision: response.header.revision)
            return response
        }
    }

    /// etcd's `checkLeaseRenew`: some identity and, unless root, write on every key attached to the lease.
    public func checkLeaseKeepAlive(_ id: Int64, _ caller: Caller) throws(EtcdError) {
        guard case .client = caller, node.auth.isEnabled else { return }
        let keys = leaseKeys(id)
        try check(caller) { (store, info) throws(AuthError) in try store.checkLeaseRenew(info, leaseKeys: keys) }
    }

    /// A keep-alive the member can answer at once (it leads and knows the lease), or nil when it must ask the
    /// leader (`leaseKeepAlive(_:)`).
    public func leaseKeepAliveNow(_ id: Int64) -> Etcdserverpb_LeaseKeepAliveResponse? {
        guard let ttl = node.leases.renew(id) else { return nil }
        return keepAliveResponse(id: id, ttl: ttl)
    }

    private func keepAliveResponse(id: Int64, ttl: Int64) -> Etcdserverpb_LeaseKeepAliveResponse {
        var response = Etcdserverpb_LeaseKeepAliveResponse()
        response.id = id
        response.ttl = ttl
        response.header = node.header(revision: node.store.revisions.current)
        return response
    }

    /// One keep-alive: the renewed TTL, or 0 when the lease no longer exists (etcd's answer). Only the leader
    /// tracks deadlines, so a follower forwards the renewal to it; without a leader it retries for a while.
    public func leaseKeepAlive(_ id: Int64) async throws(EtcdError) -> Etcdserverpb_LeaseKeepAliveResponse {
        for attempt in 0... {
            if let response = leaseKeepAliveNow(id) { return response }
            if let forwarded = await withCheckedContinuation({ c in forwardKeepAlive(id) { c.resume(returning: $0) } })
            {
                return forwarded
            }
            if attempt >= 50 { throw node.status.hasLeader ? .timeout : .noLeader }
            try? await Task.sleep(for: .milliseconds(100))
        }
        throw .timeout
    }

    /// Renews at the leader from a follower: the answer, or nil when there is no leader to ask right now. False
    /// (and `completion` never called) when too many renewals already wait for the leader: "too many requests".
    @discardableResult
    public func forwardKeepAlive(
        _ id: Int64, completion: @escaping @Sendable (Etcdserverpb_LeaseKeepAliveResponse?) -> Void
    ) -> Bool {
        guard let renewals else {
            completion(nil)
            return true
        }
        return renewals.renew(id) { ttl in completion(ttl.map { self.keepAliveResponse(id: id, ttl: $0) }) }
    }

    /// Keep-alives retrying until a leader answers (`leaseKeepAlive(_:)` from the client port's fast path), at
    /// most `maxKeepAlivesAwaitingLeader`: without a leader each costs a task for up to five seconds, so a client
    /// that keeps sending renewals must not grow them without end.
    let keepAlivesAwaitingLeader = Atomic<Int>(0)
    static let maxKeepAlivesAwaitingLeader = 10_000

    /// Runs `body` as one of the keep-alives awaiting a leader, or returns false when there are too many already.
    func awaitingLeader(_ body: @escaping @Sendable () async -> Void) -> Bool {
        if keepAlivesAwaitingLeader.wrappingAdd(1, ordering: .relaxed).newValue > Self.maxKeepAlivesAwaitingLeader {
            keepAlivesAwaitingLeader.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        Task {
            await body()
            keepAlivesAwaitingLeader.wrappingSubtract(1, ordering: .relaxed)
        }
        return true
    }

    /// The remaining TTL is the leader's to tell: followers keep no deadlines, so they ask it.
    public func leaseTimeToLive(_ r: Etcdserverpb_LeaseTimeToLiveRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_LeaseTimeToLiveResponse
    {
        // etcd's `checkLeaseTimeToLive`: with `keys`, read on every attached key (the keys are replicated state,
        // so this member can check them before asking the leader for the TTL).
        try authorize(.leaseTimeToLive, caller)
        if r.keys {
            let keys = leaseKeys(r.id)
            try check(caller) { (store, info) throws(AuthError) in
                try store.checkLeaseTimeToLive(info, leaseKeys: keys)
            }
        }
        let leader = node.status.leader
        if leader != 0, leader != node.memberID, let client = peers?.client(for: leader),
            var forwarded = try? await client.leaseTimeToLive(r, options: .peerRequest)
        {
            if forwarded.ttl != -1 { forwarded.header = node.header(revision: node.store.revisions.current) }
            return forwarded
        }
        return try await localLeaseTimeToLive(r)
    }

    func localLeaseTimeToLive(_ r: Etcdserverpb_LeaseTimeToLiveRequest) async throws(EtcdError)
        -> Etcdserverpb_LeaseTimeToLiveResponse
    {
        try await node.readBarrier()
        var response = Etcdserverpb_LeaseTimeToLiveResponse()
        response.id = r.id
        if let info = node.leases.timeToLive(r.id) {
            response.ttl = info.remaining
            response.grantedTtl = info.granted
            if r.keys { response.keys = info.keys }
            response.header = node.header(revision: node.store.revisions.current)
        } else {
            // etcd answers a missing lease with TTL -1 and an empty header, not an error.
            response.ttl = -1
        }
        return response
    }

    public func leaseLeases(_ caller: Caller) async throws(EtcdError) -> Etcdserverpb_LeaseLeasesResponse {
        try authorize(.leaseLeases, caller)
        if case .client = caller, node.auth.isEnabled {
            let all = node.leases.ids.compactMap { leaseKeys($0) }
            try check(caller) { (store, info) throws(AuthError) in try store.checkLeaseLeases(info, allLeaseKeys: all) }
        }
        try await node.readBarrier()
        var response = Etcdserverpb_LeaseLeasesResponse()
        response.leases = node.leases.ids.map { id in
            var status = Etcdserverpb_LeaseStatus()
            status.id = id
            return status
        }
        response.header = node.header(revision: node.store.revisions.current)
        return response
    }

    // MARK: Maintenance

    public func alarm(_ r: Etcdserverpb_AlarmRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_AlarmResponse
    {
        try authorize(r.action == .get ? .alarmGet : .alarmChange, caller)
        if r.action == .get {
            var response = Etcdserverpb_AlarmResponse()
            response.alarms = node.alarms.all.filter { r.alarm == .none || $0.type == r.alarm }.map(\.proto)
            response.header = node.header(revision: node.store.revisions.current)
            return response
        }
        var request = Quorumpb_RaftRequest()
        request.alarm = r
        guard case .alarm(var response) = try await propose(request) else { throw unexpected() }
        response.header = node.header(revision: response.header.revision)
        return response
    }

    public func status(_ caller: Caller) throws(EtcdError) -> Etcdserverpb_StatusResponse {
        try authorize(.status, caller)
        let s = node.status
        var response = Etcdserverpb_StatusResponse()
        response.header = node.header(revision: node.store.revisions.current)
        response.version = Version.etcdServer
        let size = (try? node.backend.size()) ?? (total: 0, inUse: 0)
        response.dbSize = size.total
        response.dbSizeInUse = size.inUse
        response.leader = s.leader
        response.raftIndex = s.commitIndex
        response.raftTerm = s.term
        response.raftAppliedIndex = s.appliedIndex
        response.isLearner = s.isLearner
        response.dbSizeQuota = config.quotaBackendBytes
        response.storageVersion = Version.storage
        response.downgradeInfo = node.versions.values.downgrade
        response.errors = node.alarms.all.map { "memberID:\($0.member) alarm:\($0.type)" }
        return response
    }

    public func defragment(_ caller: Caller) async throws(EtcdError) -> Etcdserverpb_DefragmentResponse {
        try authorize(.defragment, caller)
        try await node.defragment()
        var response = Etcdserverpb_DefragmentResponse()
        response.header = node.header(revision: node.store.revisions.current)
        return response
    }

    public func moveLeader(_ r: Etcdserverpb_MoveLeaderRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_MoveLeaderResponse
    {
        try authorize(.moveLeader, caller)
        try await node.moveLeader(to: r.targetID)
        var response = Etcdserverpb_MoveLeaderResponse()
        response.header = node.header(revision: node.store.revisions.current)
        return response
    }

    public func hashKV(_ r: Etcdserverpb_HashKVRequest, _ caller: Caller) throws(EtcdError)
        -> Etcdserverpb_HashKVResponse
    {
        try authorize(.hashKV, caller)
        let result = try execute { try node.store.hashKV(revision: r.revision) }
        var response = Etcdserverpb_HashKVResponse()
        response.header = node.header(revision: node.store.revisions.current)
        response.hash = result.hash
        response.compactRevision = result.compactRevision
        response.hashRevision = result.revision
        return response
    }

    public func hash(_ caller: Caller) throws(EtcdError) -> Etcdserverpb_HashResponse {
        try authorize(.hash, caller)
        let result = try execute { try node.store.hashKV(revision: 0) }
        var response = Etcdserverpb_HashResponse()
        response.header = node.header(revision: node.store.revisions.current)
        response.hash = result.hash
        return response
    }

    public func memberList(_ caller: Caller) throws(EtcdError) -> Etcdserverpb_MemberListResponse {
        try authorize(.memberList, caller)
        var response = Etcdserverpb_MemberListResponse()
        response.header = node.header(revision: 0)
        response.members = node.members.all.map(\.proto)
        return response
    }

    // MARK: Helpers

    /// A caller's deadline on this member's clock (`MemberNode.now`), as `propose` and `readBarrier` take it.
    func nodeDeadline(_ deadline: NIODeadline?) -> Int64? {
        guard let deadline else { return nil }
        return node.now() + (deadline - .now()).nanoseconds
    }

    func propose(_ request: Quorumpb_RaftRequest) async throws(EtcdError) -> ApplyResponse {
        try await node.propose(request).get()
    }

    /// Proposes `request` and hands `completion` the response `extract` makes of the applied result.
    private func propose<Response>(
        _ request: Quorumpb_RaftRequest, deadline: Int64?, _ completion: @escaping Completion<Response>,
        extract: @escaping @Sendable (ApplyResponse) -> Response?
    ) {
        node.propose(request, deadline: deadline) { result in
            completion(
                result.flatMap { applied in extract(applied).map { .success($0) } ?? .failure(self.unexpected()) })
        }
    }

    /// The async form of a completion-taking call.
    private func awaiting<Response: Sendable>(_ start: (@escaping Completion<Response>) -> Void) async throws(EtcdError)
        -> Response
    {
        try await withCheckedContinuation { continuation in start { continuation.resume(returning: $0) } }.get()
    }

    /// etcd's quota: a write that would grow the data past the quota raises NOSPACE and is refused. Measured on the
    /// space the data occupies, not on the files (SQLite's journal and free pages would trip a small quota at once).
    func checkQuota(cost: Int) throws(EtcdError) {
        if node.alarms.contains(.nospace) { throw .noSpace }
        guard config.quotaBackendBytes > 0 else { return }
        if node.backendSizeInUse + Int64(cost) > config.quotaBackendBytes {
            let node = self.node
            Task {
                var request = Quorumpb_RaftRequest()
                var alarm = Etcdserverpb_AlarmRequest()
                alarm.action = .activate
                alarm.memberID = node.memberID
                alarm.alarm = .nospace
                request.alarm = alarm
                _ = await node.propose(request)
            }
            throw .noSpace
        }
    }

    func execute<T>(_ body: () throws -> T) throws(EtcdError) -> T {
        do {
            return try body()
        } catch let error as EtcdError {
            throw error
        } catch let error as MVCCError {
            throw EtcdError(error)
        } catch {
            throw .internal("\(error)")
        }
    }

    func unexpected() -> EtcdError { .internal("unexpected apply result") }
}

/// Serves a Range against committed state (outside the apply loop).
enum RangeExecutorFacade {
    static func range(_ r: Etcdserverpb_RangeRequest, store: KVStore) throws -> Etcdserverpb_RangeResponse {
        try store.read { view in
            try RangeExecution.execute(r) { range, options in try view.range(range, options: options) }
        }
    }
}

// MARK: Membership

extension EtcdHandler {
    public func memberAdd(_ r: Etcdserverpb_MemberAddRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_MemberAddResponse
    {
        try authorize(.memberAdd, caller)
        if r.peerUrls.isEmpty || r.peerUrls.contains(where: { (try? ListenURL($0)) == nil }) { throw .memberBadURLs }
        let (member, all) = try await node.addMember(peerURLs: r.peerUrls, isLearner: r.isLearner).get()
        var response = Etcdserverpb_MemberAddResponse()
        response.header = node.header(revision: 0)
        response.member = member.proto
        response.members = all.map(\.proto)
        return response
    }

    public func memberRemove(_ r: Etcdserverpb_MemberRemoveRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_MemberRemoveResponse
    {
        try authorize(.memberRemove, caller)
        let all = try await node.removeMember(r.id).get()
        var response = Etcdserverpb_MemberRemoveResponse()
        response.header = node.header(revision: 0)
        response.members = all.map(\.proto)
        return response
    }

    public func memberUpdate(_ r: Etcdserverpb_MemberUpdateRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_MemberUpdateResponse
    {
        try authorize(.memberUpdate, caller)
        if r.peerUrls.isEmpty || r.peerUrls.contains(where: { (try? ListenURL($0)) == nil }) { throw .memberBadURLs }
        let all = try await node.updateMember(r.id, peerURLs: r.peerUrls).get()
        var response = Etcdserverpb_MemberUpdateResponse()
        response.header = node.header(revision: 0)
        response.members = all.map(\.proto)
        return response
    }

    /// Only the leader can tell whether a learner has caught up, so followers forward promotions to it.
    public func memberPromote(_ r: Etcdserverpb_MemberPromoteRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_MemberPromoteResponse
    {
        try authorize(.memberPromote, caller)
        let leader = node.status.leader
        if leader != 0, leader != node.memberID, let client = peers?.client(for: leader) {
            do {
                return try await client.memberPromote(r, options: .peerRequest)
            } catch let error as RPCError {
                throw EtcdError(StatusCode(rawValue: error.code.rawValue) ?? .unknown, error.message)
            } catch {
                throw .unhealthy
            }
        }
        let all = try await node.promoteMember(r.id).get()
        var response = Etcdserverpb_MemberPromoteResponse()
        response.header = node.header(revision: 0)
        response.members = all.map(\.proto)
        return response
    }
}

extension CallOptions {
    static var peerRequest: CallOptions {
        var options = CallOptions.defaults
        options.timeout = .seconds(5)
        return options
    }
}
