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
        /// Callback delivery (`onReady`): told when responses wait and the consumer is not already draining.
        var readyHandler: (@Sendable () -> Void)?
        var readySignalled = false
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
        let (accepted, waiter, ready): (Bool, CheckedContinuation<Response?, Never>?, (@Sendable () -> Void)?) =
            state.withLock { s in
                if s.closed { return (true, nil, nil) }
                if let waiter = s.waiter {
                    s.waiter = nil
                    return (true, waiter, nil)
                }
                if !force && s.queue.count >= capacity { return (false, nil, nil) }
                s.queue.append(response)
                guard let handler = s.readyHandler, !s.readySignalled else { return (true, nil, nil) }
                s.readySignalled = true
                return (true, nil, handler)
            }
        waiter?.resume(returning: response)
        ready?()
        return accepted
    }

    /// Switches the stream to callback delivery, for a consumer that cannot suspend (an event loop): `handler`
    /// is called, outside any lock, when responses are queued and the consumer emptied the queue since the last
    /// call. The consumer then takes them with `take(limit:)`.
    public func onReady(_ handler: @escaping @Sendable () -> Void) {
        let signal = state.withLock { s -> Bool in
            s.readyHandler = handler
            s.readySignalled = !s.queue.isEmpty
            return s.readySignalled
        }
        if signal { handler() }
    }

    /// Up to `limit` queued responses, without waiting. Once it has emptied the queue, the next response queued
    /// calls the ready handler again; a consumer that stops early (its client is slow) must come back by itself.
    public func take(limit: Int) -> [Response] {
        state.withLock { s in
            let count = min(limit, s.queue.count)
            let batch = Array(s.queue.prefix(count))
            s.queue.removeFirst(count)
            if s.queue.isEmpty { s.readySignalled = false }
            return batch
        }
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

    /// Ends the stream; a pending `next()` returns nil.
    public func close() {
        let waiter = state.withLock { s -> CheckedContinuation<Response?, Never>? in
            s.closed = true
            s.queue.removeAll()
            s.readyHandler = nil
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
