import Raft

/// Where the raft target's member stands before the first peer message: member 1 of a cluster of voters 1, 2 and
/// 3, restored from durable state the way a restarted member is (`RaftNode(config:state:)`), then, for the roles
/// that need it, driven there by the same messages a real election takes. The first input byte chooses one: its
/// low three bits the state, the others the configuration options a member can run with.
struct RaftScenario {
    /// The member the target steps; the peers are 2 and 3 (4 is a voter only where 1 is a learner).
    static let me: NodeID = 1

    enum Start: UInt8, CaseIterable {
        /// A brand-new cluster: the three founding entries, committed, term 1.
        case founding
        /// Term 3, entries of terms 1 to 3 (1...9), committed through 7, applied through 5.
        case follower
        /// As `follower`, after a compaction: a snapshot at 6 (term 2), entries 7...9, committed through 8.
        case snapshotted
        /// As `follower`, after campaigning: pre-candidate with pre-vote, candidate in term 4 without.
        case campaigning
        /// As `follower`, elected in term 4 by member 2's vote: the leader, with its empty entry at 10.
        case leader
        /// As `snapshotted`, elected: a leader that must send a snapshot to a follower behind its log.
        case snapshottedLeader
        /// A learner: a snapshot at 5 (term 2) of voters 2, 3 and 4, and learner 1.
        case learner
    }

    let start: Start
    let config: RaftConfig

    init(selector: UInt8) {
        start = Start.allCases[Int(selector & 7) % Start.allCases.count]
        var config = RaftConfig(id: Self.me, randomSeed: 0x5EED)
        config.preVote = selector & 0x08 == 0
        config.checkQuorum = selector & 0x10 == 0
        if config.checkQuorum && selector & 0x20 != 0 { config.readOnlyOption = .leaseBased }
        if selector & 0x40 != 0 {
            // Tight flow control and a short catch-up window, so a few messages reach the limits.
            config.maxSizePerMessage = 64
            config.maxInflightMessages = 2
            config.snapshotCatchUpEntries = 2
        }
        if selector & 0x80 != 0 { config.maxCommittedSizePerReady = 1 }
        self.config = config
    }

    /// The durable state the member restarts from.
    var persistentState: PersistentState {
        switch start {
        case .founding:
            return RaftNode.bootstrapState(peers: [1, 2, 3])
        case .follower, .campaigning, .leader:
            let founding = RaftNode.bootstrapState(peers: [1, 2, 3])
            return PersistentState(
                hardState: HardState(term: 3, vote: 2, commit: 7), entries: founding.entries + Self.entries(4...9),
                applied: 5)
        case .snapshotted, .snapshottedLeader:
            return PersistentState(
                hardState: HardState(term: 3, vote: 0, commit: 8),
                snapshot: Self.snapshot(index: 6, voters: [1, 2, 3]),
                entries: Self.entries(7...9), applied: 6)
        case .learner:
            return PersistentState(
                hardState: HardState(term: 2, vote: 0, commit: 5),
                snapshot: Self.snapshot(index: 5, voters: [2, 3, 4], learners: [1]), applied: 5)
        }
    }

    /// Writes of clients (`put i`) at `indexes`, in term 2 through 6 and term 3 after (the founding entries hold 1...3).
    static func entries(_ indexes: ClosedRange<UInt64>) -> [Entry] {
        indexes.map { Entry(term: $0 <= 6 ? 2 : 3, index: $0, data: Array("put \($0)".utf8)) }
    }

    static func snapshot(index: UInt64, voters: [NodeID], learners: [NodeID] = []) -> Snapshot {
        Snapshot(
            metadata: SnapshotMetadata(index: index, term: 2, confState: ConfState(voters: voters, learners: learners)))
    }

    /// Whether the scenario's member campaigns, and whether it must win (member 2 grants every vote asked).
    var campaigns: Bool { start == .campaigning || wins }
    var wins: Bool { start == .leader || start == .snapshottedLeader }
}
