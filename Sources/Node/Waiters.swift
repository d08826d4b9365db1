import Synchronization

/// Proposals waiting for their entry to be applied, keyed by request id, with a deadline each.
final class Waiters: Sendable {
    private struct Waiter {
        var continuation: CheckedContinuation<ApplyResult, Never>
        var deadline: Int64
    }

    private let waiting = Mutex<[UInt64: Waiter]>([:])

    func register(_ id: UInt64, deadline: Int64, _ continuation: CheckedContinuation<ApplyResult, Never>) {
        waiting.withLock { $0[id] = Waiter(continuation: continuation, deadline: deadline) }
    }

    func resume(_ id: UInt64, with result: ApplyResult) {
        waiting.withLock { $0.removeValue(forKey: id) }?.continuation.resume(returning: result)
    }

    /// Fails waiters whose deadline passed.
    func expire(now: Int64, with error: EtcdError) {
        let expired = waiting.withLock { w -> [Waiter] in
            let ids = w.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { w.removeValue(forKey: $0) }
        }
        for waiter in expired { waiter.continuation.resume(returning: .failure(error)) }
    }

    func failAll(with error: EtcdError) {
        let all = waiting.withLock { w -> [Waiter] in
            defer { w.removeAll() }
            return Array(w.values)
        }
        for waiter in all { waiter.continuation.resume(returning: .failure(error)) }
    }

    var count: Int { waiting.withLock { $0.count } }
}
