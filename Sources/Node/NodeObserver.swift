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
    /// A lease was granted with this TTL in seconds (etcd's `etcd_debugging_lease_ttl_total`).
    func leaseGranted(ttl: Int64)
    /// A compaction was applied: the key index was held this long while it forgot the superseded versions
    /// (etcd's `etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds`).
    func indexCompacted(nanoseconds: UInt64)
    /// One step of physical compaction held the apply loop this long
    /// (etcd's `etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds`).
    func compactionStepped(nanoseconds: UInt64)
    /// Physical compaction finished, this long after the compaction was applied
    /// (etcd's `etcd_debugging_mvcc_db_compaction_total_duration_milliseconds`).
    func compactionFinished(nanoseconds: UInt64)
    /// The Raft snapshot's record was synced to disk (etcd's `etcd_snap_fsync_duration_seconds`).
    func snapshotSynced(nanoseconds: UInt64)
    /// A database snapshot from the leader was received and saved: from its first byte to its file synced, and the
    /// sync alone (etcd's `etcd_snap_db_save_total_duration_seconds`, `etcd_snap_db_fsync_duration_seconds`).
    func snapshotDatabaseSaved(nanoseconds: UInt64, syncNanoseconds: UInt64)
}

extension NodeObserver {
    public func rangeServed() {}
    public func applyFinished(operation: String, nanoseconds: Int64, succeeded: Bool, slow: Bool) {}
    public func leaseGranted(ttl: Int64) {}
    public func indexCompacted(nanoseconds: UInt64) {}
    public func compactionStepped(nanoseconds: UInt64) {}
    public func compactionFinished(nanoseconds: UInt64) {}
    public func snapshotSynced(nanoseconds: UInt64) {}
    public func snapshotDatabaseSaved(nanoseconds: UInt64, syncNanoseconds: UInt64) {}
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
