import Foundation
import Testing

/// Runs a suite's tests on threads of their own instead of the cooperative pool.
///
/// The end-to-end tests wait for child processes (etcdctl, members, real etcd) synchronously. Run on the cooperative
/// pool, which is as wide as the machine has cores, two of them occupy the whole pool of a 2-core machine for as long
/// as they run, and every async test in the process (in-process servers and clients whose continuations need the
/// pool) starves: a client's idle timer then fires against a server that was never given the chance to answer. With
/// this trait a test body runs on one of a few dedicated threads (`BlockingSlots.shared`) (a task executor preference), so the
/// pool stays free, and at most that many such tests run at once, as before, so the machine is not overloaded.
///
/// The test still runs in its own task: task locals (the current test, so `#expect` is attributed to it) are kept.
public struct OwnThreadTrait: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let executor = await BlockingSlots.shared.acquire()
        do {
            try await withTaskExecutorPreference(executor) { try await function() }
        } catch {
            await BlockingSlots.shared.release(executor)
            throw error
        }
        await BlockingSlots.shared.release(executor)
    }
}

extension Trait where Self == OwnThreadTrait {
    /// The suite's tests block on child processes: run them off the cooperative pool (see `OwnThreadTrait`).
    public static var ownThread: Self { OwnThreadTrait() }
}

/// The dedicated threads blocking tests run on, handed out one test at a time.
actor BlockingSlots {
    static let shared = BlockingSlots(width: 3)

    private var free: [DedicatedThreadExecutor]
    private var waiting: [CheckedContinuation<DedicatedThreadExecutor, Never>] = []

    init(width: Int) {
        free = (0..<width).map { DedicatedThreadExecutor(name: "blocking-test-\($0)") }
    }

    func acquire() async -> DedicatedThreadExecutor {
        if let executor = free.popLast() { return executor }
        return await withCheckedContinuation { waiting.append($0) }
    }

    func release(_ executor: DedicatedThreadExecutor) {
        if waiting.isEmpty {
            free.append(executor)
        } else {
            waiting.removeFirst().resume(returning: executor)
        }
    }
}

/// A task executor with one thread of its own, alive for the whole test process (so no job can arrive after it
/// stopped).
final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var jobs: [UnownedJob] = []

    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
