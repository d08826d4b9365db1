/// A point in etcd's history: `main` counts write transactions store-wide, `sub` numbers the changes within one.
///
/// In the key bucket a revision is the key: 8 bytes big-endian `main`, the byte `_`, 8 bytes big-endian `sub` — so
/// bbolt's byte order is revision order — followed by `t` when the change deleted the key (a tombstone).
public struct BackendRevision: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var main: Int64
    public var sub: Int64

    public init(main: Int64, sub: Int64 = 0) {
        self.main = main
        self.sub = sub
    }

    public static func < (a: BackendRevision, b: BackendRevision) -> Bool {
        (a.main, a.sub) < (b.main, b.sub)
    }

    public var description: String { "\(main).\(sub)" }

    /// The 17-byte key, with etcd's tombstone mark appended when `tombstone`.
    public func keyBytes(tombstone: Bool = false) -> [UInt8] {
        var bytes = [UInt8](bigEndian: UInt64(bitPattern: main))
        bytes.append(UInt8(ascii: "_"))
        bytes += [UInt8](bigEndian: UInt64(bitPattern: sub))
        if tombstone { bytes.append(BackendRevision.tombstoneMark) }
        return bytes
    }

    /// Parses a key-bucket key: 17 bytes, or 18 ending in the tombstone mark. Nil for anything else.
    public init?(keyBytes bytes: [UInt8]) {
        guard bytes.count == 17 || (bytes.count == 18 && bytes[17] == BackendRevision.tombstoneMark),
            bytes[8] == UInt8(ascii: "_"), let main = Array(bytes[0..<8]).bigEndianUInt64,
            let sub = Array(bytes[9..<17]).bigEndianUInt64
        else { return nil }
        self.main = Int64(bitPattern: main)
        self.sub = Int64(bitPattern: sub)
    }

    /// Whether a key-bucket key carries the tombstone mark.
    public static func isTombstone(keyBytes bytes: [UInt8]) -> Bool {
        bytes.count == 18 && bytes[17] == tombstoneMark
    }

    /// etcd's `markTombstone`.
    static let tombstoneMark = UInt8(ascii: "t")
}
