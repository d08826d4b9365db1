import Foundation
import MVCC
import Raft

/// How a member is configured: etcd's flags, after parsing and defaulting (the executable does the parsing).
public struct NodeConfig: Sendable {
    public enum ClusterState: String, Sendable { case new, existing }

    public var name = "default"
    public var dataDir = "default.quorum"
    /// name → peer URLs, from `--initial-cluster`.
    public var initialCluster: [(name: String, peerURLs: [String])] = [("default", ["http://127.0.0.1:2380"])]
    public var initialClusterState: ClusterState = .new
    public var initialClusterToken = "etcd-cluster"
    public var advertisePeerURLs = ["http://127.0.0.1:2380"]
    public var advertiseClientURLs = ["http://127.0.0.1:2379"]
    public var heartbeatMilliseconds = 100
    public var electionMilliseconds = 1000
    /// Applied entries between two snapshots (log truncations).
    public var snapshotCount: UInt64 = 100_000
    /// Database size beyond which writes are refused and NOSPACE is raised (etcd's default: 2 GiB).
    public var quotaBackendBytes: Int64 = 2 << 30
    /// Quorum's `--value-cache-bytes`: the budget of the key space's value cache. The key index holds no values, so
    /// this (not the size of the database) bounds the memory values take; see `ValueCache`.
    public var valueCacheBytes = KVStore.defaultValueCacheBytes
    public var maxRequestBytes = 1_572_864
    public var maxTxnOps = 128
    /// Fsync the write-ahead log (always, except in tests of the no-disk path).
    public var fsync = true
    /// A proposal not applied within this time fails with etcd's timeout error.
    public var requestTimeoutMilliseconds = 0
    /// Entries kept in the log behind a snapshot, so a briefly lagging follower catches up without one.
    public var snapshotCatchUpEntries: UInt64 = 5000
    /// Entries a leader keeps beyond a snapshot for followers that are catching up right now (nil: five times
    /// `snapshotCatchUpEntries`, at least 5,000). Simulations shrink it so that lagging members need snapshots.
    public var catchUpRetentionEntries: UInt64?
    /// Refuse membership changes that would leave too few started members for a quorum (etcd's default).
    public var strictReconfigCheck = true
    /// etcd's `--initial-election-tick-advance`: a member that starts without a leader fast-forwards its election
    /// timer, so a new cluster elects within a heartbeat or two instead of a whole election timeout (pre-vote
    /// keeps a member that starts cut off from disrupting a cluster that has a leader).
    public var initialElectionTickAdvance = true
    /// etcd's `--force-new-cluster`: restart as the only member of the cluster, removing the others through the log
    /// (see `ForcedNewCluster`). For recovering a cluster that lost its quorum for good.
    public var forceNewCluster = false
    /// etcd's `--auth-token`: `simple` (default), `jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`.
    public var authToken = "simple"
    /// etcd's `--auth-token-ttl` for simple tokens.
    public var authTokenTTL: Duration = .seconds(300)
    /// etcd's `--bcrypt-cost`.
    public var bcryptCost = 10
    /// How a member started with `--initial-cluster-state=existing` joins: learned from the running members.
    public var join: JoinInfo?
    /// etcd's `--wal-dir`: the write-ahead log outside the data directory (nil: `<data-dir>/member/wal`).
    public var walDir: String?
    /// etcd's `--max-wals`: log segments kept, counting those a snapshot made obsolete (which are removed oldest
    /// first beyond this number); 0 keeps every segment. Segments still needed are never removed.
    public var maxWALFiles = 5
    /// Size at which a log segment is cut (etcd's 64 MiB; smaller only in tests).
    public var walSegmentBytes = 64 << 20
    /// etcd's `--experimental-compaction-batch-limit`: superseded revisions removed per compaction step.
    public var compactionBatchLimit = 1000
    /// etcd's `--experimental-watch-progress-notify-interval`: how often watchers that asked for progress
    /// notifications (`progress_notify`) get one, in nanoseconds; 0 disables.
    public var watchProgressNotifyNanoseconds: Int64 = 600_000_000_000
    /// etcd's `--experimental-enable-lease-checkpoint` with `--experimental-lease-checkpoint-interval`: how often the
    /// leader records the remaining TTL of every lease through the log, in nanoseconds; 0 disables. A new leader then
    /// continues from the recorded remaining TTL instead of granting the whole TTL again.
    public var leaseCheckpointNanoseconds: Int64 = 0
    /// etcd's `--experimental-warning-apply-duration`: an entry that takes longer to apply is logged.
    public var warningApplyNanoseconds: Int64 = 100_000_000
    /// Proposals waiting to be applied on this member, at most (by count and by encoded bytes): past either bound a
    /// new one is refused at once with etcd's "too many requests" instead of queueing without limit. etcd bounds its
    /// queue only through the commit-apply gap (`MemberNode.maxCommitApplyGap`, kept as well) and gRPC's streams.
    public var maxPendingProposals = 20_000
    public var maxPendingProposalBytes = 256 << 20
    /// Linearizable reads waiting for their ReadIndex, at most; past it a read gets "too many requests".
    public var maxPendingReads = 20_000
    /// The database's journal is copied into it by a thread of its own (`BackgroundCheckpointer`); false keeps every
    /// checkpoint in the apply loop's commits, as a deterministic simulation needs (a thread outside its scheduler).
    public var backgroundCheckpoints = true

    /// TEST-ONLY: a Raft safety rule switched off, so that the member simulation can show it catches the bug
    /// (`SafetyMutation`). Never set outside tests.
    public var testingRaftMutation: SafetyMutation?
    /// TEST-ONLY: a rule of the member itself switched off, for the same purpose (`NodeMutation`).
    public var testingNodeMutation: NodeMutation?
    /// TEST-ONLY: a rule of the watch hub switched off (`WatchMutation`).
    public var testingWatchMutation: WatchMutation?

    public init() {}

    /// etcd's request timeout: 5 s plus two election timeouts.
    public var effectiveRequestTimeout: Int64 {
        Int64(requestTimeoutMilliseconds > 0 ? requestTimeoutMilliseconds : 5000 + 2 * electionMilliseconds)
            * 1_000_000
    }

    /// What a joining member learns from the cluster before it starts: who it is and who the others are.
    public struct JoinInfo: Sendable {
        public var clusterID: UInt64
        public var memberID: UInt64
        public var members: [MemberInfo]

        public init(clusterID: UInt64, memberID: UInt64, members: [MemberInfo]) {
            self.clusterID = clusterID
            self.memberID = memberID
            self.members = members
        }
    }

    public var walDirectory: String { walDir ?? dataDir + "/member/wal" }
    public var backendPath: String { dataDir + "/member/snap/db" }
}

/// Rules of a member (above Raft) that can be switched off to show that the member simulation catches their absence.
///
/// TEST-ONLY. Never set in production: every case makes the member unsafe by design.
public enum NodeMutation: String, Sendable, CaseIterable {
    /// Serve a linearizable read as soon as Raft confirms its read index, without waiting until this member has
    /// applied up to that index (a follower then answers from behind the leader).
    case servesReadsBeforeApplying
    /// Write the log without ever syncing it, while acknowledging as if it were durable: a power cut of the whole
    /// cluster then loses acknowledged writes.
    case neverSyncsTheLog
    /// The lessor's clock runs twice as fast: leases expire, and their keys go, at half their TTL.
    case leaseClockRunsFast
    /// A member that applied its own removal goes on answering requests and never tells its owner (`onRemoved`),
    /// as if it had not noticed.
    case removedMemberKeepsServing
}
