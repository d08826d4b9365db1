import EtcdProto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The permission each KV, watch and lease request needs, as etcd 3.5 checks it (`apply_auth.go`, `v3_server.go`,
/// `v3rpc/watch.go`).
///
/// Writes (Put, DeleteRange, Txn with a write, LeaseRevoke) are checked in the apply loop against the identity
/// carried in the proposal (user name and the auth revision it was admitted at), so the check sees exactly the
/// store the write lands on. Reads (Range, read-only Txn) are checked on the member that serves them, followed by
/// ``ensureRevisionUnchanged(_:)`` after the read, as etcd's `doSerialize` does. Leases are looked up by the
/// caller and passed as their attached keys (nil for a lease that does not exist).
extension AuthStore {
    /// Range: read on `[key, range_end)`.
    public func checkRange(_ request: Etcdserverpb_RangeRequest, _ info: AuthInfo?) throws(AuthError) {
        try isRangePermitted(info, key: request.key, rangeEnd: request.rangeEnd)
    }

    /// Put: write on the key; if the put attaches a lease that already has keys, write on each of them (the user
    /// could otherwise revoke the lease and delete keys it cannot write); with `prev_kv`, read on the key.
    public func checkPut(
        _ request: Etcdserverpb_PutRequest, _ info: AuthInfo?, leaseKeys: (Int64) -> [Data]?
    ) throws(AuthError) {
        try isPutPermitted(info, key: request.key)
        try checkLeasePuts(info, leaseKeys: leaseKeys(request.lease))
        if request.prevKv {
            try isRangePermitted(info, key: request.key, rangeEnd: Data())
        }
    }

    /// DeleteRange: write on the range, and with `prev_kv` read on it too.
    public func checkDeleteRange(_ request: Etcdserverpb_DeleteRangeRequest, _ info: AuthInfo?) throws(AuthError) {
        try isDeleteRangePermitted(info, key: request.key, rangeEnd: request.rangeEnd)
        if request.prevKv {
            try isRangePermitted(info, key: request.key, rangeEnd: request.rangeEnd)
        }
    }

    /// Txn: read on every compare's range (a compare reveals whether a key matches), then every operation of both
    /// branches whichever would run, nested transactions included, each needing what it needs on its own.
    public func checkTxn(
        _ request: Etcdserverpb_TxnRequest, _ info: AuthInfo?, leaseKeys: (Int64) -> [Data]?
    ) throws(AuthError) {
        for compare in request.compare {
            try isRangePermitted(info, key: compare.key, rangeEnd: compare.rangeEnd)
        }
        try checkTxnOperations(request.success, info, leaseKeys: leaseKeys)
        try checkTxnOperations(request.failure, info, leaseKeys: leaseKeys)
    }

    /// etcd's `checkTxnReqsPermission`; inside a transaction a delete's `prev_kv` read is checked before its write.
    private func checkTxnOperations(
        _ operations: [Etcdserverpb_RequestOp], _ info: AuthInfo?, leaseKeys: (Int64) -> [Data]?
    ) throws(AuthError) {
        for operation in operations {
            switch operation.request {
            case .requestRange(let range):
                try isRangePermitted(info, key: range.key, rangeEnd: range.rangeEnd)
            case .requestPut(let put):
                try checkPut(put, info, leaseKeys: leaseKeys)
            case .requestDeleteRange(let delete):
                if delete.prevKv {
                    try isRangePermitted(info, key: delete.key, rangeEnd: delete.rangeEnd)
                }
                try isDeleteRangePermitted(info, key: delete.key, rangeEnd: delete.rangeEnd)
            case .requestTxn(let nested):
                try checkTxn(nested, info, leaseKeys: leaseKeys)
            case nil:
                continue
            }
        }
    }

    /// Watch create: read on the watched range. A refused watch is not an RPC error but a created-and-canceled
    /// watch response whose `cancel_reason` is ``watchCancelReason(for:)``.
    public func checkWatch(_ request: Etcdserverpb_WatchCreateRequest, _ info: AuthInfo?) throws(AuthError) {
        try isRangePermitted(info, key: request.key, rangeEnd: request.rangeEnd)
    }

    /// The `cancel_reason` etcd sends for a refused watch: the error's own message for an invalid token, an old
    /// revision or a missing user, and `permission denied` for anything else.
    public static func watchCancelReason(for error: AuthError) -> String {
        switch error {
        case .invalidAuthToken, .authOldRevision, .userEmpty: return error.message
        default: return AuthError.permissionDenied.message
        }
    }

    /// LeaseRevoke, in the apply loop (etcd's `checkLeasePuts`): role `root` may revoke anything; anyone else needs
    /// write on every key attached to the lease. A lease that does not exist (`nil`) passes here and fails later
    /// with `lease not found`. (The RPC first needs ``requireAuthInfo(_:)``.)
    public func checkLeaseRevoke(_ info: AuthInfo?, leaseKeys: [Data]?) throws(AuthError) {
        try checkLeasePuts(info, leaseKeys: leaseKeys)
    }

    /// etcd's `checkLeasePutsKeys`.
    func checkLeasePuts(_ info: AuthInfo?, leaseKeys: [Data]?) throws(AuthError) {
        guard let leaseKeys else { return }
        if (try? isAdminPermitted(info)) != nil { return }
        for key in leaseKeys {
            try isPutPermitted(info, key: key)
        }
    }

    /// LeaseKeepAlive (etcd's `checkLeaseRenew`): some identity, and unless it is `root`, write on every attached
    /// key. etcd then refuses the renewal if the auth revision moved during the check; a caller that checks on a
    /// snapshot of the store compares it with the current one through ``ensureRevisionUnchanged(since:)``.
    public func checkLeaseRenew(_ info: AuthInfo?, leaseKeys: [Data]?) throws(AuthError) {
        guard isEnabled else { return }
        guard info != nil else { throw .userEmpty }
        if (try? isAdminPermitted(info)) != nil { return }
        for key in leaseKeys ?? [] {
            try isPutPermitted(info, key: key)
        }
    }

    /// LeaseTimeToLive with `keys = true` (etcd's `checkLeaseTimeToLive`, the fix of CVE-2023-32082): some identity,
    /// and unless it is `root`, read on every attached key. Returns the auth revision checked against; compare it
    /// with ``ensureRevisionUnchanged(since:)`` after building the response. Without `keys`, the RPC only needs
    /// ``requireAuthInfo(_:)``.
    @discardableResult
    public func checkLeaseTimeToLive(_ info: AuthInfo?, leaseKeys: [Data]?) throws(AuthError) -> UInt64 {
        guard isEnabled else { return revision }
        guard info != nil else { throw .userEmpty }
        if (try? isAdminPermitted(info)) != nil { return revision }
        for key in leaseKeys ?? [] {
            try isRangePermitted(info, key: key, rangeEnd: Data())
        }
        return revision
    }

    /// LeaseLeases (etcd's `checkLeaseLeases`): some identity, and unless it is `root`, read on every key attached
    /// to any lease.
    public func checkLeaseLeases(_ info: AuthInfo?, allLeaseKeys: [[Data]]) throws(AuthError) {
        guard isEnabled else { return }
        guard info != nil else { throw .userEmpty }
        if (try? isAdminPermitted(info)) != nil { return }
        for keys in allLeaseKeys {
            for key in keys {
                try isRangePermitted(info, key: key, rangeEnd: Data())
            }
        }
    }

    /// The check etcd's `doSerialize` makes after a read served outside the log (Range, read-only Txn): if the
    /// identity was admitted at another auth revision than the store's now, the answer may leak what a revoked
    /// permission no longer allows, so it is dropped with `revision of auth store is old`.
    public func ensureRevisionUnchanged(_ info: AuthInfo?) throws(AuthError) {
        guard let info, info.revision != 0, info.revision != revision else { return }
        throw .authOldRevision
    }

    /// The check after LeaseKeepAlive/LeaseTimeToLive/LeaseLeases: the auth revision a check returned must still
    /// be this store's (only while auth is on).
    public func ensureRevisionUnchanged(since checked: UInt64) throws(AuthError) {
        guard isEnabled, checked != revision else { return }
        throw .authOldRevision
    }
}
