import Foundation
import Raft

/// Work the Raft loop hands to the apply loop, in log order.
///
/// Why two threads: the Raft loop's cycle is bounded by its fsync; applying committed entries (SQLite writes,
/// watch fan-out, completing clients) on the same thread made every cycle fsync + apply long. With apply on its
/// own thread, the next fsync runs while the previous batch is applied (etcd's raft/apply pipeline), and the
/// apply loop takes everything queued at once, so under load one SQLite transaction covers several fsyncs.
final class ApplyQueue: @unchecked Sendable {
    enum Item {
        /// Committed entries, with the configuration each `.confChange` entry left (the Raft loop asked Raft).
        case entries([Entry], configurations: [UInt64: ConfState])
        /// Linearizable reads confirmed at `index`: released once the state machine has applied it.
        case reads(index: UInt64, waiters: [ReadWaiter])
        /// Anything else that needs the state machine (snapshots, defragmentation): runs in order with the rest.
        case perform(@Sendable (MemberNode) -> Void)
    }

    /// How many entries may wait before the Raft loop holds back: bounds memory when applying is slower than
    /// committing, without stalling Raft's heartbeats for long.
    static let maxPendingEntries = 16_384

    private let condition = NSCondition()
    private var items: [Item] = []
    private var pendingEntries = 0
    private var stopped = false
    /// Someone is applying (the apply loop with what it took, or the Raft loop inline): the state machine has one
    /// writer at a time, and items are applied in the order they were queued.
    private var busy = false
    /// The thread that holds `busy` (for `ownedByCaller`).
    private var owner: pthread_t?
    /// Where the queue's work is taken (`attach`), and whether a pass is already asked for there: one pass takes
    /// everything queued, so a burst of pushes costs one wake-up of the apply loop.
    private var loop: (any SerialLoop)?
    private var pass: (@Sendable () -> Void)?
    private var passScheduled = false

    /// Connects the queue to the apply loop: `pass` runs on `loop` whenever there is work to take.
    func attach(loop: any SerialLoop, pass: @escaping @Sendable () -> Void) {
        condition.lock()
        self.loop = loop
        self.pass = pass
        let wake = schedulePassLocked(force: !items.isEmpty || stopped)
        condition.unlock()
        wake?()
    }

    /// Asks for a pass if there is something to take and none is asked for yet; the caller runs the returned
    /// closure once the lock is released.
    private func schedulePassLocked(force: Bool = true) -> (() -> Void)? {
        guard force, !passScheduled, !busy, let loop, let pass else { return nil }
        passScheduled = true
        return { loop.execute(pass) }
    }

    func push(_ item: Item) {
        condition.lock()
        if case .entries(let entries, _) = item { pendingEntries += entries.count }
        items.append(item)
        let wake = schedulePassLocked()
        condition.unlock()
        wake?()
    }

    /// Waits (at most `timeout` seconds) while more than `maxPendingEntries` entries are queued, and then for as
    /// long as more than `hardLimit` are: the soft bound keeps the Raft loop's heartbeats flowing while applying
    /// briefly lags, the hard one bounds the queue's memory whatever the leader commits (etcd's Raft loop likewise
    /// blocks on its apply channel).
    func waitForRoom(timeout: TimeInterval, hardLimit: Int = .max) {
        condition.lock()
        let deadline = Date().addingTimeInterval(timeout)
        while pendingEntries > Self.maxPendingEntries && !stopped {
            if !condition.wait(until: deadline) { break }
        }
        while pendingEntries > hardLimit && !stopped {
            _ = condition.wait(until: Date().addingTimeInterval(0.1))
        }
        condition.unlock()
    }

    /// Everything queued, for a pass of the apply loop (empty when only `stopped` or a tick brought it). Nil when
    /// the Raft loop is applying (its `done()` asks for the next pass). Otherwise the caller owns the state machine
    /// until it calls `done()`.
    func take() -> (items: [Item], stopped: Bool)? {
        condition.lock()
        defer { condition.unlock() }
        passScheduled = false
        if busy { return nil }
        busy = true
        owner = pthread_self()
        let taken = items
        items.removeAll(keepingCapacity: true)
        pendingEntries = 0
        condition.broadcast()
        return (taken, stopped)
    }

    /// Claims the state machine when nothing is queued and nobody applies: the Raft loop may then apply a small
    /// batch itself, saving the apply loop's wake-up on the path of a lone client's write. Release with `done()`.
    func claimIfIdle() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard items.isEmpty && !busy && !stopped else { return false }
        busy = true
        owner = pthread_self()
        return true
    }

    func done() {
        condition.lock()
        busy = false
        owner = nil
        // Work pushed while the state machine was held waits for the next pass. The apply loop otherwise sleeps
        // until work comes, and waking it after every write the Raft loop applied inline cost a wake-up and a
        // context switch per write on the lone-client path.
        let wake = schedulePassLocked(force: !items.isEmpty || stopped)
        condition.unlock()
        wake?()
    }

    /// No more work: the apply loop's next pass is its last (it sees `stopped`).
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        let wake = schedulePassLocked()
        condition.unlock()
        wake?()
    }

    /// Whether the calling thread holds the state machine (took items or claimed it, and has not called `done()`):
    /// what the apply loop's state may be touched under. For assertions: it takes the lock.
    var ownedByCaller: Bool {
        condition.lock()
        defer { condition.unlock() }
        return busy && owner.map { pthread_equal($0, pthread_self()) != 0 } == true
    }

    var isEmpty: Bool {
        condition.lock()
        defer { condition.unlock() }
        return items.isEmpty
    }
}
