/// How linearizable reads (`readIndex`) confirm that the leader is still the leader.
public enum ReadOnlyOption: Sendable, Equatable {
    /// ReadIndex: the leader records its commit index, then confirms with a heartbeat round that a quorum still
    /// follows it. Costs one round trip, relies on nothing but message delivery. The default.
    case safe
    /// Leader lease: the leader answers from its commit index without a round trip, trusting that no other
    /// leader can have been elected while it heard from a quorum within the last election timeout.
    ///
    /// Clock assumption: followers refuse votes for `electionTick` ticks after hearing from the leader
    /// (check-quorum lease), so this is safe only if no member's tick runs slower, in real time, than the
    /// leader's by more than the margin between `electionTick` and the real time it takes the leader to notice
    /// it lost quorum — in practice bounded clock *drift* (not skew) between members, and no process pause
    /// longer than an election timeout on the leader. Requires `checkQuorum`. A paused VM or a stepped clock
    /// on the leader can serve a stale read; use `.safe` unless reads dominate and that risk is accepted.
    case leaseBased
}

/// Safety rules that can be switched off to show that the simulator catches their absence (mutation testing).
///
/// TEST-ONLY. Never set in production: every case makes the node unsafe by design.
public enum SafetyMutation: String, Sendable, CaseIterable {
    /// Commit an entry of an older term as soon as a quorum stores it (the Raft paper's figure 8 hazard).
    case commitOlderTermByCount
    /// Report the vote as 0 in `Ready.hardState`, so a restart forgets whom it voted for.
    case skipVotePersistence
    /// Grant votes without checking that the candidate's log is at least as up to date.
    case skipLogUpToDateCheck
    /// Followers acknowledge appended entries before they are durable (the acknowledgement leaves with
    /// `Ready.messages` instead of `Ready.messagesAfterPersist`).
    case followerAcksBeforePersist
    /// Answer ReadIndex immediately, without confirming leadership with a heartbeat round.
    case readIndexWithoutQuorumCheck
    /// Accept appends without checking that the previous entry's term matches (breaks log matching).
    case skipAppendConsistencyCheck
}

/// Static configuration of one member. All durations are in logical ticks: the node has no clock.
public struct RaftConfig: Sendable {
    public var id: NodeID
    /// Ticks without hearing from a leader before a follower campaigns. The actual timeout is drawn uniformly
    /// from `[electionTick, 2 * electionTick)` with the injected randomness, to break split votes.
    public var electionTick: Int = 10
    /// Ticks between leader heartbeats. Must be well below `electionTick`.
    public var heartbeatTick: Int = 1
    /// Run a pre-vote round before incrementing the term, so a member that was partitioned away cannot depose
    /// a healthy leader when it comes back (thesis §9.6).
    public var preVote: Bool = true
    /// A leader that has not heard from a quorum within an election timeout steps down; followers that heard
    /// from a leader within the timeout ignore vote requests (the lease that protects against disruption).
    public var checkQuorum: Bool = true
    /// Byte budget of the entries in one append message (at least one entry is always sent).
    public var maxSizePerMessage: Int = 1 << 20
    /// Append messages that may be in flight to one follower in replicate state.
    public var maxInflightMessages: Int = 256
    /// Entry bytes that may be in flight to one follower; 0 means unlimited.
    public var maxInflightBytes: Int = 0
    /// Bytes of proposed but uncommitted entries the leader accepts before dropping proposals; 0 = unlimited.
    public var maxUncommittedEntriesSize: Int = 0
    public var readOnlyOption: ReadOnlyOption = .safe
    /// Learners the configuration may hold; 0 means unlimited. The leader refuses a change that would add one more
    /// (`RaftError.tooManyLearners`) when it is proposed, against its whole log: one change is in flight at a time,
    /// so no change can be appended between that check and this one's commit (etcd's `--max-learners`, checked
    /// there when the change is applied).
    public var maxLearners: Int = 0
    /// Seed of the node's private generator (SplitMix64), used only for election-timeout jitter.
    public var randomSeed: UInt64
    /// Entries kept in memory below a compaction point, so a follower that lags slightly catches up from the
    /// log instead of needing a whole snapshot (etcd's SnapshotCatchUpEntries).
    public var snapshotCatchUpEntries: UInt64 = 5000
    /// On a leader, compaction also keeps what a follower that is catching up still needs (the entries after the
    /// snapshot being sent to it, or after its match, for a follower heard from recently), as long as that follower
    /// is at most this many entries behind; 0 disables it. Without it a follower that needs a snapshot can need another one as soon as it installed the
    /// first, whenever more than `snapshotCatchUpEntries` writes arrive while the snapshot travels, and so on forever.
    public var catchUpRetention: UInt64 = 0
    /// Total bytes of committed entries handed out in one Ready (at least one entry); 0 means unlimited. Keeps
    /// a restart with a long unapplied tail from materializing it all at once.
    public var maxCommittedSizePerReady: Int = 0
    /// TEST-ONLY: disables one safety rule. See `SafetyMutation`. Must stay nil outside mutation tests.
    public var testingMutation: SafetyMutation? = nil

    public init(id: NodeID, randomSeed: UInt64) {
        self.id = id
        self.randomSeed = randomSeed
    }

    func validate() {
        precondition(id != 0, "node id 0 is reserved for 'none'")
        precondition(heartbeatTick > 0, "heartbeatTick must be positive")
        precondition(electionTick > heartbeatTick, "electionTick must exceed heartbeatTick")
        precondition(maxInflightMessages > 0, "maxInflightMessages must be positive")
        precondition(maxSizePerMessage > 0, "maxSizePerMessage must be positive")
        precondition(
            readOnlyOption != .leaseBased || checkQuorum, "lease-based reads are only safe with checkQuorum")
    }
}

/// Small, fast, deterministic generator. Raft has no randomness of its own: everything it draws comes from
/// here, seeded by the configuration, so a run is a pure function of (config, inputs).
public struct SplitMix64: Sendable {
    var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0..<bound` (bound > 0), by rejection so small bounds carry no modulo bias.
    mutating func next(below bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        let limit = UInt64.max - UInt64.max % bound
        while true {
            let v = next()
            if v < limit { return v % bound }
        }
    }
}
