import Foundation

/// The set of keys a request addresses, decoded once from etcd's `(key, range_end)` convention:
/// an empty `range_end` means the single key, `"\0"` means every key from `key` on, anything else is the
/// half-open interval `[key, range_end)`.
///
/// Keys are `Data` because that is what the protobuf messages carry: no copy between the wire and storage.
public enum KeyRange: Sendable, Equatable, Hashable {
    case single(Data)
    case interval(from: Data, to: Data)
    case from(Data)

    public init(key: Data, rangeEnd: Data) {
        if rangeEnd.isEmpty {
            self = .single(key)
        } else if rangeEnd.count == 1 && rangeEnd.first == 0 {
            self = .from(key)
        } else {
            self = .interval(from: key, to: rangeEnd)
        }
    }

    /// An interval whose end is not above its start holds no key (etcd answers such ranges with nothing).
    public var isEmpty: Bool {
        if case .interval(let from, let to) = self { return !KeyRange.less(from, to) }
        return false
    }

    public func contains(_ key: Data) -> Bool {
        switch self {
        case .single(let k): return k == key
        case .from(let k): return !KeyRange.less(key, k)
        case .interval(let from, let to): return !KeyRange.less(key, from) && KeyRange.less(key, to)
        }
    }

    /// Whether two ranges share a key (used to reject a txn that writes one key twice).
    public func overlaps(_ other: KeyRange) -> Bool {
        if isEmpty || other.isEmpty { return false }
        let (aLow, aHigh) = bounds
        let (bLow, bHigh) = other.bounds
        let aEndsBeforeB = aHigh.map { !KeyRange.less(bLow, $0) } ?? false
        let bEndsBeforeA = bHigh.map { !KeyRange.less(aLow, $0) } ?? false
        return !aEndsBeforeB && !bEndsBeforeA
    }

    /// Inclusive low bound and exclusive high bound (nil = unbounded).
    public var bounds: (Data, Data?) {
        switch self {
        case .single(let k): return (k, k + [0])
        case .from(let k): return (k, nil)
        case .interval(let from, let to): return (from, to)
        }
    }

    /// Byte-wise lexicographic order, the order etcd's keys sort in (and SQLite's BLOB order).
    public static func less(_ a: Data, _ b: Data) -> Bool {
        compare(a, b) < 0
    }

    public static func compare(_ a: Data, _ b: Data) -> Int {
        a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in compare(pa, pb) } }
    }

    /// The same order on bytes already pinned (a search compares one probe against many keys).
    @inline(__always)
    static func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        let n = min(a.count, b.count)
        if n > 0 {
            let c = memcmp(a.baseAddress!, b.baseAddress!, n)
            if c != 0 { return Int(c) }
        }
        return a.count - b.count
    }

    /// The range_end that selects every key with `prefix` ("a" → "b", "a\xff" → "b"; all 0xff → "\0").
    public static func prefixEnd(_ prefix: Data) -> Data {
        var end = [UInt8](prefix)
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return Data(end)
            }
            end.removeLast()
        }
        return Data([0])
    }
}
