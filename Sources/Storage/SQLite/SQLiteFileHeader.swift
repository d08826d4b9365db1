#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The fields of a SQLite file's 100-byte header that the defragment's read-ahead threads need, read from the file
/// without SQLite (fileformat2.html, "The Database Header").
struct SQLiteFileHeader: Equatable {
    var pageSize: Int
    /// Bytes at the end of each page kept for extensions.
    var reservedBytes: Int
    /// The free list's first trunk page; 0 when the list is empty.
    var firstTrunk: Int
    /// Non-zero when the file has pointer maps (auto-vacuum): the largest root page.
    var largestRoot: Int

    var pointerMaps: PointerMapLayout? {
        largestRoot == 0 ? nil : PointerMapLayout(pageSize: pageSize, reservedBytes: reservedBytes)
    }

    /// Reads the header of the open file `fd`; nil when it is not a SQLite database.
    init?(fd: Int32) {
        var bytes = [UInt8](repeating: 0, count: 100)
        guard pread(fd, &bytes, 100, 0) == 100, bytes.starts(with: Array("SQLite format 3\0".utf8)) else {
            return nil
        }
        // 1 stands for 65,536.
        let size = Int(bytes[16]) << 8 | Int(bytes[17])
        pageSize = size == 1 ? 65_536 : size
        guard pageSize >= 512, pageSize.nonzeroBitCount == 1 else { return nil }
        reservedBytes = Int(bytes[20])
        firstTrunk = Self.bigEndian32(bytes, at: 32)
        largestRoot = Self.bigEndian32(bytes, at: 52)
    }

    static func bigEndian32(_ bytes: [UInt8], at offset: Int) -> Int {
        Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
    }
}
