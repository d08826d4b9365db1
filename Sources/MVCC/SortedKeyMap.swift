import Foundation

/// An ordered map from byte-string keys to values, in etcd's key order (bytewise lexicographic).
///
/// Two levels: a sorted array of leaves, each holding up to `leafCapacity` sorted keys. A lookup is two binary
/// searches; an insert moves at most one leaf's worth of elements, plus, when a leaf splits, the leaf directory
/// (one pointer per `leafCapacity / 2` keys or more). That keeps a million keys to a directory of a few
/// thousand pointers, with none of a balanced tree's per-node bookkeeping, and a range scan walks contiguous
/// arrays. Mutation needs exclusive access (the owner's lock); leaves are classes so nothing is copied on write,
/// which is also why it is `@unchecked Sendable`: the store only touches it under its lock.
struct SortedKeyMap<Value>: @unchecked Sendable {
    final class Leaf {
        var keys: [Data] = []
        var values: [Value] = []
    }

    static var leafCapacity: Int { 256 }

    private(set) var leaves: [Leaf] = []
    /// `lowKeys[i] == leaves[i].keys[0]`: the directory searched first.
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
        let p = lowerBound(key)
        guard p.leaf < leaves.count, p.slot < leaves[p.leaf].keys.count,
            KeyRange.compare(leaves[p.leaf].keys[p.slot], key) == 0
        else { return nil }
        return p
    }

    /// The first position whose key is not below `key` (the end position when there is none).
    func lowerBound(_ key: Data) -> Position {
        guard !leaves.isEmpty else { return Position(leaf: 0, slot: 0) }
        // The probe's bytes are pinned once for the whole search (two binary searches, ~20 comparisons).
        return key.withUnsafeBytes { probe in
            // The last leaf whose low key is <= key; keys below the first low key belong to leaf 0.
            var low = 0
            var high = lowKeys.count
            while low < high {
                let mid = (low + high) / 2
                if Self.compare(lowKeys[mid], probe) <= 0 { low = mid + 1 } else { high = mid }
            }
            let leafIndex = max(0, low - 1)
            let keys = leaves[leafIndex].keys
            var l = 0
            var h = keys.count
            while l < h {
                let mid = (l + h) / 2
                if Self.compare(keys[mid], probe) < 0 { l = mid + 1 } else { h = mid }
            }
            if l == keys.count && leafIndex + 1 < leaves.count { return Position(leaf: leafIndex + 1, slot: 0) }
            return Position(leaf: leafIndex, slot: l)
        }
    }

    @inline(__always)
    private static func compare(_ a: Data, _ probe: UnsafeRawBufferPointer) -> Int {
        a.withUnsafeBytes { KeyRange.compare($0, probe) }
    }

    /// Inserts or replaces; `update` receives the current value (nil when absent) and returns the new one, or
    /// nil to remove the key.
    mutating func update(_ key: Data, _ update: (inout Value?) -> Void) {
        if leaves.isEmpty {
            var value: Value? = nil
            update(&value)
            guard let value else { return }
            let leaf = Leaf()
            leaf.keys = [key]
            leaf.values = [value]
            leaves = [leaf]
            lowKeys = [key]
            count = 1
            return
        }
        var p = lowerBound(key)
        if p.leaf == leaves.count { p = Position(leaf: leaves.count - 1, slot: leaves[leaves.count - 1].keys.count) }
        let leaf = leaves[p.leaf]
        if p.slot < leaf.keys.count && KeyRange.compare(leaf.keys[p.slot], key) == 0 {
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
        leaf.keys.insert(key, at: p.slot)
        leaf.values.insert(value, at: p.slot)
        count += 1
        if p.slot == 0 { lowKeys[p.leaf] = key }
        if leaf.keys.count > Self.leafCapacity { split(p.leaf) }
    }

    mutating func set(_ key: Data, _ value: Value) {
        update(key) { $0 = value }
    }

    /// The value of `key`, inserting `make()` first when absent: one search, and none at all for a key above every
    /// other (a store rebuilt in key order, sequential keys), which goes straight to the end.
    mutating func value(for key: Data, orInsert make: () -> Value) -> Value {
        if let last = leaves.last, let lastKey = last.keys.last, KeyRange.compare(lastKey, key) < 0 {
            let value = make()
            last.keys.append(key)
            last.values.append(value)
            count += 1
            if last.keys.count > Self.leafCapacity { split(leaves.count - 1) }
            return value
        }
        var found: Value? = nil
        update(key) { existing in
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
        leaf.keys.remove(at: p.slot)
        leaf.values.remove(at: p.slot)
        count -= 1
        if leaf.keys.isEmpty {
            leaves.remove(at: p.leaf)
            lowKeys.remove(at: p.leaf)
        } else if p.slot == 0 {
            lowKeys[p.leaf] = leaf.keys[0]
        }
    }

    private mutating func split(_ index: Int) {
        let leaf = leaves[index]
        let half = leaf.keys.count / 2
        let right = Leaf()
        right.keys = Array(leaf.keys[half...])
        right.values = Array(leaf.values[half...])
        leaf.keys.removeSubrange(half...)
        leaf.values.removeSubrange(half...)
        leaves.insert(right, at: index + 1)
        lowKeys.insert(right.keys[0], at: index + 1)
    }

    /// Visits entries in key order from the first key not below `start`, while `body` returns true.
    func forEach(from start: Data, _ body: (Data, Value) -> Bool) {
        var p = lowerBound(start)
        while p.leaf < leaves.count {
            let leaf = leaves[p.leaf]
            while p.slot < leaf.keys.count {
                if !body(leaf.keys[p.slot], leaf.values[p.slot]) { return }
                p.slot += 1
            }
            p = Position(leaf: p.leaf + 1, slot: 0)
        }
    }

    /// Visits every entry in key order, letting `body` change or remove (set to nil) each value.
    mutating func mutateAll(_ body: (Data, inout Value?) -> Void) {
        var emptied = false
        for leaf in leaves {
            var keep = 0
            for i in 0..<leaf.keys.count {
                var value: Value? = leaf.values[i]
                body(leaf.keys[i], &value)
                if let value {
                    if keep != i {
                        leaf.keys[keep] = leaf.keys[i]
                    }
                    leaf.values[keep] = value
                    keep += 1
                }
            }
            if keep < leaf.keys.count {
                count -= leaf.keys.count - keep
                leaf.keys.removeSubrange(keep...)
                leaf.values.removeSubrange(keep...)
                emptied = emptied || keep == 0
            }
        }
        if emptied || leaves.contains(where: { $0.keys.isEmpty }) { leaves.removeAll { $0.keys.isEmpty } }
        lowKeys = leaves.map { $0.keys[0] }
    }
}
