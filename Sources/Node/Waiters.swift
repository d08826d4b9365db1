import Synchronization

/// Proposals waiting for their entry to be applied, keyed by request id, with a deadline each.
///
/// A waiter is a completion closure rather than a continuation, so that a caller on an event loop can be
/// answered without a task of its own; `MemberNode.propose(_:) async` wraps it for async callers.
final class Waiters: Sendable {
    typealias Completion = @Sendable (ApplyResult) -> Void

    private struct Waiter {
        var completion: Completion
        var deadline: Int64
    }

    private let waiting = Mutex<[UInt64: Waiter]>([:])

    func register(_ id: UInt64, deadline: Int64, _ completion: @escaping Completion) {
        waiting.withLock { $0[id] = Waiter(completion: completion, deadline: deadline) }
    }

    func resume(_ id: UInt64, with result: ApplyResult) {
        waiting.withLock { $0.removeValue(forKey: id) }?.completion(result)
    }

    /// Resumes many waiters with one lock round (an apply batch completes them together).
    func resume(_ results: [(UInt64, ApplyResult)]) {
        guard !results.isEmpty else { return }
        let completions = waiting.withLock { w in results.map { w.removeValue(forKey: $0.0)?.completion } }
        for (completion, result) in zip(completions, results) { completion?(result.1) }
    }

    /// Fails waiters whose deadline passed.
    func expire(now: Int64, with error: EtcdError) {
        let expired = waiting.withLock { w -> [Waiter] in
            let ids = w.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { w.removeValue(forKey: $0) }
        }
        for waiter in expired { waiter.completion(.failure(error)) }
    }

    func failAll(with error: EtcdError) {
        let all = waiting.withLock { w -> [Waiter] in
            defer { w.removeAll() }
            return Array(w.values)
        }
        for waiter in all { waiter.completion(.failure(error)) }
    }

    var count: Int { waiting.withLock { $0.count } }
}
