#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A half-open interval of keys `[begin, end)`, compared as raw bytes; `end == nil` is "to the end of the key
/// space". This is etcd's `adt.BytesAffineInterval` restricted to the intervals that can actually match a key.
///
/// etcd encodes ranges in two bytes fields: an empty `range_end` means the single key `key` (the interval
/// `[key, key + "\0")`, whose only member is `key`), and `range_end == "\0"` means "every key from `key` on".
struct KeyInterval: Sendable, Equatable {
    var begin: [UInt8]
    /// Exclusive upper bound; nil for "no upper bound".
    var end: [UInt8]?

    /// The permission interval etcd's `getMergedPerms` builds for one granted permission, or nil when the
    /// permission can never match a key: an empty key (etcd's affine comparison treats an empty begin as larger
    /// than every key) or an empty range `range_end <= key` (etcd 3.5 refuses to grant those; older stores may
    /// still hold them, and etcd's interval tree never lets them cover anything).
    init?(permissionKey key: Data, rangeEnd: Data) {
        guard !key.isEmpty else { return nil }
        let begin = [UInt8](key)
        if rangeEnd.isEmpty {
            self.init(begin: begin, end: begin + [0])
        } else if rangeEnd.count == 1 && rangeEnd.first == 0 {
            self.init(begin: begin, end: nil)
        } else {
            let end = [UInt8](rangeEnd)
            guard begin.lexicographicallyPrecedes(end) else { return nil }
            self.init(begin: begin, end: end)
        }
    }

    init(begin: [UInt8], end: [UInt8]?) {
        self.begin = begin
        self.end = end
    }

    func contains(_ key: [UInt8]) -> Bool {
        guard !key.lexicographicallyPrecedes(begin) else { return false }
        guard let end else { return true }
        return key.lexicographicallyPrecedes(end)
    }
}

/// Orders two optional upper bounds, nil meaning "no bound" (larger than every key).
func compareUpperBounds(_ a: [UInt8]?, _ b: [UInt8]?) -> Int {
    switch (a, b) {
    case (nil, nil): return 0
    case (nil, _): return 1
    case (_, nil): return -1
    case (let a?, let b?):
        if a == b { return 0 }
        return a.lexicographicallyPrecedes(b) ? -1 : 1
    }
}

/// A set of keys kept as sorted, disjoint, non-adjacent intervals: the merged form of every permission of one
/// type a user holds through all of its roles.
///
/// etcd keeps an interval tree per user and type and asks it `Intersects` (one key) or `Contains` (a range: the
/// intervals overlapping the range, visited in order, must leave no gap and reach both ends). Merging overlapping
/// and touching intervals once, when the auth store changes, gives the same answers with a binary search: a key is
/// permitted when one merged interval holds it, a range when one merged interval covers all of it.
struct KeyIntervalSet: Sendable, Equatable {
    private(set) var intervals: [KeyInterval] = []

    init() {}

    init(_ unsorted: [KeyInterval]) {
        let sorted = unsorted.sorted { $0.begin.lexicographicallyPrecedes($1.begin) }
        var merged: [KeyInterval] = []
        merged.reserveCapacity(sorted.count)
        for interval in sorted {
            if let last = merged.last, let lastEnd = last.end, lastEnd.lexicographicallyPrecedes(interval.begin) {
                merged.append(interval)
            } else if var last = merged.popLast() {
                // Overlapping or touching (last.end >= interval.begin): extend the last interval.
                if compareUpperBounds(interval.end, last.end) > 0 { last.end = interval.end }
                merged.append(last)
            } else {
                merged.append(interval)
            }
        }
        intervals = merged
    }

    /// The merged interval whose begin is the greatest one not above `key`, if any.
    private func candidate(for key: [UInt8]) -> KeyInterval? {
        var low = 0
        var high = intervals.count
        while low < high {
            let mid = (low + high) / 2
            if key.lexicographicallyPrecedes(intervals[mid].begin) { high = mid } else { low = mid + 1 }
        }
        return low == 0 ? nil : intervals[low - 1]
    }

    /// etcd's `checkKeyPoint`: is the single key `key` in the set?
    func containsKey(_ key: [UInt8]) -> Bool {
        guard !key.isEmpty, let interval = candidate(for: key) else { return false }
        return interval.contains(key)
    }

    /// etcd's `checkKeyInterval`: is every key of `[key, end)` in the set (`end == nil`: up to the end of the
    /// key space)? An empty request range (`end <= key`) is decided as etcd's interval comparison decides it:
    /// by whether `key` itself is in the set.
    func containsRange(from key: [UInt8], to end: [UInt8]?) -> Bool {
        guard !key.isEmpty, let interval = candidate(for: key), interval.contains(key) else { return false }
        if let end, !key.lexicographicallyPrecedes(end) { return true }
        return compareUpperBounds(interval.end, end) >= 0
    }
}
