import Raft

/// The Raft loop's state and decisions, without its threads, files or network: what the member's loop does when
/// requests arrive, when it ticks, and when the apply loop reports back, as a list of actions the shell (the
/// member) carries out in order.
///
/// Raft's contract (written on `Ready`) orders the work: send, persist, send what vouches for the persisted state,
/// apply, serve reads. The driver works through Readies with a `ReadyPipeline` and hands out their steps as actions
/// in that order; the shell runs them one after the other and stops at the first that fails (a failed write stops
/// the member). Raft counts a Ready done (`advance`) when the driver has listed its actions, before the shell ran
/// them: nothing leaves the member ahead of the writes it depends on, since the shell runs the list in order, and
/// Raft's memory being ahead of a log whose write failed does not matter, as the member stops there. The one step
/// whose outcome the driver waits for is the restore of a leader's snapshot on the apply loop: the Ready stays in
/// hand (`onSnapshotRestored` carries on) while the loop goes on stepping and ticking Raft.
///
/// Whether the state machine has applied a read's index is the shell's to check (`serveReads`): the applied index
/// moves on the apply loop, and an inline apply earlier in the same list moves it.
///
/// The driver holds no I/O and no threads: `RaftDriverTests` drive it with a real `RaftNode`. Actions are appended
/// to the caller's array, which the member reuses from pass to pass (a lone client's write crosses this loop).
struct RaftDriver {
    /// What the shell does, in the order given.
    enum Action {
        /// Raft's leader or this member's role changed (from `previousLeader`): publish it, move the leases, log.
        case softState(SoftState, previousLeader: UInt64, term: UInt64)
        /// Messages to peers.
        case send([Message])
        /// A heartbeat to `peer` left `late` nanoseconds past etcd's limit (`LateHeartbeats`): count and warn.
        case lateHeartbeat(to: UInt64, late: Int64)
        /// A follower needs a database snapshot: the apply loop writes an image at its applied index and reports
        /// back (`onSnapshotImageWritten`).
        case writeSnapshotImage(for: Message)
        /// Sends the image written for a follower with this snapshot message.
        case sendSnapshot(Message, image: SnapshotImage)
        /// Replaces the state machine with the leader's snapshot from the image the transport wrote, on the apply
        /// loop after everything queued before it, and reports back (`onSnapshotRestored`). Last of its list.
        case restoreSnapshot(Snapshot, imagePath: String)
        /// Records in the log that it now starts at this snapshot (a marker, fsynced), then releases the segments
        /// it covers. `replacingLog`: a leader's snapshot, which drops the log; otherwise this member's own
        /// compaction.
        case recordSnapshot(SnapshotMetadata, replacingLog: Bool)
        /// Appends these entries (truncating from the first one's index) and the hard state; fsync when `sync`.
        case persist(entries: [Entry], hardState: HardState?, sync: Bool)
        /// Committed entries, in order, for the state machine, with the configuration each conf change left.
        case apply([Entry], configurations: [UInt64: ConfState])
        /// Reads Raft confirmed at `index`: served once the state machine has applied it (at once if it has).
        case serveReads(index: UInt64, [ReadWaiter])
        /// Reads whose deadline passed: each fails with its own expiry, else with `error`.
        case expireReads([ReadWaiter], error: EtcdError)
        /// Read index rounds that were slow: answered late, or given up.
        case slowReadIndexes(Int)
        /// A proposal Raft never took: its waiter fails.
        case failProposal(id: UInt64, EtcdError)
        /// Raft's term, commit and last index as of the Ready just done: publish them.
        case publishStatus(Status)
        /// A database image nobody needs any more.
        case removeFile(String)
        /// The log just dropped this many bytes of entries from memory at once (the entries replayed at start-up,
        /// or a window kept for a follower): hand the freed pages back to the kernel (`Allocator`).
        case releaseFreedMemory(bytes: Int)
        /// The member cannot go on.
        case fail(String)
    }

    /// The cheap part of Raft's state the member publishes (`raft.status` builds per-peer progress, too much for
    /// every pass).
    struct Status: Equatable {
        var term: UInt64
        var commitIndex: UInt64
        var lastIndex: UInt64
        var lastTerm: UInt64
        var isLearner: Bool
    }

    /// Raft itself; the shell steps it directly for rare operations (leader transfer, conf changes, reports).
    var raft: RaftNode
    /// Where the Ready in hand is (a snapshot restore spans several passes of the loop).
    private(set) var pipeline = ReadyPipeline()
    private(set) var reads = ReadIndexRounds<ReadWaiter>()
    /// When this member, as leader, last handed each follower a heartbeat (to tell the late ones).
    private var lateHeartbeats: LateHeartbeats
    /// Database images received from the leader, by snapshot index, until Raft hands the snapshot out.
    private(set) var pendingSnapshotImages: [UInt64: String] = [:]
    /// Followers a database snapshot is being written or sent to. Raft may ask again before the first attempt
    /// reported back; a second transfer to the same follower would only compete with the first.
    private(set) var snapshotsInFlight: Set<UInt64> = []
    private var lastLeaseCheck: Int64 = 0
    /// The leader as the member last published it (what "no leader" errors are decided on).
    private(set) var leader: UInt64 = 0
    /// How many applied entries followers may still ask for (the catch-up window kept in memory).
    let catchUpEntries: UInt64

    /// How many entries beyond the catch-up window accumulate before the log is trimmed (amortises the trim).
    static let logTrimSlack: UInt64 = 1024
    /// A trim or compaction dropping at least this many bytes asks for the freed memory to be released: the
    /// allocator keeps freed chunks amid live ones (a 4 KiB-value log replayed at start-up, 400 MB, stayed resident
    /// after it was dropped), while the steady trims of `logTrimSlack` entries are reused by the next entries.
    static let releaseMemoryBytes = 64 << 20
    /// How often a leader looks for expired leases to revoke.
    static let leaseCheckNanoseconds: Int64 = 500_000_000

    init(raft: RaftNode, catchUpEntries: UInt64, heartbeatNanoseconds: Int64) {
        self.raft = raft
        self.catchUpEntries = catchUpEntries
        lateHeartbeats = LateHeartbeats(heartbeatNanoseconds: heartbeatNanoseconds)
    }

    // MARK: Entry points

    /// Requests that arrived: proposals (a proposal whose caller's deadline passed is never proposed), peer
    /// messages, linearizable reads (they wait for the next round, `onReady`).
    mutating func onInbox(_ work: InboxWork, now: Int64, into actions: inout [Action]) {
        for proposal in work.proposals {
            if let deadline = proposal.deadline, deadline <= now {
                // The caller gave up before this loop got to it: never replicated, never applied.
                actions.append(.failProposal(id: proposal.id, .deadlineExceeded))
                continue
            }
            do {
                try raft.propose(proposal.data)
            } catch {
                actions.append(.failProposal(id: proposal.id, leader != 0 ? .leaderChanged : .noLeader))
            }
        }
        for message in work.messages { try? raft.step(message) }
        reads.add(work.reads)
    }

    /// Asks Raft for a read index if reads wait for one, then works through Raft's Readies: after the inbox, and
    /// when the loop starts. `roundID` names a new round (see `ReadIndexRounds.startRound`).
    mutating func onReady(now: Int64, roundID: () -> UInt64, into actions: inout [Action]) {
        requestReadIndexIfNeeded(now: now, roundID: roundID)
        drainReadies(now: now, into: &actions)
    }

    /// A heartbeat interval passed: Raft ticks, reads past their deadline fail, a leader revokes expired leases
    /// (`revocations`: the proposals that do it, asked for every `leaseCheckNanoseconds`), then `onReady`.
    mutating func onTick(
        now: Int64, roundID: () -> UInt64, revocations: () -> [[UInt8]], into actions: inout [Action]
    ) {
        raft.tick()
        let (expired, givenUp) = reads.expire(now: now, deadline: \.deadline)
        if !expired.isEmpty { actions.append(.expireReads(expired, error: leader != 0 ? .timeout : .noLeader)) }
        if givenUp > 0 { actions.append(.slowReadIndexes(givenUp)) }
        if now - lastLeaseCheck >= Self.leaseCheckNanoseconds {
            lastLeaseCheck = now
            if raft.role == .leader {
                for data in revocations() { try? raft.propose(data) }
            }
        }
        onReady(now: now, roundID: roundID, into: &actions)
    }

    /// The apply loop restored the state machine from the leader's snapshot: the Ready that carried it goes on.
    mutating func onSnapshotRestored(now: Int64, into actions: inout [Action]) {
        append(pipeline.snapshotRestored(), now: now, into: &actions)
        finishReady(into: &actions)
        drainReadies(now: now, into: &actions)
    }

    /// A snapshot message from the leader, whose database image the transport wrote to `imagePath`.
    mutating func onSnapshotReceived(_ message: Message, imagePath: String, into actions: inout [Action]) {
        guard let index = message.snapshot?.metadata.index else { return }
        // The same snapshot may arrive twice (the leader retried): keep the newest image, drop the other.
        if let previous = pendingSnapshotImages[index], previous != imagePath { actions.append(.removeFile(previous)) }
        pendingSnapshotImages[index] = imagePath
        try? raft.step(message)
    }

    /// The outcome of sending a snapshot to `peer` (Raft keeps the follower waiting until it hears).
    mutating func onSnapshotReported(to peer: UInt64, succeeded: Bool) {
        snapshotsInFlight.remove(peer)
        raft.reportSnapshot(peer, succeeded: succeeded)
    }

    /// The apply loop wrote a database image at `index` for the follower `message` is for: it leaves with that
    /// index's snapshot metadata, or is dropped (and the transfer reported failed) if the log no longer knows it.
    mutating func onSnapshotImageWritten(
        _ message: Message, index: UInt64, image: SnapshotImage, into actions: inout [Action]
    ) {
        guard let term = raft.term(at: index) else {
            actions.append(.removeFile(image.path))
            onSnapshotReported(to: message.to, succeeded: false)
            return
        }
        var message = message
        message.snapshot = Snapshot(
            metadata: SnapshotMetadata(index: index, term: term, confState: raft.confState(at: index)))
        actions.append(.sendSnapshot(message, image: image))
    }

    /// The apply loop made the state machine durable through `applied`: a snapshot is recorded there, and Raft
    /// and the log drop what precedes it.
    mutating func onApplyCompacted(through applied: UInt64, into actions: inout [Action]) {
        // While a leader's snapshot is restored the log is about to start past `applied`; the next compaction
        // after it does the work.
        guard pipeline.stage == .idle, let term = raft.term(at: applied) else { return }
        let meta = SnapshotMetadata(index: applied, term: term, confState: raft.confState(at: applied))
        actions.append(.recordSnapshot(meta, replacingLog: false))
        compactLog(through: applied, into: &actions)
    }

    /// Every read, pending or in a round, taken out (the member stops).
    mutating func takeAllReads() -> [ReadWaiter] { reads.takeAll() }

    /// Raft's cheap status, for the member to publish.
    var status: Status {
        let lastIndex = raft.lastIndex
        return Status(
            term: raft.currentTerm, commitIndex: raft.commitIndex, lastIndex: lastIndex,
            lastTerm: raft.term(at: lastIndex) ?? 0, isLearner: raft.configuration.learners.contains(raft.id))
    }

    // MARK: Decisions

    private mutating func requestReadIndexIfNeeded(now: Int64, roundID: () -> UInt64) {
        if raft.leaderID == 0 && raft.role != .leader { return }
        if let context = reads.startRound(now: now, id: roundID()) { raft.readIndex(context: context) }
    }

    /// Works through Raft's Readies until it has none, or one waits for a snapshot to be restored.
    private mutating func drainReadies(now: Int64, into actions: inout [Action]) {
        while let steps = pipeline.next(&raft) {
            guard append(steps, now: now, into: &actions) else { return }
            finishReady(into: &actions)
        }
        trimLog(into: &actions)
        discardStaleSnapshotImages(into: &actions)
    }

    private mutating func finishReady(into actions: inout [Action]) {
        pipeline.finished(&raft)
        actions.append(.publishStatus(status))
    }

    /// A Ready's steps as actions; false when the last one starts a snapshot restore (or the member must stop),
    /// whose end (`onSnapshotRestored`) carries on with the rest.
    @discardableResult
    private mutating func append(_ steps: [ReadyPipeline.Step], now: Int64, into actions: inout [Action]) -> Bool {
        for step in steps {
            switch step {
            case .softState(let soft):
                // Heartbeats are timed within one term of leadership.
                lateHeartbeats.reset()
                actions.append(.softState(soft, previousLeader: leader, term: raft.currentTerm))
                leader = soft.leader
            case .send(var outgoing):
                // The database image must match an applied index exactly, so the apply loop writes it.
                outgoing.removeAll { message in
                    guard message.kind == .snapshot else { return false }
                    if snapshotsInFlight.insert(message.to).inserted {
                        actions.append(.writeSnapshotImage(for: message))
                    }
                    return true
                }
                if !outgoing.isEmpty { send(outgoing, now: now, into: &actions) }
            case .restoreSnapshot(let snapshot):
                let index = snapshot.metadata.index
                guard let image = pendingSnapshotImages.removeValue(forKey: index) else {
                    actions.append(
                        .fail("raft loop stopped: snapshot at index \(index) arrived without its database image"))
                    return false
                }
                actions.append(.restoreSnapshot(snapshot, imagePath: image))
                return false
            case .recordSnapshot(let meta):
                // Raft installs a leader's snapshot only over a log that diverged from it, and drops that log.
                actions.append(.recordSnapshot(meta, replacingLog: true))
            case .persist(let entries, let hardState, let sync):
                actions.append(.persist(entries: entries, hardState: hardState, sync: sync))
            case .sendAfterPersist(let outgoing):
                send(outgoing, now: now, into: &actions)
            case .apply(let entries):
                // Raft learns here that a configuration entry was applied (its configuration travels with the
                // entries, for the member table): only the Raft loop may touch Raft.
                var configurations: [UInt64: ConfState] = [:]
                for entry in entries where entry.kind == .confChange {
                    guard let change = try? ConfChange(serialized: entry.data) else { continue }
                    configurations[entry.index] = raft.applyConfChange(change)
                }
                actions.append(.apply(entries, configurations: configurations))
            case .readStates(let states):
                var slow = 0
                for state in states {
                    let (waiting, late) = reads.onConfirmed(state.context, now: now)
                    if late { slow += 1 }
                    if !waiting.isEmpty { actions.append(.serveReads(index: state.index, waiting)) }
                }
                if slow > 0 { actions.append(.slowReadIndexes(slow)) }
            case .droppedReads(let contexts):
                for context in contexts { reads.onDropped(context) }
            }
        }
        return true
    }

    /// etcd's heartbeat time detector (`LateHeartbeats`), then the messages.
    private mutating func send(_ messages: [Message], now: Int64, into actions: inout [Action]) {
        for message in messages where message.kind == .heartbeat {
            if let late = lateHeartbeats.onSent(to: message.to, now: now) {
                actions.append(.lateHeartbeat(to: message.to, late: late))
            }
        }
        actions.append(.send(messages))
    }

    /// Keeps the log in memory to what followers may still ask for: applied entries beyond the catch-up window
    /// are dropped from memory (the write-ahead log keeps them until the next snapshot; a follower that needs
    /// older ones gets a database snapshot, as after a compaction). Without it, memory held every entry since the
    /// last snapshot: up to `--snapshot-count` of them.
    private mutating func trimLog(into actions: inout [Action]) {
        let applied = raft.appliedIndex
        guard applied >= raft.firstIndex + catchUpEntries + Self.logTrimSlack else { return }
        compactLog(through: applied, into: &actions)
    }

    /// Raft drops its log through `applied` but for the catch-up window; a large drop asks for the memory back.
    private mutating func compactLog(through applied: UInt64, into actions: inout [Action]) {
        let dropped = raft.compact(through: applied, snapshotData: [])
        if dropped >= Self.releaseMemoryBytes { actions.append(.releaseFreedMemory(bytes: dropped)) }
    }

    /// Images of snapshots Raft will not hand out any more (the state machine is past them).
    private mutating func discardStaleSnapshotImages(into actions: inout [Action]) {
        guard !pendingSnapshotImages.isEmpty else { return }
        let applied = raft.appliedIndex
        for (index, path) in pendingSnapshotImages where index <= applied {
            actions.append(.removeFile(path))
            pendingSnapshotImages[index] = nil
        }
    }
}
