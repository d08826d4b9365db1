/// Simulated time, in microseconds since the start of the run.
public typealias SimTime = Int64

extension SimTime {
    public static func ms(_ v: Int64) -> SimTime { v * 1000 }
}

/// A source of the current simulated time. The simulator owns the only clock and advances it by jumping to
/// the next scheduled event, so a run never waits and never depends on the host's speed.
public protocol SimClock {
    var now: SimTime { get }
}

/// The clock of the discrete-event scheduler.
public struct EventClock: SimClock, Sendable {
    public internal(set) var now: SimTime = 0
    public init() {}
}

/// A min-heap of scheduled events ordered by (time, insertion sequence): ties are broken by scheduling order,
/// which keeps the run deterministic.
struct EventQueue<Event> {
    private var heap: [(time: SimTime, seq: UInt64, event: Event)] = []
    private var seq: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    mutating func schedule(_ event: Event, at time: SimTime) {
        seq += 1
        heap.append((time, seq, event))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if less(i, parent) {
                heap.swapAt(i, parent)
                i = parent
            } else {
                break
            }
        }
    }

    mutating func pop() -> (time: SimTime, event: Event)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1
            let r = l + 1
            var m = i
            if l < heap.count && less(l, m) { m = l }
            if r < heap.count && less(r, m) { m = r }
            if m == i { break }
            heap.swapAt(i, m)
            i = m
        }
        return (top.time, top.event)
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        heap[a].time < heap[b].time || (heap[a].time == heap[b].time && heap[a].seq < heap[b].seq)
    }
}
