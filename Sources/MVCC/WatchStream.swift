import Collections
import EtcdProto
import Synchronization

/// The outbound queue of one client Watch stream: the hub offers responses, the RPC writer drains them.
///
/// Bounded: when a client reads slower than the store changes, `offer` refuses and the hub moves the
/// stream's watchers to catch-up from history, so a slow watcher never blocks writes or holds unbounded memory.
public final class WatchStream: Sendable {
    public typealias Response = Etcdserverpb_WatchResponse

    struct State {
        var queue: Deque<Response> = []
        var waiter: CheckedContinuation<Response?, Never>?
        var closed = false
        var nextWatchID: Int64 = 0
        var usedIDs: Set<Int64> = []
        /// A progress request waits until every watcher of the stream has caught up.
        var progressRequested = false
    }

    public let capacity: Int
    let state = Mutex(State())

    public init(capacity: Int = 256) {
        self.capacity = capacity
    }

    /// Enqueues an event response unless the queue is full.
    func offer(_ response: Response) -> Bool {
        enqueue(response, force: false)
    }

    /// Enqueues a control response (created, canceled, progress): always accepted, since there is one per request.
    public func send(_ response: Response) {
        _ = enqueue(response, force: true)
    }

    private func enqueue(_ response: Response, force: Bool) -> Bool {
        let (accepted, waiter): (Bool, CheckedContinuation<Response?, Never>?) = state.withLock { s in
            if s.closed { return (true, nil) }
            if let waiter = s.waiter {
                s.waiter = nil
                return (true, waiter)
            }
            if !force && s.queue.count >= capacity { return (false, nil) }
            s.queue.append(response)
            return (true, nil)
        }
        waiter?.resume(returning: response)
        return accepted
    }

    /// The next response to write, or nil once the stream is closed.
    public func next() async -> Response? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Response?, Never>) in
                let ready: Response?? = state.withLock { s in
                    if let first = s.queue.popFirst() { return .some(first) }
                    if s.closed { return .some(nil) }
                    s.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            close()
        }
    }

    /// Every response queued so far (at most `limit`), or the next one to arrive; nil once the stream is closed.
    ///
    /// A write fanned out to many watchers of one stream queues one response per watcher at once; taking them
    /// together lets the writer hand them to gRPC in one write and one flush, and a non-empty queue is served
    /// without suspending the writer task at all.
    public func nextBatch(limit: Int = 64) async -> [Response]? {
        enum Ready {
            case batch([Response])
            case closed
            case empty
        }
        let ready: Ready = state.withLock { s in
            if !s.queue.isEmpty {
                let count = min(limit, s.queue.count)
                let batch = Array(s.queue.prefix(count))
                s.queue.removeFirst(count)
                return .batch(batch)
            }
            return s.closed ? .closed : .empty
        }
        switch ready {
        case .batch(let batch): return batch
        case .closed: return nil
        case .empty: return await next().map { [$0] }
        }
    }

    /// Ends the stream; a pending `next()` returns nil.
    public func close() {
        let waiter = state.withLock { s -> CheckedContinuation<Response?, Never>? in
            s.closed = true
            s.queue.removeAll()
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }

    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Allocates a watch id: the client's choice if free, else the next unused one from 0 (etcd's numbering).
    func allocateID(requested: Int64) -> Int64? {
        state.withLock { s in
            if requested != 0 {
                if s.usedIDs.contains(requested) { return nil }
                s.usedIDs.insert(requested)
                return requested
            }
            while s.usedIDs.contains(s.nextWatchID) { s.nextWatchID += 1 }
            let id = s.nextWatchID
            s.usedIDs.insert(id)
            s.nextWatchID += 1
            return id
        }
    }

    func releaseID(_ id: Int64) {
        _ = state.withLock { $0.usedIDs.remove(id) }
    }
}
