import Collections
import EtcdProto
import Foundation
import SwiftProtobuf

/// etcd's grpc-proxy cache of serializable reads: an LRU of Range responses keyed by the request (asked as
/// serializable), invalidated by the writes that pass through this proxy.
///
/// Only writes made through this proxy invalidate it, exactly as in etcd: a serializable read may return what the
/// proxy saw last even though another client wrote through a member directly. Linearizable reads are never answered
/// from it (they refresh it). A pure value, so its rules are unit-tested without a cluster.
package struct RangeCache: Sendable {
    /// etcd's `cache.DefaultMaxEntries`.
    package static let defaultMaxEntries = 2048

    /// A key range as the cache indexes it; `end == nil` is one key, `end == [0]` runs to the end of the key space.
    struct Interval: Hashable {
        var key: [UInt8]
        var end: [UInt8]?

        init(key: Data, end: Data) {
            self.key = Array(key)
            self.end = end.isEmpty ? nil : Array(end)
        }

        /// Whether the two ranges share a key (half-open intervals, `[0]` as the end of the key space).
        func overlaps(_ other: Interval) -> Bool {
            func contains(_ range: Interval, _ key: [UInt8]) -> Bool {
                guard let end = range.end else { return range.key == key }
                if end == [0] { return key.lexicographicallyPrecedes(range.key) == false }
                return !key.lexicographicallyPrecedes(range.key) && key.lexicographicallyPrecedes(end)
            }
            switch (end, other.end) {
            case (nil, _): return contains(other, key)
            case (_, nil): return contains(self, other.key)
            case (let a?, let b?):
                // [k1, e1) and [k2, e2) overlap when k1 < e2 and k2 < e1 (an end of [0] is infinity).
                let aBeforeB = b == [0] || key.lexicographicallyPrecedes(b)
                let bBeforeA = a == [0] || other.key.lexicographicallyPrecedes(a)
                return aBeforeB && bBeforeA
            }
        }
    }

    private let maxEntries: Int
    /// Least recently used first.
    private var entries: OrderedDictionary<Data, Etcdserverpb_RangeResponse> = [:]
    /// Which cached requests read each range (requests at a fixed revision never change and are not indexed).
    private var ranges: [Interval: Set<Data>] = [:]
    /// The highest revision compacted through this proxy; reads below it are answered "compacted".
    private(set) var compactedRevision: Int64 = -1

    package init(maxEntries: Int = RangeCache.defaultMaxEntries) {
        self.maxEntries = max(1, maxEntries)
    }

    package var count: Int { entries.count }

    /// The cache key: the request as a serializable read, serialized (etcd keys on the marshalled request too).
    static func key(for request: Etcdserverpb_RangeRequest) -> Data {
        var request = request
        request.serializable = true
        return (try? request.serializedData(partial: true)) ?? Data()
    }

    package enum Lookup: Equatable, Sendable {
        case hit(Etcdserverpb_RangeResponse)
        case miss
        /// The request's revision was compacted through this proxy (etcd answers `ErrCompacted` from the cache).
        case compacted
    }

    package mutating func get(_ request: Etcdserverpb_RangeRequest) -> Lookup {
        let key = Self.key(for: request)
        if request.revision > 0 && request.revision < compactedRevision {
            remove(key)
            return .compacted
        }
        guard let response = entries.removeValue(forKey: key) else { return .miss }
        entries[key] = response
        return .hit(response)
    }

    /// Remembers the answer to `request` (any consistency: a linearizable answer is a fine serializable one).
    package mutating func add(_ request: Etcdserverpb_RangeRequest, _ response: Etcdserverpb_RangeResponse) {
        let key = Self.key(for: request)
        // etcd compares every revision with the compacted one, so after a compaction through its proxy reads of the
        // latest revision (0) are never cached again; here they still are.
        if request.revision == 0 || request.revision > compactedRevision {
            entries.removeValue(forKey: key)
            entries[key] = response
            while entries.count > maxEntries {
                let evicted = entries.keys[0]
                remove(evicted)
            }
        }
        guard request.revision == 0, entries[key] != nil else { return }
        ranges[Interval(key: request.key, end: request.rangeEnd), default: []].insert(key)
    }

    /// Forgets every cached read of a range that overlaps `key`..`end` (a write through the proxy).
    package mutating func invalidate(key: Data, end: Data = Data()) {
        let written = Interval(key: key, end: end)
        for (interval, keys) in ranges where interval.overlaps(written) {
            for key in keys { entries.removeValue(forKey: key) }
            ranges[interval] = nil
        }
    }

    package mutating func compact(_ revision: Int64) {
        compactedRevision = max(compactedRevision, revision)
    }

    private mutating func remove(_ key: Data) {
        entries.removeValue(forKey: key)
        for (interval, var keys) in ranges where keys.contains(key) {
            keys.remove(key)
            ranges[interval] = keys.isEmpty ? nil : keys
        }
    }
}
