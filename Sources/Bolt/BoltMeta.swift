/// The content of a meta page: where the tree starts, where the freelist is, how many pages are in use.
///
/// A bbolt file has two meta pages (0 and 1) and writes them alternately, so a torn write can only damage the newer
/// one; readers take the valid one with the highest transaction id.
public struct BoltMeta: Sendable, Equatable {
    public var magic: UInt32 = BoltFormat.magic
    public var version: UInt32 = BoltFormat.version
    public var pageSize: UInt32
    public var flags: UInt32 = 0
    /// The page of the root bucket, whose leaf elements are the top-level buckets.
    public var rootPageID: UInt64
    /// The root bucket's sequence (`NextSequence`); bbolt keeps it, nothing uses it.
    public var rootSequence: UInt64 = 0
    /// The freelist page, or `BoltFormat.noFreelist`.
    public var freelistPageID: UInt64
    /// The high-water mark: the number of pages the file uses (pages 0 ..< highWaterMark).
    public var highWaterMark: UInt64
    public var transactionID: UInt64
    /// The FNV-64a of the 56 bytes before it; 0 in files older than checksums (bbolt skips the check then).
    public var checksum: UInt64 = 0

    public init(
        pageSize: UInt32, rootPageID: UInt64, freelistPageID: UInt64, highWaterMark: UInt64, transactionID: UInt64
    ) {
        self.pageSize = pageSize
        self.rootPageID = rootPageID
        self.freelistPageID = freelistPageID
        self.highWaterMark = highWaterMark
        self.transactionID = transactionID
    }

    /// Decodes the meta structure at `offset` (just after a page header) of `bytes`.
    init(decoding bytes: [UInt8], at offset: Int) {
        magic = bytes.loadLE(UInt32.self, at: offset)
        version = bytes.loadLE(UInt32.self, at: offset + 4)
        pageSize = bytes.loadLE(UInt32.self, at: offset + 8)
        flags = bytes.loadLE(UInt32.self, at: offset + 12)
        rootPageID = bytes.loadLE(UInt64.self, at: offset + 16)
        rootSequence = bytes.loadLE(UInt64.self, at: offset + 24)
        freelistPageID = bytes.loadLE(UInt64.self, at: offset + 32)
        highWaterMark = bytes.loadLE(UInt64.self, at: offset + 40)
        transactionID = bytes.loadLE(UInt64.self, at: offset + 48)
        checksum = bytes.loadLE(UInt64.self, at: offset + 56)
    }

    /// The 56 checksummed bytes followed by the checksum, as they sit in the page.
    var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(BoltFormat.metaSize)
        out.appendLE(magic)
        out.appendLE(version)
        out.appendLE(pageSize)
        out.appendLE(flags)
        out.appendLE(rootPageID)
        out.appendLE(rootSequence)
        out.appendLE(freelistPageID)
        out.appendLE(highWaterMark)
        out.appendLE(transactionID)
        out.appendLE(checksum)
        return out
    }

    /// The checksum bbolt computes: FNV-64a over every field before the checksum.
    public var computedChecksum: UInt64 {
        FNV64a.hash(encoded.prefix(BoltFormat.metaChecksummedSize))
    }

    /// A copy whose checksum field matches its content.
    public func sealed() -> BoltMeta {
        var copy = self
        copy.checksum = computedChecksum
        return copy
    }

    /// Why bbolt would reject this meta page (magic, version, checksum — bbolt's own three checks), or nil.
    func validationFailure() -> (kind: BoltError.Kind, message: String)? {
        if magic != BoltFormat.magic {
            return (.notBolt, "bad magic 0x\(String(magic, radix: 16)) (bbolt's is 0xed0cdaed)")
        }
        if version != BoltFormat.version {
            return (.unsupportedVersion, "format version \(version) (only version 2 is supported)")
        }
        if checksum != 0 && checksum != computedChecksum {
            return (
                .checksumMismatch,
                "meta checksum mismatch: stored 0x\(String(checksum, radix: 16)), "
                    + "computed 0x\(String(computedChecksum, radix: 16))"
            )
        }
        return nil
    }

    /// A full meta page as bbolt writes it: the page header (id, meta flag), then this meta with its checksum
    /// recomputed, padded to `pageSize` bytes.
    public func encodedPage(id: UInt64) -> [UInt8] {
        var page = [UInt8](repeating: 0, count: Int(pageSize))
        page.storeLE(id, at: 0)
        page.storeLE(BoltPageFlags.meta.rawValue, at: 8)
        let meta = sealed().encoded
        page.replaceSubrange(BoltFormat.pageHeaderSize..<(BoltFormat.pageHeaderSize + meta.count), with: meta)
        return page
    }
}
