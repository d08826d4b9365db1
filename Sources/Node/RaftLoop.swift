import Foundation

/// Where a member's Raft loop runs: one thread at a time, in order, with a periodic tick.
///
/// The node code does not care which thread that is. By default it is a thread of its own (`ThreadRaftLoop`);
/// the server runs it on the event loop that also owns the peer connections, so that a Raft message goes from
/// the socket into Raft, and Raft's answer back onto the socket, without changing threads: on a follower, an
/// append and its acknowledgement cost no thread wake-up at all.
public protocol RaftLoop: Sendable {
    /// Runs `work` on the loop after what is already queued (from any thread, the loop's own included).
    func execute(_ work: @escaping @Sendable () -> Void)
    /// Calls `tick` on the loop every `interval` until `stop()`.
    func schedule(every interval: Duration, _ tick: @escaping @Sendable () -> Void)
    /// Whether the caller runs on the loop.
    var inLoop: Bool { get }
    /// Stops ticking; once it returns, no work queued before runs any more. Not to be called on the loop.
    func stop()
}

/// A Raft loop on a dedicated thread: a queue of work and a tick, behind one condition variable.
public final class ThreadRaftLoop: RaftLoop, @unchecked Sendable {
    // @unchecked: all state is under `condition`.
    private let condition = NSCondition()
    private var queue: [@Sendable () -> Void] = []
    private var tick: (interval: TimeInterval, next: Date, body: @Sendable () -> Void)?
    private var stopped = false
    private var exited = false
    private var thread: Thread?

    public init(name: String = "quorum-raft") {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    public func execute(_ work: @escaping @Sendable () -> Void) {
        condition.lock()
        if !stopped { queue.append(work) }
        condition.signal()
        condition.unlock()
    }

    public func schedule(every interval: Duration, _ body: @escaping @Sendable () -> Void) {
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        condition.lock()
        tick = (seconds, Date().addingTimeInterval(seconds), body)
        condition.signal()
        condition.unlock()
    }

    public var inLoop: Bool { Thread.current === thread }

    public func stop() {
        condition.lock()
        stopped = true
        queue.removeAll()
        condition.signal()
        while !exited { condition.wait() }
        condition.unlock()
    }

    private func run() {
        Thread.current.name = thread?.name
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
