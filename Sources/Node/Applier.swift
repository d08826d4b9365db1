import Auth
import EtcdProto
import Foundation
import MVCC

/// Applies committed requests to the state machine: key space, leases, alarms, membership.
///
/// Runs only on the apply loop, inside the backend batch transaction the loop opened. Every check that can fail
/// happens before the first write of a request, so a failed request changes nothing; what it does is a pure
/// function of the log, so every member reaches the same state.
final class Applier {
    let store: KVStore
    let leases: Leases
    let alarms: AlarmSet
    let members: ClusterMembers
    let auth: AuthState
    let versions: ClusterVersionState
    let observer: any NodeObserver
    /// Events of the current batch, in revision order, for the watch hub.
    private(set) var events: [Mvccpb_Event] = []
    /// Values of the events' previous versions not read yet (`KVWriteTxn.put(previousValue:)`).
    private(set) var pendingPrevValues = PendingPrevValues()

    init(
        store: KVStore, leases: Leases, alarms: AlarmSet, members: ClusterMembers, auth: AuthState,
        versions: ClusterVersionState, observer: any NodeObserver = NoObserver()
    ) {
        self.versions = versions
        self.observer = observer
        self.store = store
        self.leases = leases
        self.alarms = alarms
        self.members = members
        self.auth = auth
    }

    var backend: Backend { store.backend }

    /// The batch's events for the watch hub, with the previous values they were recorded without.
    func takeEvents() -> (events: [Mvccpb_Event], pending: PendingPrevValues) {
        defer {
            events.removeAll(keepingCapacity: true)
            pendingPrevValues = PendingPrevValues()
        }
        return (events, pendingPrevValues)
    }

    /// Applies one entry; `index` is its Raft index (it numbers simple tokens).
    func apply(_ request: Quorumpb_RaftRequest, index: UInt64) throws -> ApplyResult {
        // etcd's applierV3Corrupt: while any member has the CORRUPT alarm, every member refuses what changes the
        // key space or leases, before any other check, until the alarm is disarmed (reads are served, as etcd's
        // ranges and read-only transactions bypass the applier).
        if alarms.contains(.corrupt) {
            switch request.request {
            case .put, .deleteRange, .txn, .compaction, .leaseGrant, .leaseRevoke: return .failure(.corrupt)
            default: break
            }
        }
        if auth.isEnabled && !request.internal, let denied = checkPermission(request) {
            return .failure(EtcdError(denied))
        }
        if let operation = request.authRequest {
            return try applyAuth(operation, request, index: index)
        }
        switch request.request {
        case .put(let r):
            if alarms.contains(.nospace) { return .failure(.noSpace) }
            return try write { txn in .put(try put(r, txn)) }
        case .deleteRange(let r):
            return try write { txn in .deleteRange(try deleteRange(r, txn)) }
        case .txn(let r):
            if alarms.contains(.nospace) && TxnRules.hasPut(r) { return .failure(.noSpace) }
            return try write { txn in .txn(try self.txn(r, txn)) }
        case .compaction(let r):
            do {
                observer.indexCompacted(nanoseconds: try store.scheduleCompaction(r.revision))
            } catch let error as MVCCError {
                return .failure(error == .compacted ? .compacted : .futureRevision)
            }
            var response = Etcdserverpb_CompactionResponse()
            response.header.revision = store.revisions.current
            return .success(.compaction(response))
        case .leaseGrant(let r):
            if alarms.contains(.nospace) { return .failure(.noSpace) }
            return try leaseGrant(r)
        case .leaseRevoke(let r):
            return try leaseRevoke(r.id)
        case .alarm(let r):
            return try alarm(r)
        case .publish(let attributes):
            if var member = members.member(attributes.memberID) {
                member.name = attributes.name
                member.clientURLs = attributes.clientUrls
                try members.upsert(member, backend: backend)
                if !attributes.serverVersion.isEmpty {
                    try versions.setMemberVersion(attributes.memberID, attributes.serverVersion, backend: backend)
                }
            }
            return .success(.none)
        case .memberUpdate(let update):
            if var member = members.member(update.id) {
                member.peerURLs = update.peerUrls
                try members.upsert(member, backend: backend)
            }
            return .success(.none)
        case .leaseCheckpoint(let r):
            let update = try backend.writer.statement("UPDATE leases SET remaining_ttl = ?1 WHERE id = ?2")
            for checkpoint in r.checkpoints where leases.contains(checkpoint.id) {
                leases.checkpoint(id: checkpoint.id, remainingTTL: checkpoint.remainingTtl)
                update.bind(1, max(0, checkpoint.remainingTtl)).bind(2, checkpoint.id)
                try update.run()
            }
            return .success(.none)
        case .clusterVersion(let r):
            try versions.setClusterVersion(r.version, backend: backend)
            return .success(.none)
        case .downgradeInfoSet(let r):
            try versions.setDowngrade(r, backend: backend)
            return .success(.none)
        case .none:
            return .success(.none)
        default:
            return .failure(.notCapable)
        }
    }

    // MARK: Auth

    /// etcd's `authApplierV3`: writes are checked against the identity their proposal carried, on the store as it
    /// is at this point of the log (so a permission revoked just before is already in force).
    private func checkPermission(_ request: Quorumpb_RaftRequest) -> AuthError? {
        let info = request.requester
        let store = auth.store
        let leaseKeys: (Int64) -> [Data]? = { id in
            self.leases.lessor.withLock { $0.leases[id].map { Array($0.keys) } }
        }
        do throws(AuthError) {
            switch request.request {
            case .put(let r): try store.checkPut(r, info, leaseKeys: leaseKeys)
            case .deleteRange(let r): try store.checkDeleteRange(r, info)
            case .txn(let r): try store.checkTxn(r, info, leaseKeys: leaseKeys)
            case .leaseRevoke(let r): try store.checkLeaseRevoke(info, leaseKeys: leaseKeys(r.id))
            default: break
            }
        } catch {
            return error
        }
        return nil
    }

    private func applyAuth(_ operation: AuthRequest, _ request: Quorumpb_RaftRequest, index: UInt64) throws
        -> ApplyResult
    {
        // Authenticate checked the password against the store at `auth_revision`: if the store moved on since,
        // the check may be stale (a changed password) and the proposer checks again, as etcd does.
        if case .authenticate = operation, auth.store.revision != request.authRevision {
            return .failure(EtcdError(.authOldRevision))
        }
        switch try auth.apply(operation, requester: request.requester, index: index, backend: backend) {
        case .success(let response):
            var header = Etcdserverpb_ResponseHeader()
            header.revision = store.revisions.current
            return .success(.auth(response, header))
        case .failure(let error):
            return .failure(EtcdError(error))
        }
    }

    // MARK: Key space

    /// Runs `body` as one revision; an `EtcdError` thrown before the first write leaves the store untouched.
    private func write(_ body: (KVWriteTxn) throws -> ApplyResponse) throws -> ApplyResult {
        let txn = store.beginWrite()
        do {
            let response = try body(txn)
            try store.end(txn)
            pendingPrevValues.append(txn.pendingPrevValues, offset: events.count)
            events.append(contentsOf: txn.events)
            return .success(response)
        } catch let error as EtcdError {
            precondition(txn.changeCount == 0, "a request failed after it had written: \(error)")
            return .failure(error)
        }
    }

    private func put(_ r: Etcdserverpb_PutRequest, _ txn: KVWriteTxn) throws -> Etcdserverpb_PutResponse {
        try TxnRules.checkPut(r, txn: txn, leases: leases)
        var value = r.value
        var lease = r.lease
        let prev: Mvccpb_KeyValue?
        if r.ignoreValue || r.ignoreLease {
            guard let existing = try txn.get(r.key) else { throw EtcdError.keyNotFound }
            if r.ignoreValue { value = existing.value }
            if r.ignoreLease { lease = existing.lease }
        }
        prev = try txn.put(key: r.key, value: value, lease: lease, previousValue: r.prevKv)
        if let old = prev?.lease, old != 0, old != lease {
            leases.lessor.withLock { $0.detach(r.key, from: old) }
        }
        if lease != 0 { leases.lessor.withLock { $0.attach(r.key, to: lease) } }
        var response = Etcdserverpb_PutResponse()
        response.header.revision = txn.revision
        if r.prevKv, let prev { response.prevKv = prev }
        return response
    }

    private func deleteRange(_ r: Etcdserverpb_DeleteRangeRequest, _ txn: KVWriteTxn) throws
        -> Etcdserverpb_DeleteRangeResponse
    {
        let deleted = try txn.deleteRange(KeyRange(key: r.key, rangeEnd: r.rangeEnd))
        detachLeases(deleted)
        var response = Etcdserverpb_DeleteRangeResponse()
        response.header.revision = txn.revision
        response.deleted = Int64(deleted.count)
        if r.prevKv { response.prevKvs = deleted }
        return response
    }

    private func detachLeases(_ kvs: [Mvccpb_KeyValue]) {
        let leased = kvs.filter { $0.lease != 0 }
        guard !leased.isEmpty else { return }
        leases.lessor.withLock { l in
            for kv in leased { l.detach(kv.key, from: kv.lease) }
        }
    }

    func range(_ r: Etcdserverpb_RangeRequest, _ txn: KVWriteTxn) throws -> Etcdserverpb_RangeResponse {
        try RangeExecution.execute(r) { range, options in try txn.range(range, options: options) }
    }

    private func txn(_ r: Etcdserverpb_TxnRequest, _ txn: KVWriteTxn) throws -> Etcdserverpb_TxnResponse {
        // Like etcd, the branch of every nested txn is decided up front, against the state before any write.
        let path = try TxnRules.decidePath(r) { range in try txn.range(range, options: RangeOptions()).kvs }
        var cursor = path[...]
        try TxnRules.check(r, path: &cursor, txn: txn, leases: leases)
        cursor = path[...]
        var response = try execute(r, path: &cursor, txn)
        response.header.revision = txn.revision
        return response
    }

    private func execute(_ r: Etcdserverpb_TxnRequest, path: inout ArraySlice<Bool>, _ txn: KVWriteTxn) throws
        -> Etcdserverpb_TxnResponse
    {
        let succeeded = path.popFirst()!
        var response = Etcdserverpb_TxnResponse()
        response.succeeded = succeeded
        for op in succeeded ? r.success : r.failure {
            var result = Etcdserverpb_ResponseOp()
            switch op.request {
            case .requestRange(let range):
                result.responseRange = try self.range(range, txn)
            case .requestPut(let put):
                result.responsePut = try self.put(put, txn)
            case .requestDeleteRange(let delete):
                result.responseDeleteRange = try deleteRange(delete, txn)
            case .requestTxn(let nested):
                var inner = try execute(nested, path: &path, txn)
                inner.header.revision = txn.revision
                result.responseTxn = inner
            case .none:
                break
            }
            response.responses.append(result)
        }
        return response
    }

    // MARK: Leases

    private func leaseGrant(_ r: Etcdserverpb_LeaseGrantRequest) throws -> ApplyResult {
        if r.ttl > Lessor.maxTTL { return .failure(.leaseTTLTooLarge) }
        if leases.contains(r.id) { return .failure(.leaseExists) }
        let t = leases.now()
        let lease = leases.lessor.withLock { $0.grant(id: r.id, ttl: r.ttl, now: t) }
        let s = try backend.writer.statement("INSERT OR REPLACE INTO leases(id, ttl, remaining_ttl) VALUES(?1, ?2, 0)")
        s.bind(1, lease.id).bind(2, lease.ttl)
        try s.run()
        observer.leaseGranted(ttl: lease.ttl)
        var response = Etcdserverpb_LeaseGrantResponse()
        response.header.revision = store.revisions.current
        response.id = lease.id
        response.ttl = lease.ttl
        return .success(.leaseGrant(response))
    }

    private func leaseRevoke(_ id: Int64) throws -> ApplyResult {
        guard let keys = leases.lessor.withLock({ $0.revoke(id: id) }) else { return .failure(.leaseNotFound) }
        let s = try backend.writer.statement("DELETE FROM leases WHERE id = ?1")
        s.bind(1, id)
        try s.run()
        let result = try write { txn in
            for key in keys { try txn.deleteRange(.single(key)) }
            var response = Etcdserverpb_LeaseRevokeResponse()
            response.header.revision = txn.revision
            return .leaseRevoke(response)
        }
        return result
    }

    // MARK: Alarms

    private func alarm(_ r: Etcdserverpb_AlarmRequest) throws -> ApplyResult {
        var response = Etcdserverpb_AlarmResponse()
        response.header.revision = store.revisions.current
        let alarm = AlarmSet.Alarm(member: r.memberID, type: r.alarm)
        switch r.action {
        case .activate:
            if r.alarm != .none, let raised = try alarms.activate(alarm, backend: backend) {
                response.alarms = [raised.proto]
            }
        case .deactivate:
            if let cleared = try alarms.deactivate(alarm, backend: backend) { response.alarms = [cleared.proto] }
        default:
            response.alarms = alarms.all.filter { r.alarm == .none || $0.type == r.alarm }.map(\.proto)
        }
        return .success(.alarm(response))
    }
}
