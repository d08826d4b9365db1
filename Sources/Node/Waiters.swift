import Synchronization

/// Proposals waiting for their entry to be applied, keyed by request id, with a deadline each.
///
/// A waiter is a completion closure rather than a continuation, so that a caller on an event loop can be
/// answered without a task of its own; `MemberNode.propose(_:) async` wraps it for async callers.
///
/// Bounded: `register` refuses a waiter past a count or a byte limit (the encoded proposals the waiters stand for),
/// so that a flood of writes cannot queue without end in front of Raft.
final class Waiters: Sendable {
    typealias Completion = @Sendable (ApplyResult) -> Void

    private struct Waiter {
        var completion: Completion
        var deadline: Int64
        var bytes: Int
        /// What the waiter hears when its deadline passes (nil: the error `expire` is given).
        var expiry: EtcdError?
    }

    private struct State {
        var waiting: [UInt64: Waiter] = [:]
        var bytes = 0
    }

    private let state = Mutex(State())

    /// Registers a waiter; false (and nothing registered) when `limits` are given and one more waiter, or `bytes`
    /// more, would pass them.
    @discardableResult
    func register(
        _ id: UInt64, deadline: Int64, bytes: Int = 0, limits: (count: Int, bytes: Int)? = nil,
        expiry: EtcdError? = nil, _ completion: @escaping Completion
    ) -> Bool {
        state.withLock { s in
            if let limits, s.waiting.count >= limits.count || s.bytes + bytes > limits.bytes { return false }
            s.waiting[id] = Waiter(completion: completion, deadline: deadline, bytes: bytes, expiry: expiry)
            s.bytes += bytes
            return true
        }
    }

    private static func remove(_ id: UInt64, from s: inout State) -> Waiter? {
        guard let waiter = s.waiting.removeValue(forKey: id) else { return nil }
        s.bytes -= waiter.bytes
        return waiter
    }

    func resume(_ id: UInt64, with result: ApplyResult) {
        state.withLock { Self.remove(id, from: &$0) }?.completion(result)
    }

    /// Resumes many waiters with one lock round (an apply batch completes them together).
    func resume(_ results: [(UInt64, ApplyResult)]) {
        guard !results.isEmpty else { return }
        let completions = state.withLock { s in results.map { Self.remove($0.0, from: &s)?.completion } }
        for (completion, result) in zip(completions, results) { completion?(result.1) }
    }

    /// Lifts a waiter's deadline: its entry is applied, and its answer waits for work the request timeout does not
    /// bound (a physical compaction answers once the rows are gone, as etcd's waits for its compaction to finish;
    /// only the caller's own deadline or cancellation ends the wait sooner).
    func liftDeadline(_ id: UInt64) {
        state.withLock { s in s.waiting[id]?.deadline = .max }
    }

    /// Fails waiters whose deadline passed (with their own expiry error, if they have one).
    func expire(now: Int64, with error: EtcdError) {
        let expired = state.withLock { s -> [Waiter] in
            // In id order (the order they were proposed), not the dictionary's.
            let ids = s.waiting.filter { $0.value.deadline <= now }.map(\.key).sorted()
            return ids.compactMap { Self.remove($0, from: &s) }
        }
        for waiter in expired { waiter.completion(.failure(waiter.expiry ?? error)) }
    }

    func failAll(with error: EtcdError) {
        let all = state.withLock { s -> [Waiter] in
            defer {
                s.waiting.removeAll()
                s.bytes = 0
            }
            return s.waiting.sorted { $0.key < $1.key }.map(\.value)
        }
        for waiter in all { waiter.completion(.failure(error)) }
    }

    var count: Int { state.withLock { $0.waiting.count } }
    var bytes: Int { state.withLock { $0.bytes } }
}
