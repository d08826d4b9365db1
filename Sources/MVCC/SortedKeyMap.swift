import Foundation

/// An ordered map from byte-string keys to values, in etcd's key order (bytewise lexicographic).
///
/// Two levels: a sorted array of leaves, each holding up to `leafCapacity` sorted keys. A lookup is two binary
/// searches; an insert moves at most one leaf's worth of elements, plus, when a leaf splits, the leaf directory
/// (one pointer per `leafCapacity / 2` keys or more). That keeps a million keys to a directory of a few
/// thousand pointers, with none of a balanced tree's per-node bookkeeping, and a range scan walks contiguous
/// arrays. Mutation needs exclusive access (the owner's lock); leaves are classes so nothing is copied on write,
/// which is also why it is `@unchecked Sendable`: the store only touches it under its lock.
///
/// A leaf packs its keys' bytes into one buffer (`Leaf.bytes`). A key held as a `Data` of more than 14 bytes (every
/// Kubernetes key) is an object of its own plus a second allocation for the bytes, about 110 bytes besides the key
/// itself; packed, a key costs its bytes and 8 more. With millions of keys that is most of the index's memory.
struct SortedKeyMap<Value>: @unchecked Sendable {
    /// Where one key's bytes are in its leaf's buffer.
    struct Span {
        var offset: UInt32
        var length: UInt32
    }

    final class Leaf {
        /// The keys' bytes, back to back in the order they were inserted, with the bytes of removed keys among them
        /// (`garbage`) until the leaf is repacked.
        private(set) var bytes: [UInt8] = []
        /// The keys, in key order.
        private(set) var spans: [Span] = []
        var values: [Value] = []
        private(set) var garbage = 0

        var count: Int { spans.count }

        /// The bytes of the key in `slot`, for the duration of `body`.
        @inline(__always)
        func withKey<R>(_ slot: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
            let span = spans[slot]
            return bytes.withUnsafeBytes { all in
                body(UnsafeRawBufferPointer(rebasing: all[Int(span.offset)..<Int(span.offset + span.length)]))
            }
        }

        /// The key in `slot`, copied out.
        func key(_ slot: Int) -> Data { withKey(slot) { Data($0) } }

        /// The first slot whose key is not below `probe`.
        func lowerBound(_ probe: UnsafeRawBufferPointer) -> Int {
            bytes.withUnsafeBytes { all in
                var low = 0
                var high = spans.count
                while low < high {
                    let mid = (low + high) / 2
                    let span = spans[mid]
                    let key = UnsafeRawBufferPointer(rebasing: all[Int(span.offset)..<Int(span.offset + span.length)])
                    if KeyRange.compare(key, probe) < 0 { low = mid + 1 } else { high = mid }
                }
                return low
            }
        }

        func insert(_ key: UnsafeRawBufferPointer, _ value: Value, at slot: Int) {
            spans.insert(Span(offset: UInt32(bytes.count), length: UInt32(key.count)), at: slot)
            bytes.append(contentsOf: key)
            values.insert(value, at: slot)
        }

        func remove(at slot: Int) {
            garbage += Int(spans[slot].length)
            spans.remove(at: slot)
            values.remove(at: slot)
            repackIfWasteful()
        }

        /// Keeps the slots for which `keep` returns true (their values possibly changed by it).
        func filter(_ keep: (inout Value) -> Bool) {
            var kept = 0
            for i in 0..<spans.count {
                var value = values[i]
                guard keep(&value) else {
                    garbage += Int(spans[i].length)
                    continue
                }
                spans[kept] = spans[i]
                values[kept] = value
                kept += 1
            }
            spans.removeSubrange(kept...)
            values.removeSubrange(kept...)
            repackIfWasteful()
        }

        /// Moves the upper half of the keys into a new leaf.
        func splitOff() -> Leaf {
            let half = spans.count / 2
            let right = Leaf()
            right.values = Array(values[half...])
            right.spans.reserveCapacity(spans.count - half)
            for slot in half..<spans.count {
                withKey(slot) { key in
                    right.spans.append(Span(offset: UInt32(right.bytes.count), length: UInt32(key.count)))
                    right.bytes.append(contentsOf: key)
                }
            }
            spans.removeSubrange(half...)
            values.removeSubrange(half...)
            repack()
            return right
        }

        /// Once removed keys' bytes are half the buffer, the live ones are copied into a new one.
        private func repackIfWasteful() {
            if garbage > 256 && garbage * 2 > bytes.count { repack() }
        }

        private func repack() {
            var packed: [UInt8] = []
            packed.reserveCapacity(bytes.count - garbage)
            for slot in 0..<spans.count {
                let length = spans[slot].length
                withKey(slot) { packed.append(contentsOf: $0) }
                spans[slot].offset = UInt32(packed.count) - length
            }
            bytes = packed
            garbage = 0
        }
    }

    static var leafCapacity: Int { 256 }
    /// Keys' bytes a leaf holds before it splits, whatever its number of keys: offsets are 32-bit, and a key is at
    /// most a request's size (`--max-request-bytes`, 1.5 MiB by default).
    static var leafBytes: Int { 64 << 20 }

    private(set) var leaves: [Leaf] = []
    /// `lowKeys[i]` is `leaves[i]`'s first key: the directory searched first.
    private var lowKeys: [Data] = []
    private(set) var count = 0

    /// A position: leaf and slot. Valid until the next mutation.
    struct Position: Equatable {
        var leaf: Int
        var slot: Int
    }

    init() {}

    var isEmpty: Bool { count == 0 }

    subscript(key: Data) -> Value? {
        guard let p = find(key) else { return nil }
        return leaves[p.leaf].values[p.slot]
    }

    /// The position of `key`, if present.
    func find(_ key: Data) -> Position? {
        key.withUnsafeBytes { probe in
            let p = lowerBound(probe)
            guard p.leaf < leaves.count, p.slot < leaves[p.leaf].count,
                leaves[p.leaf].withKey(p.slot, { KeyRange.compare($0, probe) }) == 0
            else { return nil }
            return p
        }
    }

    /// The first position whose key is not below `key` (the end position when there is none).
    func lowerBound(_ key: Data) -> Position {
        key.withUnsafeBytes { lowerBound($0) }
    }

    private func lowerBound(_ probe: UnsafeRawBufferPointer) -> Position {
        guard !leaves.isEmpty else { return Position(leaf: 0, slot: 0) }
        // The last leaf whose low key is <= key; keys below the first low key belong to leaf 0.
        var low = 0
        var high = lowKeys.count
        while low < high {
            let mid = (low + high) / 2
            if lowKeys[mid].withUnsafeBytes({ KeyRange.compare($0, probe) }) <= 0 { low = mid + 1 } else { high = mid }
        }
        let leafIndex = max(0, low - 1)
        let slot = leaves[leafIndex].lowerBound(probe)
        if slot == leaves[leafIndex].count && leafIndex + 1 < leaves.count {
            return Position(leaf: leafIndex + 1, slot: 0)
        }
        return Position(leaf: leafIndex, slot: slot)
    }

    /// Inserts or replaces; `update` receives the current value (nil when absent) and returns the new one, or
    /// nil to remove the key.
    mutating func update(_ key: Data, _ update: (inout Value?) -> Void) {
        key.withUnsafeBytes { self.update(probe: $0, update) }
    }

    private mutating func update(probe: UnsafeRawBufferPointer, _ update: (inout Value?) -> Void) {
        if leaves.isEmpty {
            var value: Value? = nil
            update(&value)
            guard let value else { return }
            let leaf = Leaf()
            leaf.insert(probe, value, at: 0)
            leaves = [leaf]
            lowKeys = [Data(probe)]
            count = 1
            return
        }
        var p = lowerBound(probe)
        if p.leaf == leaves.count { p = Position(leaf: leaves.count - 1, slot: leaves[leaves.count - 1].count) }
        let leaf = leaves[p.leaf]
        if p.slot < leaf.count && leaf.withKey(p.slot, { KeyRange.compare($0, probe) }) == 0 {
            var value: Value? = leaf.values[p.slot]
            update(&value)
            if let value {
                leaf.values[p.slot] = value
            } else {
                remove(at: p)
            }
            return
        }
        var value: Value? = nil
        update(&value)
        guard let value else { return }
        leaf.insert(probe, value, at: p.slot)
        count += 1
        if p.slot == 0 { lowKeys[p.leaf] = Data(probe) }
        splitIfFull(p.leaf)
    }

    mutating func set(_ key: Data, _ value: Value) {
        update(key) { $0 = value }
    }

    /// The value of `key`, inserting `make()` first when absent: one search, and none at all for a key above every
    /// other (a store rebuilt in key order, sequential keys), which goes straight to the end.
    mutating func value(for key: Data, orInsert make: () -> Value) -> Value {
        key.withUnsafeBytes { value(forKey: $0, orInsert: make) }
    }

    /// `value(for:orInsert:)` for a key given as bytes, valid during the call.
    mutating func value(forKey probe: UnsafeRawBufferPointer, orInsert make: () -> Value) -> Value {
        if let last = leaves.last, last.count > 0, last.withKey(last.count - 1, { KeyRange.compare($0, probe) }) < 0 {
            let value = make()
            last.insert(probe, value, at: last.count)
            count += 1
            splitIfFull(leaves.count - 1)
            return value
        }
        var found: Value? = nil
        update(probe: probe) { existing in
            if existing == nil { existing = make() }
            found = existing
        }
        return found!
    }

    mutating func remove(_ key: Data) {
        if let p = find(key) { remove(at: p) }
    }

    private mutating func remove(at p: Position) {
        let leaf = leaves[p.leaf]
        leaf.remove(at: p.slot)
        count -= 1
        if leaf.count == 0 {
            leaves.remove(at: p.leaf)
            lowKeys.remove(at: p.leaf)
        } else if p.slot == 0 {
            lowKeys[p.leaf] = leaf.key(0)
        }
    }

    private mutating func splitIfFull(_ index: Int) {
        let leaf = leaves[index]
        guard leaf.count > Self.leafCapacity || (leaf.count > 1 && leaf.bytes.count > Self.leafBytes) else { return }
        let right = leaf.splitOff()
        leaves.insert(right, at: index + 1)
        lowKeys.insert(right.key(0), at: index + 1)
    }

    /// Visits entries in key order from the first key not below `start`, while `body` returns true; the key's bytes
    /// are valid only during the call (`Data(key)` keeps them).
    func scan(from start: Data, _ body: (UnsafeRawBufferPointer, Value) -> Bool) {
        var p = lowerBound(start)
        while p.leaf < leaves.count {
            let leaf = leaves[p.leaf]
            while p.slot < leaf.count {
                let slot = p.slot
                if !leaf.withKey(slot, { body($0, leaf.values[slot]) }) { return }
                p.slot += 1
            }
            p = Position(leaf: p.leaf + 1, slot: 0)
        }
    }

    /// `scan(from:_:)` with each key copied out.
    func forEach(from start: Data, _ body: (Data, Value) -> Bool) {
        scan(from: start) { key, value in body(Data(key), value) }
    }

    /// Visits every entry in key order, letting `body` change or remove (set to nil) each value.
    mutating func mutateAll(_ body: (inout Value?) -> Void) {
        for leaf in leaves {
            let before = leaf.count
            leaf.filter { value in
                var changed: Value? = value
                body(&changed)
                guard let changed else { return false }
                value = changed
                return true
            }
            count -= before - leaf.count
        }
        if leaves.contains(where: { $0.count == 0 }) { leaves.removeAll { $0.count == 0 } }
        lowKeys = leaves.map { $0.key(0) }
    }
}
