import Foundation

/// Where one of a member's three loops runs (Raft, apply, watch catch-up): one job at a time, in order, with a
/// periodic tick.
///
/// The node code does not care which thread that is, and this seam is how it is kept from caring: by default each
/// loop is a thread of its own (`ThreadLoop`); the server runs the Raft loop on the event loop that also owns the
/// peer connections, so that a Raft message goes from the socket into Raft, and Raft's answer back onto the socket,
/// without changing threads (on a follower, an append and its acknowledgement cost no thread wake-up at all); and a
/// deterministic simulation can run every loop of every member on one scheduler, in an order chosen by a seed.
/// The node never blocks one loop waiting for another.
public protocol SerialLoop: Sendable {
    /// Runs `work` on the loop after what is already queued (from any thread, the loop's own included).
    func execute(_ work: @escaping @Sendable () -> Void)
    /// Calls `tick` on the loop every `interval` until `stop()`.
    func schedule(every interval: Duration, _ tick: @escaping @Sendable () -> Void)
    /// Whether the caller runs on the loop.
    var inLoop: Bool { get }
    /// Stops ticking; once it returns, no work queued before runs any more. Not to be called on the loop.
    func stop()
}

/// A loop on a dedicated thread: a queue of work and a tick, behind one condition variable.
public final class ThreadLoop: SerialLoop, @unchecked Sendable {
    // @unchecked: all state is under `condition`.
    private let condition = NSCondition()
    private var queue: [@Sendable () -> Void] = []
    private var tick: (interval: TimeInterval, next: Date, body: @Sendable () -> Void)?
    private var stopped = false
    private var exited = false
    private var thread: Thread?

    private let name: String

    /// The thread starts with the first work or tick, so a loop made for a member that then fails to open costs
    /// no thread.
    public init(name: String) {
        self.name = name
    }

    public func execute(_ work: @escaping @Sendable () -> Void) {
        condition.lock()
        if !stopped {
            queue.append(work)
            startIfNeededLocked()
        }
        condition.signal()
        condition.unlock()
    }

    public func schedule(every interval: Duration, _ body: @escaping @Sendable () -> Void) {
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        condition.lock()
        if !stopped {
            tick = (seconds, Date().addingTimeInterval(seconds), body)
            startIfNeededLocked()
        }
        condition.signal()
        condition.unlock()
    }

    public var inLoop: Bool {
        condition.lock()
        defer { condition.unlock() }
        return thread.map { Thread.current === $0 } ?? false
    }

    public func stop() {
        condition.lock()
        stopped = true
        queue.removeAll()
        // The tick usually captures its owner: dropping it lets the owner go.
        tick = nil
        condition.signal()
        while thread != nil && !exited { condition.wait() }
        condition.unlock()
    }

    private func startIfNeededLocked() {
        guard thread == nil else { return }
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    private func run() {
        // Set from inside, so that it reaches the kernel too (perf, top -H).
        Thread.current.name = name
        condition.lock()
        while !stopped {
            if queue.isEmpty {
                if let tick {
                    _ = condition.wait(until: tick.next)
                } else {
                    condition.wait()
                }
            }
            if stopped { break }
            let work = queue
            queue.removeAll(keepingCapacity: true)
            var due: (@Sendable () -> Void)? = nil
            if let t = tick, Date() >= t.next {
                var next = t.next.addingTimeInterval(t.interval)
                if next < Date() { next = Date().addingTimeInterval(t.interval) }
                tick = (t.interval, next, t.body)
                due = t.body
            }
            condition.unlock()
            for job in work { job() }
            due?()
            condition.lock()
        }
        exited = true
        condition.broadcast()
        condition.unlock()
    }
}
