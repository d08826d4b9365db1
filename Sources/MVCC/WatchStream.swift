import Collections
import EtcdProto
import Synchronization

/// The outbound queue of one client Watch stream: the hub offers responses, the RPC writer drains them.
///
/// Bounded: when a client reads slower than the store changes, `offer` refuses and the hub moves the
/// stream's watchers to catch-up from history, so a slow watcher never blocks writes or holds unbounded memory.
public final class WatchStream: Sendable {
    public typealias Response = Etcdserverpb_WatchResponse

    /// A queued response: a message, or (for a stream that writes wire form, `wireFormat`) events that the hub
    /// serialized once for every watcher it fanned them out to.
    public enum Outgoing: Sendable {
        case message(Response)
        case encoded(EncodedWatchResponse)

        /// The response as a message (an encoded one is decoded: only consumers that asked for messages see this,
        /// and they get none encoded).
        var message: Response? {
            switch self {
            case .message(let response): return response
            case .encoded(let encoded): return try? Response(serializedBytes: encoded.bytes)
            }
        }

        /// The events it carries (none for a control response).
        var eventCount: Int {
            switch self {
            case .message(let response): return response.events.count
            case .encoded(let encoded): return encoded.events.count
            }
        }
    }

    struct State {
        var queue: Deque<Outgoing> = []
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
    /// The consumer writes responses to the wire (a client's Watch call), so the hub may queue events already
    /// serialized (`Outgoing.encoded`) instead of a message per watcher: with a hundred watchers of a key, the
    /// event is encoded once rather than a hundred times.
    public let wireFormat: Bool
    let state = Mutex(State())
    /// The member's watch metrics (`WatchHub.counters`); nil for a stream nobody counts.
    let counters: WatchCounters?

    public init(capacity: Int = 256, wireFormat: Bool = true, counters: WatchCounters? = nil) {
        self.capacity = capacity
        self.wireFormat = wireFormat
        self.counters = counters
        counters?.openStreams.add(1, ordering: .relaxed)
    }

    deinit {
        // A stream dropped without `close()` is no longer open either.
        if let counters, !state.withLock({ $0.closed }) {
            counters.openStreams.subtract(1, ordering: .relaxed)
            counters.dropped(state.withLock { s in s.queue.reduce(0) { $0 + $1.eventCount } })
        }
    }

    /// Enqueues an event response unless the queue is full.
    func offer(_ response: Outgoing) -> Bool {
        enqueue(response, force: false)
    }

    /// Enqueues the fragments of one response together, or none of them if the queue is full. They may take the
    /// queue past its capacity by their number (bounded by the events of one response), so that a response of more
    /// fragments than the capacity can still go.
    func offer(_ responses: [Outgoing]) -> Bool {
        enqueue(responses, force: false)
    }

    /// Enqueues a control response (created, canceled, progress): always accepted, since there is one per request.
    public func send(_ response: Response) {
        _ = enqueue(.message(response), force: true)
    }

    private func enqueue(_ item: Outgoing, force: Bool) -> Bool {
        enqueue(CollectionOfOne(item), force: force)
    }

    private func enqueue(_ items: some Collection<Outgoing>, force: Bool) -> Bool {
        typealias Waiter = CheckedContinuation<Response?, Never>
        let (accepted, waiter, ready, queued): (Bool, (Waiter, Response)?, (@Sendable () -> Void)?, Int) =
            state.withLock { s in
                if s.closed { return (true, nil, nil, 0) }
                var rest = items[...]
                var handoff: (Waiter, Response)?
                // A waiting consumer means an empty queue: it takes the first item directly.
                if let waiter = s.waiter, let response = rest.first?.message {
                    s.waiter = nil
                    handoff = (waiter, response)
                    rest = rest.dropFirst()
                } else if !force && s.queue.count >= capacity {
                    return (false, nil, nil, 0)
                }
                s.queue.append(contentsOf: rest)
                let queued = counters == nil ? 0 : rest.reduce(0) { $0 + $1.eventCount }
                guard !rest.isEmpty, let handler = s.readyHandler, !s.readySignalled else {
                    return (true, handoff, nil, queued)
                }
                s.readySignalled = true
                return (true, handoff, handler, queued)
            }
        if let counters {
            counters.queued(queued)
            if let (_, response) = waiter { counters.handedOver(response.events.count) }
        }
        if let (waiter, response) = waiter { waiter.resume(returning: response) }
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
    public func take(limit: Int) -> [Outgoing] {
        let batch = state.withLock { s in
            let count = min(limit, s.queue.count)
            let batch = Array(s.queue.prefix(count))
            s.queue.removeFirst(count)
            if s.queue.isEmpty { s.readySignalled = false }
            return batch
        }
        if let counters, !batch.isEmpty { counters.taken(batch.reduce(0) { $0 + $1.eventCount }) }
        return batch
    }

    /// The next response to write, or nil once the stream is closed.
    public func next() async -> Response? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Response?, Never>) in
                let (ready, taken): (Response??, Int) = state.withLock { s in
                    var taken = 0
                    while let first = s.queue.popFirst() {
                        taken += first.eventCount
                        if let response = first.message { return (.some(response), taken) }
                    }
                    if s.closed { return (.some(nil), taken) }
                    s.waiter = continuation
                    return (nil, taken)
                }
                counters?.taken(taken)
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            close()
        }
    }

    /// Ends the stream; a pending `next()` returns nil.
    public func close() {
        let (waiter, wasOpen, dropped) = state.withLock {
            s -> (CheckedContinuation<Response?, Never>?, Bool, Int) in
            let wasOpen = !s.closed
            let dropped = counters == nil ? 0 : s.queue.reduce(0) { $0 + $1.eventCount }
            s.closed = true
            s.queue.removeAll()
            s.readyHandler = nil
            defer { s.waiter = nil }
            return (s.waiter, wasOpen, dropped)
        }
        if let counters, wasOpen {
            counters.openStreams.subtract(1, ordering: .relaxed)
            counters.dropped(dropped)
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
