/// The constants of bbolt's on-disk format (file format version 2), as bbolt's page.go, bucket.go and db.go define
/// them. Everything in a bbolt file is little-endian, whatever the machine that wrote it (bbolt only runs on
/// little-endian machines in practice), so the encoders here spell the byte order out.
public enum BoltFormat {
    /// The magic number at the start of every meta page.
    public static let magic: UInt32 = 0xED0C_DAED
    /// The only file format version bbolt (and etcd) reads.
    public static let version: UInt32 = 2
    /// The page size `BoltWriter` uses unless told otherwise: Linux's page size, which bbolt and etcd use.
    public static let defaultPageSize = 4096
    /// The freelist page id a meta page holds when the freelist is not persisted (bbolt's `NoFreelistSync`).
    public static let noFreelist: UInt64 = .max
    /// Bolt refuses longer keys (`bbolt.MaxKeySize`).
    public static let maxKeySize = 32768
    /// Bolt refuses longer values (`bbolt.MaxValueSize`).
    public static let maxValueSize = (1 << 31) - 2

    /// Every page starts with `id: u64, flags: u16, count: u16, overflow: u32`.
    static let pageHeaderSize = 16
    /// A leaf element is `flags: u32, pos: u32, ksize: u32, vsize: u32`; a branch element `pos, ksize: u32,
    /// pgid: u64`. Both are 16 bytes; `pos` counts from the element itself to its key.
    static let elementSize = 16
    /// A bucket's value in its parent starts with `root: u64, sequence: u64`; inline buckets follow it with a page.
    static let bucketHeaderSize = 16
    /// The meta structure sits right after the page header; its checksum covers the 56 bytes before the checksum.
    static let metaChecksummedSize = 56
    static let metaSize = 64

    /// The element count field is 16 bits wide; bbolt refuses 0xFFFF elements and a freelist uses it as an escape.
    static let maxElementsPerPage = 0xFFFE
}

/// What a page holds, from the page header's flags.
public struct BoltPageFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let branch = BoltPageFlags(rawValue: 0x01)
    public static let leaf = BoltPageFlags(rawValue: 0x02)
    public static let meta = BoltPageFlags(rawValue: 0x04)
    public static let freelist = BoltPageFlags(rawValue: 0x10)

    /// bbolt's own names for page types, so errors read like bbolt's.
    public var description: String {
        if contains(.branch) { return "branch" }
        if contains(.leaf) { return "leaf" }
        if contains(.meta) { return "meta" }
        if contains(.freelist) { return "freelist" }
        return "unknown<\(String(rawValue, radix: 16))>"
    }
}

/// The flag of a leaf element whose value is a nested bucket rather than plain data.
let bucketLeafFlag: UInt32 = 0x01
