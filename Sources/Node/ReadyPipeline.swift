import Raft

/// How the Raft loop works through a `Ready`, as a state machine: the member's shell asks it for the next Ready's
/// steps, carries them out in the order given (Raft's contract, written on `Ready`), and reports back.
///
/// Why a state machine and not a function: one step is asynchronous. Restoring the state machine from a leader's
/// snapshot replaces the database on the apply loop (after everything queued before it), which takes seconds on a
/// large database. The Raft loop used to block on a semaphore meanwhile, so it took in no peer message, tick or
/// client request, and no other loop work could run on its thread (in the server, the peer connections' event
/// loop). Now the Ready waits in `.restoringSnapshot` while the loop goes on: Raft may be stepped and ticked between
/// `ready()` and `advance()`, and it hands out no further Ready until this one is advanced, so nothing it decides
/// meanwhile (acknowledgements, votes) leaves before it is durable.
///
/// The pipeline holds no I/O and no threads: `ReadyPipelineTests` drive it with a real `RaftNode`. Package-visible so
/// that the raft fuzz target (FuzzHarness) works through Readies exactly as the member does.
package struct ReadyPipeline {
    /// Where the Ready in hand is.
    package enum Stage: Equatable {
        /// No Ready taken from Raft.
        case idle
        /// The shell is carrying out the steps `next` or `snapshotRestored` gave; it calls `finished` after the last.
        case handling
        /// The shell restores the state machine from this snapshot; it calls `snapshotRestored` when done.
        case restoringSnapshot(index: UInt64)
    }

    /// One thing the shell does, in order.
    package enum Step {
        /// The leader or this member's role changed.
        case softState(SoftState)
        /// Messages that may leave before anything is durable (a leader's appends, heartbeats).
        case send([Message])
        /// Replace the state machine with the leader's snapshot, asynchronously; always the last step of its batch.
        case restoreSnapshot(Snapshot)
        /// Record in the log that it now starts at this snapshot (a marker, then drop what precedes it).
        case recordSnapshot(SnapshotMetadata)
        /// Append these entries (truncating from the first one's index) and the hard state; fsync when `sync`.
        case persist(entries: [Entry], hardState: HardState?, sync: Bool)
        /// Messages that vouch for what was just made durable (votes, append acknowledgements).
        case sendAfterPersist([Message])
        /// Committed entries, in order, to hand to the state machine.
        case apply([Entry])
        /// Linearizable reads Raft confirmed, served once the applied index reaches theirs.
        case readStates([ReadState])
        /// Read requests Raft dropped, to retry.
        case droppedReads([[UInt8]])
    }

    package private(set) var stage: Stage = .idle
    /// The Ready in hand, from `next` to `finished`.
    private var ready: Ready?

    package init() {}

    /// The steps of Raft's next Ready, or nil when it has nothing or a Ready is already in hand.
    package mutating func next(_ raft: inout RaftNode) -> [Step]? {
        guard stage == .idle, raft.hasReady() else { return nil }
        let rd = raft.ready()
        ready = rd
        var steps: [Step] = []
        if let soft = rd.softState { steps.append(.softState(soft)) }
        if !rd.messages.isEmpty { steps.append(.send(rd.messages)) }
        if let snapshot = rd.snapshot {
            stage = .restoringSnapshot(index: snapshot.metadata.index)
            steps.append(.restoreSnapshot(snapshot))
            return steps
        }
        stage = .handling
        return steps + Self.afterRestore(rd)
    }

    /// The shell restored the state machine from the snapshot: the rest of the Ready's steps.
    package mutating func snapshotRestored() -> [Step] {
        guard case .restoringSnapshot = stage, let rd = ready else {
            preconditionFailure("snapshotRestored() without a snapshot being restored (stage \(stage))")
        }
        stage = .handling
        return [.recordSnapshot(rd.snapshot!.metadata)] + Self.afterRestore(rd)
    }

    /// Every step is in the shell's hands: Raft counts the Ready done, and the next one may be asked for. The member's
    /// `RaftDriver` calls it once it has listed the steps as actions, before the shell runs them: the shell runs the
    /// list in order (so nothing of a later Ready overtakes a write of this one) and a write that fails stops the
    /// member, so Raft never acts on a Ready the log did not take.
    package mutating func finished(_ raft: inout RaftNode) {
        guard stage == .handling, let rd = ready else {
            preconditionFailure("finished() without a Ready being handled (stage \(stage))")
        }
        raft.advance(rd)
        ready = nil
        stage = .idle
    }

    /// Steps 2–5 of Raft's contract, after the snapshot (if any) is in place.
    private static func afterRestore(_ rd: Ready) -> [Step] {
        var steps: [Step] = []
        if !rd.entries.isEmpty || rd.hardState != nil {
            steps.append(.persist(entries: rd.entries, hardState: rd.hardState, sync: rd.mustSync))
        }
        if !rd.messagesAfterPersist.isEmpty { steps.append(.sendAfterPersist(rd.messagesAfterPersist)) }
        if !rd.committedEntries.isEmpty { steps.append(.apply(rd.committedEntries)) }
        if !rd.readStates.isEmpty { steps.append(.readStates(rd.readStates)) }
        if !rd.droppedReadIndexes.isEmpty { steps.append(.droppedReads(rd.droppedReadIndexes)) }
        return steps
    }
}
