import Testing

@testable import Node

/// The pacing of a defragment's steps on the apply loop, without a database: what runs when.
@Suite struct MaintenancePacerTests {
    static let ms: UInt64 = 1_000_000

    @Test func aRequestStartsARunAndASecondJoinsIt() {
        var pacer = MaintenancePacer(stepBudget: 4 * Self.ms, share: 0.3)
        #expect(!pacer.isRunning)
        let started = pacer.onRequest(now: 100)
        #expect(started && pacer.isRunning)
        // The caller runs the first step itself: housekeeping must not run another beside it.
        #expect(!pacer.isDue(now: 100))
        let second = pacer.onRequest(now: 200)
        #expect(!second, "a second Defragment joins the run under way")
        #expect(pacer.started == 100, "the run is the first one's")
        let finished = pacer.onFinished()
        #expect(finished == 100 && !pacer.isRunning && pacer.started == nil)
        let again = pacer.onFinished()
        #expect(again == nil)
        let next = pacer.onRequest(now: 300)
        #expect(next && pacer.started == 300, "after the end, a Defragment starts a new run")
    }

    @Test func withNothingElseToDoTheNextStepFollowsAtOnce() {
        var pacer = MaintenancePacer(stepBudget: 4 * Self.ms, share: 0.3)
        _ = pacer.onRequest(now: 0)
        let first = pacer.onStep(took: 4 * Self.ms, workLeft: true, othersWaiting: false, now: 4 * Self.ms)
        #expect(first == .stepNow)
        // Queued behind the step: housekeeping leaves it alone.
        #expect(!pacer.isDue(now: 5 * Self.ms))
        let last = pacer.onStep(took: 4 * Self.ms, workLeft: false, othersWaiting: false, now: 8 * Self.ms)
        #expect(last == .finish)
        #expect(pacer.steps == 2 && pacer.stepTime == 8 * Self.ms && pacer.longestStep == 4 * Self.ms)
        #expect(pacer.yields == 0, "nothing waited, so no step gave way")
    }

    @Test func withRequestsWaitingTheNextStepWaitsItsTurn() {
        var pacer = MaintenancePacer(stepBudget: 4 * Self.ms, share: 0.25)
        _ = pacer.onRequest(now: 0)
        let action = pacer.onStep(took: 4 * Self.ms, workLeft: true, othersWaiting: true, now: 4 * Self.ms)
        #expect(action == .stepLater)
        // A quarter of the time: a 4 ms step, then 12 ms for everything else.
        #expect(!pacer.isDue(now: 15 * Self.ms))
        #expect(pacer.isDue(now: 16 * Self.ms))
        #expect(pacer.yields == 1)
        _ = pacer.onFinished()
        _ = pacer.onRequest(now: 20 * Self.ms)
        #expect(pacer.yields == 0, "a new run counts its own")
    }

    /// Under constant load (work always waiting), housekeeping running whenever a step is due: the steps take the
    /// share of the time they were given, whatever each step took.
    @Test func underLoadTheStepsKeepToTheirShare() {
        var pacer = MaintenancePacer(stepBudget: 4 * Self.ms, share: 0.3)
        var now: UInt64 = 0
        _ = pacer.onRequest(now: now)
        var inSteps: UInt64 = 0
        var seed: UInt64 = 7
        for _ in 0..<1_000 {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let took = 1 * Self.ms + (seed >> 33) % (4 * Self.ms)  // 1 to 5 ms: a step may overrun its budget
            now += took
            inSteps += took
            let action = pacer.onStep(took: took, workLeft: true, othersWaiting: true, now: now)
            #expect(action == .stepLater)
            // The apply loop does other work in passes of 0.5 ms until the next step is due.
            while !pacer.isDue(now: now) { now += Self.ms / 2 }
        }
        let share = Double(inSteps) / Double(now)
        #expect(share > 0.27 && share <= 0.3, "steps took \(share) of the time")
    }
}
