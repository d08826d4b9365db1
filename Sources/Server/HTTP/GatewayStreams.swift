import Synchronization

/// The JSON gateway's share of `--max-concurrent-streams`. etcd's gateway is a gRPC client of its own member over
/// one connection, so every gateway call is a stream on that connection (a watch for as long as it stays open), and
/// once the member's limit of streams is open, further calls wait until one ends (etcd's
/// `TestV3Curl_MaxStreams_*` tests assert both sides of this). Waiters are served in order of arrival.
final class GatewayStreams: Sendable {
    let limit: Int

    private struct State {
        var open = 0
        var waiting: [(id: UInt64, continuation: CheckedContinuation<Bool, Never>)] = []
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
    }

    /// A budget for `--max-concurrent-streams`, or nil when it is (etcd's default) too large to ever bind.
    static func forLimit(_ limit: Int) -> GatewayStreams? {
        limit >= Int(Int32.max) ? nil : GatewayStreams(limit: limit)
    }

    /// Takes a stream, waiting for one if all are open; false if the task was cancelled while waiting.
    func acquire() async -> Bool {
        let id: UInt64? = state.withLock { s in
            if s.open < limit && s.waiting.isEmpty {
                s.open += 1
                return nil
            }
            s.nextID += 1
            return s.nextID
        }
        guard let id else { return true }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                // A stream may have been released since the first look: take it rather than wait for another.
                let now: Bool? = state.withLock { s in
                    if Task.isCancelled { return false }
                    if s.open < limit && s.waiting.isEmpty {
                        s.open += 1
                        return true
                    }
                    s.waiting.append((id, continuation))
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
                guard let index = s.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiting.remove(at: index).continuation
            }
            waiter?.resume(returning: false)
        }
    }

    /// Gives a stream back: the longest waiter gets it.
    func release() {
        let next = state.withLock { s -> CheckedContinuation<Bool, Never>? in
            if !s.waiting.isEmpty { return s.waiting.removeFirst().continuation }
            s.open -= 1
            return nil
        }
        next?.resume(returning: true)
    }

    var openCount: Int { state.withLock { $0.open } }
}
