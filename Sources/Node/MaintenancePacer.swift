/// When the steps of a maintenance run (a defragment, a physical compaction) may hold the apply loop: the decisions
/// only, as a value the apply loop drives with the clock and what each step did (`MemberNode+Defragment.swift`,
/// `MemberNode+Apply.swift` carry them out).
///
/// Why pacing: maintenance is apply-loop time that cannot be avoided, only spread. Returning free pages costs SQLite
/// about 20 µs a page, and up to a millisecond for a live page moved from the end of the file (it searches the free
/// list for a slot): a gigabyte of free space is 15-20 s of apply-loop time however it is cut up. Run back to back,
/// defragment steps took 96 % of the apply loop and requests ran at a tenth of their rate; compaction steps of a
/// thousand 64 KiB rows held it 350-540 ms each. etcd holds every request for its whole defragment (etcd issue 9222)
/// and for each compaction batch. Here a step holds the apply loop for about `stepBudget` (its caller stops it on
/// time), so a request waits about that long for it, and while other work is queued the steps take at most `share`
/// of the apply loop's time; with nothing else to do, the next step runs at once.
struct MaintenancePacer: Equatable {
    enum State: Equatable {
        case idle
        /// A run is under way, started at `started` (monotonic nanoseconds); its next step is `next`.
        case running(started: UInt64, next: NextStep)
    }

    enum NextStep: Equatable {
        /// Already queued on the apply loop (the first step, or one that follows at once), or to be queued by other work
        /// (a defragment's first step, once its pages are read ahead): housekeeping leaves it.
        case queued
        /// For housekeeping to run once the clock reads at least this.
        case at(UInt64)
    }

    /// What the apply loop does after a step.
    enum Action: Equatable {
        /// Queue the next step right behind the step just done: nothing else was waiting. Housekeeping leaves it.
        case stepNow
        /// Leave the next step to the apply loop's housekeeping, which runs it once `isDue` (other work first).
        case stepLater
        /// No work is left: finish (a defragment empties the journal) and answer every caller.
        case finish
    }

    /// How long one step may hold the apply loop (nanoseconds): what a request may wait because of a step. The pacer
    /// does not time steps; the apply loop passes this to each step, which stops itself on time.
    let stepBudget: UInt64
    /// The share of the apply loop's time steps may take while other work is queued (0 < share ≤ 1).
    let share: Double
    private(set) var state: State = .idle
    /// The run's statistics, for its log line: steps, their total time, the longest, and how many times a step gave
    /// way to work that was waiting (requests served during the run, not after it).
    private(set) var steps = 0
    private(set) var yields = 0
    private(set) var stepTime: UInt64 = 0
    private(set) var longestStep: UInt64 = 0

    init(stepBudget: UInt64, share: Double) {
        precondition(share > 0 && share <= 1, "a share of the apply loop's time in (0, 1]")
        self.stepBudget = stepBudget
        self.share = share
    }

    var isRunning: Bool { state != .idle }

    /// When the run under way started; nil when none is.
    var started: UInt64? {
        guard case .running(let started, _) = state else { return nil }
        return started
    }

    /// Work arrived (a Defragment, a compaction applied). Returns true when it starts a run, whose first step the caller
    /// then runs; false when it joins the one under way. A run ends only once no work is left (no free page, no
    /// compacted row), so it covers what the new caller asked for too.
    mutating func onRequest(now: UInt64) -> Bool {
        guard case .idle = state else { return false }
        state = .running(started: now, next: .queued)
        steps = 0
        stepTime = 0
        longestStep = 0
        yields = 0
        return true
    }

    /// Whether housekeeping should run a step now.
    func isDue(now: UInt64) -> Bool {
        guard case .running(_, .at(let next)) = state else { return false }
        return now >= next
    }

    /// A step ended at `now` after `took` nanoseconds, with work left or not; `othersWaiting` is whether work arrived
    /// on the apply queue meanwhile. The next step waits long enough for the steps to stay within `share`.
    mutating func onStep(took: UInt64, workLeft: Bool, othersWaiting: Bool, now: UInt64) -> Action {
        guard case .running(let started, _) = state else { return .finish }
        steps += 1
        stepTime += took
        longestStep = max(longestStep, took)
        if !workLeft { return .finish }
        if !othersWaiting {
            state = .running(started: started, next: .queued)
            return .stepNow
        }
        yields += 1
        let rest = UInt64(Double(took) * (1 - share) / share)
        state = .running(started: started, next: .at(now + rest))
        return .stepLater
    }

    /// The run is over (finished or failed); returns when it started.
    mutating func onFinished() -> UInt64? {
        guard case .running(let started, _) = state else { return nil }
        state = .idle
        return started
    }
}
