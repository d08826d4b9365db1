/// A consistent view of the member's Raft state, published by the loop after every iteration.
public struct NodeStatus: Sendable, Equatable {
    public var leader: UInt64 = 0
    public var term: UInt64 = 0
    public var commitIndex: UInt64 = 0
    /// The last index of this member's log, and its term (what an election compares).
    public var lastIndex: UInt64 = 0
    public var lastTerm: UInt64 = 0
    public var appliedIndex: UInt64 = 0
    public var isLeader = false
    public var isLearner = false
    public var leaderChanges = 0
    /// Set once the member has published its name and client URLs through the log.
    public var published = false
    /// Set if the loop stopped on a storage error: the member must not serve.
    public var failure: String?

    public var hasLeader: Bool { leader != 0 }
}
