import Synchronization

/// Running totals of events the member counts where they happen, read by the metrics when scraped (etcd's
/// counters of the same meaning): a relaxed atomic add on the paths that count, nothing more.
public final class NodeCounters: Sendable {
    /// Keep-alives this member (as leader) granted: `etcd_debugging_lease_renewed_total`.
    public let leaseRenewals = Atomic<Int>(0)
    /// Leases this member (as leader) found expired and proposed to revoke: `etcd_debugging_server_lease_expired_total`.
    public let leaseExpirations = Atomic<Int>(0)
    /// Linearizable reads whose read index could not be confirmed in time: `etcd_server_read_indexes_failed_total`.
    public let readIndexFailures = Atomic<Int>(0)
    /// Learners this member promoted: `etcd_server_learner_promote_successes`.
    public let learnerPromotions = Atomic<Int>(0)
    /// Snapshots from the leader being installed right now: `etcd_server_snapshot_apply_in_progress_total`.
    public let snapshotsApplying = Atomic<Int>(0)
    /// Heartbeats this member (as leader) sent late or could not hand to a peer's link:
    /// `etcd_server_heartbeat_send_failures_total`.
    public let heartbeatSendFailures = Atomic<Int>(0)
    /// ReadIndex rounds answered later than etcd's read index retry time, or given up when their reads timed out:
    /// `etcd_server_slow_read_indexes_total`.
    public let slowReadIndexes = Atomic<Int>(0)

    public init() {}
}
