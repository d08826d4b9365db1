import Node
import Raft

/// A `RaftNode` driven the way `MemberNode` drives it, without the I/O: peer messages are stepped as they arrive
/// (errors ignored, as the member's `try? raft.step`), Readies are worked through with the member's own
/// `ReadyPipeline` (a leader's snapshot may stay in restore while further messages are stepped), what the member
/// would write is kept in `DurableState`, and the application's side (applying entries and conf changes,
/// compacting at the applied index, reporting snapshots sent) follows `MemberNode` too.
///
/// After every input the invariants that must hold whatever peers send are checked (`RaftInvariants`); a violation
/// traps, which is how libFuzzer learns of it.
struct RaftMember {
    private(set) var raft: RaftNode
    private var pipeline = ReadyPipeline()
    private(set) var durable: DurableState
    private var invariants: RaftInvariants
    /// Peers a snapshot was sent to, whose outcome the transport reports later (`reportSnapshot`).
    private var snapshotsInFlight: [NodeID] = []
    let config: RaftConfig

    init(_ scenario: RaftScenario) {
        config = scenario.config
        let state = scenario.persistentState
        raft = RaftNode(config: config, state: state)
        durable = DurableState(state)
        invariants = RaftInvariants(raft)
        drain(holdingSnapshot: false)
        if scenario.campaigns {
            try? raft.campaign()
            drain(holdingSnapshot: false)
        }
        if scenario.wins { win() }
    }

    /// Member 2 grants the votes the campaign asks for, until the member leads.
    private mutating func win() {
        for _ in 0..<2 where raft.role != .leader {
            let kind: MessageKind = raft.role == .preCandidate ? .requestPreVoteResponse : .requestVoteResponse
            let term = raft.role == .preCandidate ? raft.currentTerm + 1 : raft.currentTerm
            step(Message(kind: kind, from: 2, to: RaftScenario.me, term: term))
            drain(holdingSnapshot: false)
        }
        precondition(raft.role == .leader, "the raft target's scenario did not elect its member")
    }

    // MARK: - Inputs

    /// A message from a peer, as the member steps it.
    mutating func step(_ message: Message) {
        try? raft.step(message)
        invariants.check(raft)
    }

    mutating func tick() {
        raft.tick()
        invariants.check(raft)
    }

    /// What the member's own clients and operators may ask meanwhile: a write, a linearizable read, a leader
    /// transfer (`moveLeader`).
    mutating func propose(_ data: [UInt8]) {
        try? raft.propose(data)
        raft.readIndex(context: data)
        invariants.check(raft)
    }

    mutating func transferLeadership(to target: NodeID) {
        raft.transferLeadership(to: target)
        invariants.check(raft)
    }

    /// The transport's reports of the snapshots sent since the last one, all with the same outcome.
    mutating func reportSnapshots(succeeded: Bool) {
        for peer in snapshotsInFlight { raft.reportSnapshot(peer, succeeded: succeeded) }
        snapshotsInFlight.removeAll()
        invariants.check(raft)
    }

    /// The application made its state durable through the applied index (`MemberNode.compactLog`).
    mutating func compact() {
        let applied = raft.appliedIndex
        guard pipeline.stage == .idle, raft.term(at: applied) != nil else { return }
        raft.compact(through: applied, snapshotData: [])
        invariants.check(raft)
    }

    // MARK: - Ready

    /// Works through Readies until Raft has none (`MemberNode.drainReadies`). With `holdingSnapshot`, a leader's
    /// snapshot stays in restore (the apply loop is slow) and the Ready waits, as the member's does.
    mutating func drain(holdingSnapshot: Bool) {
        while true {
            if case .restoringSnapshot = pipeline.stage {
                if holdingSnapshot { return }
                _ = carryOut(pipeline.snapshotRestored())  // The rest of a Ready starts no second restore.
                pipeline.finished(&raft)
                invariants.check(raft)
                continue
            }
            guard let steps = pipeline.next(&raft) else { return }
            if carryOut(steps) {
                pipeline.finished(&raft)
                invariants.check(raft)
            }
        }
    }

    /// Carries out a Ready's steps; false when the last one starts a snapshot restore.
    private mutating func carryOut(_ steps: [ReadyPipeline.Step]) -> Bool {
        for step in steps {
            switch step {
            case .softState(let soft):
                precondition(soft.role != .leader || soft.leader == config.id, "a leader that names another leader")
            case .send(let messages):
                invariants.checkOutgoing(messages, from: config.id)
                for m in messages where m.kind == .snapshot && !snapshotsInFlight.contains(m.to) {
                    snapshotsInFlight.append(m.to)
                }
            case .restoreSnapshot(let snapshot):
                durable.restore(snapshot.metadata)
                return false
            case .recordSnapshot(let meta):
                durable.recordSnapshot(meta)
            case .persist(let entries, let hardState, _):
                durable.persist(entries: entries, hardState: hardState)
            case .sendAfterPersist(let messages):
                invariants.checkOutgoing(messages, from: config.id)
            case .apply(let entries):
                for entry in entries {
                    durable.apply(entry)
                    if entry.kind == .confChange, let change = try? ConfChange(serialized: entry.data) {
                        raft.applyConfChange(change)
                    }
                }
            case .readStates, .droppedReads:
                break
            }
        }
        return true
    }

    /// The member restarts from what it wrote: Raft must accept its own durable state.
    func restart() {
        let restarted = RaftNode(config: config, state: durable.persistentState)
        precondition(restarted.currentTerm == durable.hardState.term, "a restart changed the term")
    }
}

/// What the member has written to its log and applied to its state machine, checked as it is written: the log
/// stays contiguous, its terms never decrease (recovery refuses such a log), and only committed entries are
/// applied, once each, in order, with the log's content.
struct DurableState {
    private(set) var snapshot: Snapshot?
    private(set) var entries: [Entry]
    private(set) var hardState: HardState
    private(set) var applied: UInt64
    /// The configuration at the log's base when there is no snapshot.
    private let confState: ConfState

    init(_ state: PersistentState) {
        snapshot = state.snapshot
        let base = state.snapshot?.metadata.index ?? 0
        entries = state.entries.filter { $0.index > base }
        hardState = state.hardState
        applied = max(state.applied, base)
        confState = state.confState
    }

    var baseIndex: UInt64 { snapshot?.metadata.index ?? 0 }
    var lastIndex: UInt64 { baseIndex + UInt64(entries.count) }

    func entry(at index: UInt64) -> Entry? {
        guard index > baseIndex, index <= lastIndex else { return nil }
        return entries[Int(index - baseIndex - 1)]
    }

    /// The state machine was replaced by a leader's snapshot.
    mutating func restore(_ meta: SnapshotMetadata) {
        precondition(meta.index > applied, "a snapshot at \(meta.index) restored over applied index \(applied)")
        applied = meta.index
    }

    /// The log now starts at the snapshot, and what preceded it is gone (`replacingLog: true`).
    mutating func recordSnapshot(_ meta: SnapshotMetadata) {
        snapshot = Snapshot(metadata: meta)
        entries.removeAll()
    }

    /// Appends `new`, truncating the log from its first index.
    mutating func persist(entries new: [Entry], hardState newHardState: HardState?) {
        if let first = new.first {
            precondition(
                first.index > baseIndex && first.index <= lastIndex + 1,
                "entries from \(first.index) written to a log of \(baseIndex + 1)...\(lastIndex)")
            precondition(first.index > hardState.commit, "entry \(first.index) overwrites a committed entry")
            entries.removeSubrange(Int(first.index - baseIndex - 1)...)
            var previousTerm = entries.last?.term ?? snapshot?.metadata.term ?? 0
            for e in new {
                precondition(e.index == lastIndex + 1, "entries written out of order")
                precondition(e.term >= previousTerm, "entry \(e.index) has a lower term than the one before it")
                previousTerm = e.term
                entries.append(e)
            }
        }
        if let newHardState {
            precondition(newHardState.term >= hardState.term, "the durable term went back")
            precondition(
                newHardState.term > hardState.term || hardState.vote == 0 || newHardState.vote == hardState.vote,
                "a second vote in term \(hardState.term)")
            precondition(newHardState.commit <= lastIndex, "commit index \(newHardState.commit) beyond the log")
            hardState = newHardState
        }
    }

    mutating func apply(_ entry: Entry) {
        precondition(entry.index == applied + 1, "entry \(entry.index) applied after \(applied)")
        precondition(entry.index <= hardState.commit, "entry \(entry.index) applied before it is durably committed")
        precondition(self.entry(at: entry.index) == entry, "entry \(entry.index) applied is not the logged one")
        applied = entry.index
    }

    var persistentState: PersistentState {
        PersistentState(
            hardState: hardState, snapshot: snapshot, entries: entries, confState: confState, applied: applied)
    }
}

/// What must hold of a member whatever its peers send: its term and commit index never go back, the commit index
/// stays within the log, only what is committed is applied, a vote once cast in a term stays, and what it sends
/// comes from itself.
struct RaftInvariants {
    private var term: UInt64
    private var vote: NodeID
    private var commit: UInt64

    init(_ raft: RaftNode) {
        term = raft.currentTerm
        vote = raft.votedFor
        commit = raft.commitIndex
    }

    mutating func check(_ raft: RaftNode) {
        precondition(raft.currentTerm >= term, "term went back from \(term) to \(raft.currentTerm)")
        if raft.currentTerm == term && vote != 0 {
            precondition(raft.votedFor == vote, "voted for \(vote) then \(raft.votedFor) in term \(term)")
        }
        precondition(raft.commitIndex >= commit, "commit index went back from \(commit) to \(raft.commitIndex)")
        precondition(raft.commitIndex <= raft.lastIndex, "commit index \(raft.commitIndex) beyond the last index")
        precondition(raft.appliedIndex <= raft.commitIndex, "applied index beyond the commit index")
        precondition(raft.firstIndex <= raft.lastIndex + 1, "the log's first index is beyond its end")
        precondition(raft.role != .leader || raft.leaderID == raft.id, "a leader that names another leader")
        term = raft.currentTerm
        vote = raft.votedFor
        commit = raft.commitIndex
    }

    func checkOutgoing(_ messages: [Message], from id: NodeID) {
        for m in messages {
            precondition(m.from == id && m.to != id && m.to != 0, "a message \(m) that is not from this member")
            // A granted pre-vote answers in the candidate's term, whatever it is; everything else is in ours or,
            // for a pre-vote request, the next.
            precondition(
                m.term <= term + 1 || m.kind == .requestPreVoteResponse,
                "a message \(m) from a term beyond the member's")
            for (k, e) in m.entries.enumerated() where m.kind == .append {
                precondition(e.index == m.index + 1 + UInt64(k), "an append \(m) whose entries are not contiguous")
            }
        }
    }
}
