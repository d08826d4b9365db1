import Synchronization

/// Work gathered from any thread for one consumer that takes it all in a single pass.
///
/// The first `add` since the consumer last took tells its caller to schedule a pass; later ones only append. So a
/// burst costs one wake-up of the consumer, however many threads add to it: the Raft loop's inbox (a burst of
/// proposals shares one Ready and one fsync) and an event loop's connection jobs (an apply that answers calls on
/// many connections wakes the loop once) both work this way.
///
/// Inlinable so that callers in other modules get it specialized for their `Work`: unspecialized, every call looked
/// up the metadata of the state's tuple type at run time.
public final class ScheduledBatch<Work: Sendable>: Sendable {
    @usableFromInline let state: Mutex<(work: Work, scheduled: Bool)>
    @usableFromInline let empty: Work

    public init(_ empty: Work) {
        self.empty = empty
        state = Mutex((empty, false))
    }

    /// Adds to the pending work; true when no pass is scheduled yet, so the caller must schedule one.
    @inlinable
    public func add(_ body: (inout Work) -> Void) -> Bool {
        state.withLock { s in
            body(&s.work)
            if s.scheduled { return false }
            s.scheduled = true
            return true
        }
    }

    /// Everything pending; the next `add` schedules a new pass.
    @inlinable
    public func take() -> Work {
        state.withLock { s in
            s.scheduled = false
            var taken = empty
            swap(&taken, &s.work)
            return taken
        }
    }
}
