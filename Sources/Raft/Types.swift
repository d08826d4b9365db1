/// Identifies a member of the cluster. `0` is reserved to mean "no node" (no leader, no vote), which is why
/// members must be numbered from 1 and identifiers are never reused after a removal: a recycled identifier
/// could carry a vote or log from its previous life into a configuration that no longer expects it.
public typealias NodeID = UInt64

/// What an entry carries. Configuration changes travel through the log like any write so that every member
/// switches configuration at the same log position.
public enum EntryKind: UInt8, Sendable {
    case normal = 0
    case confChange = 1
}

/// One slot of the replicated log.
///
/// An entry with `kind == .normal` and empty `data` is the no-op that each new leader appends: committing an
/// entry of its own term is the only way a leader can learn which older entries are committed (Raft §5.4.2).
public struct Entry: Sendable, Equatable {
    public var term: UInt64
    public var index: UInt64
    public var kind: EntryKind
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: EntryKind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }

    /// Bytes the entry occupies for flow control; the fixed part approximates the framing overhead so that a
    /// flood of empty entries is still bounded.
    @inlinable
    public var byteSize: Int { data.count + 24 }
}

/// The state that must survive a crash before the node may act on it: the term (so that a restarted member
/// never goes back in time), the vote (so that it never votes twice in a term) and the commit index (only an
/// optimisation: it may lag, so persisting it does not require an fsync on its own).
public struct HardState: Sendable, Equatable {
    public var term: UInt64
    public var vote: NodeID
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// A cluster configuration. Quorum uses one-at-a-time membership changes (see the `Raft` documentation
/// catalog), so there are no joint-consensus fields: a configuration is a set of voters and a set of learners.
public struct ConfState: Sendable, Equatable {
    /// Voting members, sorted ascending so that two equal configurations compare equal.
    public var voters: [NodeID]
    /// Non-voting members that receive the log (to catch up before promotion), sorted ascending.
    public var learners: [NodeID]

    public init(voters: [NodeID] = [], learners: [NodeID] = []) {
        self.voters = voters.sorted()
        self.learners = learners.sorted()
    }

    /// Whether `id` is a voter or a learner.
    public func contains(_ id: NodeID) -> Bool { voters.contains(id) || learners.contains(id) }

    /// The configuration after `change`, as Raft computes it when the change's entry is appended.
    public func applying(_ change: ConfChange) -> ConfState { RaftNode.applying(change, to: self) }
}

/// The kinds of single-step membership change. Each one changes the voter set by at most one member, which is
/// what makes the old and new majorities overlap without joint consensus.
public enum ConfChangeKind: UInt8, Sendable {
    /// Adds a voter; applied to an existing learner it promotes it (same as `promoteLearner`).
    case addVoter = 0
    /// Adds a learner; applied to an existing voter it demotes it.
    case addLearner = 1
    /// Removes a voter or learner. Removing the leader is allowed: it keeps leading until the change commits,
    /// then hands leadership to the most up-to-date remaining voter and steps down.
    case removeNode = 2
    /// Promotes an existing learner to voter; a no-op for anything else.
    case promoteLearner = 3
}

/// A membership change proposal, carried as the data of an `.confChange` entry.
public struct ConfChange: Sendable, Equatable {
    public var kind: ConfChangeKind
    public var node: NodeID
    /// Opaque to Raft; the application typically puts the new member's peer URLs here.
    public var context: [UInt8]

    public init(kind: ConfChangeKind, node: NodeID, context: [UInt8] = []) {
        self.kind = kind
        self.node = node
        self.context = context
    }
}

/// Describes the state folded into a snapshot: the last log position it covers and the configuration as of
/// that position (needed because the conf-change entries that produced it are no longer in the log).
public struct SnapshotMetadata: Sendable, Equatable {
    public var index: UInt64
    public var term: UInt64
    public var confState: ConfState

    public init(index: UInt64 = 0, term: UInt64 = 0, confState: ConfState = ConfState()) {
        self.index = index
        self.term = term
        self.confState = confState
    }
}

/// A snapshot as Raft sees it. `data` is opaque and meant to be small: the application ships the real
/// state-machine image (a database file) next to the message, so Raft never holds it in memory.
public struct Snapshot: Sendable, Equatable {
    public var metadata: SnapshotMetadata
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata = SnapshotMetadata(), data: [UInt8] = []) {
        self.metadata = metadata
        self.data = data
    }
}

/// The answer to a `readIndex` request: once the local state machine has applied `index`, a read served
/// locally is linearizable with respect to every write acknowledged before the request was made.
public struct ReadState: Sendable, Equatable {
    public var index: UInt64
    public var context: [UInt8]

    public init(index: UInt64, context: [UInt8]) {
        self.index = index
        self.context = context
    }
}

/// The role a member plays in its current term. Learners are always followers; whether a member is a learner
/// is reported in `RaftStatus.isLearner`.
public enum Role: Sendable, Equatable {
    case follower
    case preCandidate
    case candidate
    case leader
}

/// Volatile state that the application may want to observe (who leads, which role we play). Never persisted.
public struct SoftState: Sendable, Equatable {
    public var leader: NodeID
    public var role: Role

    public init(leader: NodeID, role: Role) {
        self.leader = leader
        self.role = role
    }
}

/// Errors reported synchronously to the caller.
public enum RaftError: Error, Sendable, Equatable {
    /// The proposal (or conf change) was not appended anywhere: no leader is known, a leader transfer is in
    /// progress, the uncommitted tail is too large, a conf change is still pending, this member is a learner...
    /// The reason is meant for humans and logs; the application should retry after the leader changes.
    case proposalDropped(reason: String)
    /// A message that only the node itself may generate (or of an unknown kind) was passed to `step`.
    case stepLocalMessage
    /// The requested entries or term are not available (beyond the end of the log).
    case unavailable
    /// The requested entries were compacted into a snapshot.
    case compacted
    /// A snapshot is needed but none has been taken yet.
    case snapshotTemporarilyUnavailable
    /// Bytes given to a decoder are not a valid encoding.
    case malformed(String)
    /// A peer's message that no correct member sends (entries out of order, terms from the future, indexes at the
    /// top of the range; see `Message.maxTermOrIndex`): refused whole by `step`, which changed nothing.
    case invalidMessage(String)
    /// A membership change that would give the configuration more learners than `RaftConfig.maxLearners`.
    case tooManyLearners(limit: Int)
}

/// Where a follower's replication stands, from the leader's point of view.
public enum ProgressState: Sendable, Equatable {
    /// The leader does not know where the follower's log matches; it sends one append at a time and waits.
    case probe
    /// The follower is known to match up to `match`; appends are pipelined up to the in-flight limits.
    case replicate
    /// The follower needs entries that were compacted; a snapshot is being transferred.
    case snapshot
}

/// A copy of one follower's replication progress, for observability.
public struct ProgressStatus: Sendable, Equatable {
    public var match: UInt64
    public var next: UInt64
    public var state: ProgressState
    public var isLearner: Bool
    public var recentActive: Bool
    public var inflightMessages: Int
    public var pendingSnapshot: UInt64
}

/// A point-in-time view of the node, for the application's status endpoints and for tests.
public struct RaftStatus: Sendable {
    public var id: NodeID
    public var hardState: HardState
    public var softState: SoftState
    /// Highest index the application has reported applied (via `advance`).
    public var applied: UInt64
    public var lead: NodeID { softState.leader }
    public var role: Role { softState.role }
    public var term: UInt64 { hardState.term }
    public var commit: UInt64 { hardState.commit }
    /// Replication progress of every member (including the leader itself), keyed by member. Only on a leader.
    public var progress: [NodeID: ProgressStatus]
    /// The member leadership is being transferred to, or 0.
    public var leadTransferee: NodeID
    /// The configuration in effect: the latest one in the log, committed or not (one-at-a-time changes).
    public var confState: ConfState
    public var isLearner: Bool
    /// First index still held in the in-memory log; everything below was compacted into a snapshot.
    public var firstIndex: UInt64
    public var lastIndex: UInt64
    /// Highest index the application reported durable on this member's disk.
    public var persistedIndex: UInt64
}
