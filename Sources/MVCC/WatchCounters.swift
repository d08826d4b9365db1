import Synchronization

/// What etcd's watch metrics count, kept where the watch streams do the work: open streams
/// (`etcd_debugging_mvcc_watch_stream_total`), events queued on them and not yet taken by their writer
/// (`etcd_debugging_mvcc_pending_events_total`) and events taken to be sent (`etcd_debugging_mvcc_events_total`).
/// A relaxed atomic add per queued or taken batch.
public final class WatchCounters: Sendable {
    public let openStreams = Atomic<Int>(0)
    public let pendingEvents = Atomic<Int>(0)
    public let sentEvents = Atomic<Int>(0)

    public init() {}

    func queued(_ events: Int) {
        if events > 0 { pendingEvents.add(events, ordering: .relaxed) }
    }

    func taken(_ events: Int) {
        guard events > 0 else { return }
        pendingEvents.subtract(events, ordering: .relaxed)
        sentEvents.add(events, ordering: .relaxed)
    }

    /// Handed straight to a waiting consumer, never queued.
    func handedOver(_ events: Int) {
        if events > 0 { sentEvents.add(events, ordering: .relaxed) }
    }

    /// Queued on a stream that closed before its writer took them.
    func dropped(_ events: Int) {
        if events > 0 { pendingEvents.subtract(events, ordering: .relaxed) }
    }
}
