/// Bounded window of append messages sent to one follower and not yet acknowledged.
///
/// A ring buffer of (last index, bytes) pairs: appends are acknowledged in index order, so freeing is always
/// a prefix. The window bounds both the number of messages and the bytes in flight, which is what keeps a
/// slow follower from making the leader buffer unbounded data in the transport.
struct Inflights: Sendable {
    private var indexes: [UInt64] = []
    private var sizes: [Int] = []
    private var start = 0
    private(set) var count = 0
    private(set) var bytes = 0
    let capacity: Int
    let maxBytes: Int

    init(capacity: Int, maxBytes: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    var isFull: Bool { count == capacity || (maxBytes > 0 && bytes >= maxBytes) }

    mutating func add(index: UInt64, bytes size: Int) {
        precondition(!isFull, "cannot add to a full inflights window")
        if count > 0 {
            let last = indexes[(start + count - 1) % indexes.count]
            precondition(index > last, "inflight indexes must increase")
        }
        if count == indexes.count {
            // Grow lazily (most followers never need the whole window): straighten the ring, then append.
            if start != 0 {
                indexes = Array(indexes[start...] + indexes[..<start])
                sizes = Array(sizes[start...] + sizes[..<start])
                start = 0
            }
            indexes.append(index)
            sizes.append(size)
        } else {
            let slot = (start + count) % indexes.count
            indexes[slot] = index
            sizes[slot] = size
        }
        count += 1
        bytes += size
    }

    /// Frees every in-flight message whose last index is `<= index` (they are acknowledged).
    mutating func free(through index: UInt64) {
        while count > 0 && indexes[start] <= index {
            bytes -= sizes[start]
            start = (start + 1) % indexes.count
            count -= 1
        }
        if count == 0 { start = 0 }
    }

    mutating func freeFirst() {
        guard count > 0 else { return }
        free(through: indexes[start])
    }

    mutating func reset() {
        start = 0
        count = 0
        bytes = 0
    }
}
