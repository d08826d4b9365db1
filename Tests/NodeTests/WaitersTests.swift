import Synchronization
import Testing

@testable import Node

/// Proposals waiting for their answers: deadlines, and the answers that may outlast them.
@Suite struct WaitersTests {
    @Test func aWaiterPastItsDeadlineTimesOutAndIsAnsweredOnce() {
        let waiters = Waiters()
        let heard = Mutex<[String]>([])
        waiters.register(1, deadline: 10) { result in heard.withLock { $0.append("1: \(result)") } }
        waiters.expire(now: 9, with: .timeout)
        #expect(heard.withLock { $0.isEmpty })
        waiters.expire(now: 10, with: .timeout)
        waiters.resume(1, with: .success(.none))
        #expect(heard.withLock { $0.count } == 1)
        #expect(heard.withLock { $0.first?.contains("timed out") } == true)
    }

    /// A physical compaction's entry is applied within the request timeout, but its answer waits for the rows to be
    /// removed: its deadline is lifted, and it is answered when the work is done, however late.
    @Test func aWaiterWhoseDeadlineIsLiftedWaitsForItsAnswer() {
        let waiters = Waiters()
        let heard = Mutex<[String]>([])
        waiters.register(7, deadline: 10) { result in heard.withLock { $0.append("\(result)") } }
        waiters.register(8, deadline: 10) { result in heard.withLock { $0.append("\(result)") } }
        waiters.liftDeadline(7)
        waiters.expire(now: 1_000_000, with: .timeout)
        #expect(heard.withLock { $0.count } == 1, "only the other waiter timed out")
        waiters.resume(7, with: .success(.none))
        #expect(heard.withLock { $0.count } == 2)
        #expect(heard.withLock { $0.last?.contains("success") } == true)
    }
}
