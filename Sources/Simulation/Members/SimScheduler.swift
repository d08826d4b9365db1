import Foundation
import Node

/// The one thread and the one clock of a simulation of real members: every loop of every member, every message
/// and every client runs as an event of this scheduler, in virtual time, in an order a seed decides.
///
/// Work takes no virtual time; time moves only by jumping to the next event, so a run never waits on the host and
/// never depends on its speed. Everything it drives must call it from the thread that made it (asserted): that is
/// what makes a seed replay a run exactly.
public final class SimScheduler: @unchecked Sendable {
    // @unchecked: confined to `owner`, checked on every entry point.
    public private(set) var now: SimTime = 0
    public var random: SimRandom
    private var events = EventQueue<() -> Void>()
    private let owner = pthread_self()
    /// The loop whose job is running (for `SerialLoop.inLoop`).
    fileprivate(set) var running: ObjectIdentifier?
    /// Events run so far (a bound for runs that would never end).
    public private(set) var steps = 0
    /// Virtual time the running job has spent blocked so far (a slow fsync): its loop starts nothing else until it
    /// has passed, and what the job sends leaves when the block ends. Work itself still takes no time.
    public fileprivate(set) var blocked: SimTime = 0

    /// The running job blocks for `time` (see `blocked`); outside a loop's job there is nothing to block.
    public func block(_ time: SimTime) {
        assertOwned()
        if running != nil { blocked += time }
    }

    /// The virtual time at which what the running job does now takes effect: now, plus what it was blocked.
    public var effectiveNow: SimTime { now + blocked }

    public init(seed: UInt64) {
        random = SimRandom(seed: seed)
    }

    @inline(__always)
    func assertOwned(_ function: StaticString = #function) {
        precondition(pthread_equal(owner, pthread_self()) != 0, "\(function): the simulation is driven from one thread")
    }

    /// Runs `event` at `time` (not before now).
    public func at(_ time: SimTime, _ event: @escaping () -> Void) {
        assertOwned()
        events.schedule(event, at: max(time, now))
    }

    public func after(_ delay: SimTime, _ event: @escaping () -> Void) {
        at(now + delay, event)
    }

    /// Runs events until `time`, or until `stop` says so after an event; false when the step bound was hit.
    @discardableResult
    public func run(until time: SimTime, maxSteps: Int = 50_000_000, stop: () -> Bool = { false }) -> Bool {
        assertOwned()
        while let (t, event) = events.pop() {
            if t > time {
                events.schedule(event, at: t)
                now = time
                return true
            }
            now = t
            steps += 1
            event()
            if stop() { return true }
            if steps >= maxSteps { return false }
        }
        now = max(now, time)
        return true
    }

    /// Drops every scheduled event (the end of a run: what they capture can then be freed).
    public func clear() {
        assertOwned()
        events = EventQueue()
    }

    /// Virtual time as a member reads it (nanoseconds).
    public var nanoseconds: Int64 { now * 1000 }
}

/// A member's loop on the scheduler: jobs run one at a time, in the order given, each as an event a random
/// moment (up to `jitter`) after it was queued, so the seed chooses how the loops of all members interleave.
public final class SimLoop: SerialLoop, @unchecked Sendable {
    // @unchecked: confined to the scheduler's thread.
    private let scheduler: SimScheduler
    private let jitter: SimTime
    private var queue: [@Sendable () -> Void] = []
    private var head = 0
    private var stopped = false
    /// Until when the loop is blocked by its last job (`SimScheduler.block`): later jobs wait for it.
    private var busyUntil: SimTime = 0
    /// Whether a tick is queued and has not run: a blocked loop owes one tick, not one per interval it missed, as
    /// `ThreadLoop` does.
    private var tickQueued = false
    public let name: String

    public init(_ name: String, on scheduler: SimScheduler, jitter: SimTime = 50) {
        self.name = name
        self.scheduler = scheduler
        self.jitter = jitter
    }

    public func execute(_ work: @escaping @Sendable () -> Void) {
        scheduler.assertOwned()
        guard !stopped else { return }
        queue.append(work)
        let delay = jitter > 0 ? scheduler.random.int(in: 0...jitter) : 0
        // The event runs whichever job is first: jobs keep their order however the events interleave.
        scheduler.after(delay) { [self] in runFirst() }
    }

    public func schedule(every interval: Duration, _ tick: @escaping @Sendable () -> Void) {
        let micros =
            SimTime(interval.components.seconds) * 1_000_000
            + SimTime(interval.components.attoseconds / 1_000_000_000_000)
        func arm() {
            scheduler.after(max(1, micros)) { [self] in
                guard !stopped else { return }
                if !tickQueued {
                    tickQueued = true
                    execute { [self] in
                        tickQueued = false
                        tick()
                    }
                }
                arm()
            }
        }
        arm()
    }

    public var inLoop: Bool { scheduler.running == ObjectIdentifier(self) }

    /// Drops queued work and ticks: what a crash or a stop does to a loop.
    public func stop() {
        stopped = true
        queue.removeAll()
        head = 0
    }

    private func runFirst() {
        guard !stopped, head < queue.count else { return }
        if busyUntil > scheduler.now {
            scheduler.at(busyUntil) { [self] in runFirst() }
            return
        }
        let job = queue[head]
        head += 1
        if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        let outer = (scheduler.running, scheduler.blocked)
        scheduler.running = ObjectIdentifier(self)
        scheduler.blocked = 0
        job()
        if scheduler.blocked > 0 { busyUntil = scheduler.now + scheduler.blocked }
        (scheduler.running, scheduler.blocked) = outer
    }
}
