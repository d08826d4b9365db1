/// Hooks through which the member reports what metrics count. The Server target implements it with
/// Prometheus; the default does nothing, so the node code has no metrics dependency on its hot path.
public protocol NodeObserver: Sendable {
    func walSynced(nanoseconds: UInt64, entries: Int)
    func backendCommitted(nanoseconds: UInt64)
    func applied(_ kind: AppliedKind)
    func proposalFailed()
    func snapshotSaved(nanoseconds: UInt64)
    /// A Range was served (etcd's `etcd_mvcc_range_total`).
    func rangeServed()
    /// One request of the log was applied: its etcd name, how long it took, whether it succeeded, and whether that
    /// was longer than the member's warning threshold (etcd's `etcd_server_apply_duration_seconds`,
    /// `etcd_server_slow_apply_total`).
    func applyFinished(operation: String, nanoseconds: Int64, succeeded: Bool, slow: Bool)
}

extension NodeObserver {
    public func rangeServed() {}
    public func applyFinished(operation: String, nanoseconds: Int64, succeeded: Bool, slow: Bool) {}
}

public enum AppliedKind: Sendable {
    case put, deleteRange, txn, compaction, leaseGrant, leaseRevoke, other
}

public struct NoObserver: NodeObserver {
    public init() {}
    public func walSynced(nanoseconds: UInt64, entries: Int) {}
    public func backendCommitted(nanoseconds: UInt64) {}
    public func applied(_ kind: AppliedKind) {}
    public func proposalFailed() {}
    public func snapshotSaved(nanoseconds: UInt64) {}
}
