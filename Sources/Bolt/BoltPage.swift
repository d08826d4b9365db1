/// A page read from the file (or an inline bucket's page), with bounds-checked access to its elements.
///
/// Nothing here trusts the bytes: element positions and sizes are checked against the page's extent before any
/// key or value is copied out, so a corrupt page yields a `BoltError`, never an out-of-bounds access.
struct BoltPage {
    /// Where a page came from, for error messages.
    enum Origin {
        case file(UInt64)
        /// An inline bucket's page, inside the value of `bucket` in the page `parent`.
        case inline(bucket: [UInt8], parent: UInt64?)
    }

    let bytes: [UInt8]
    let origin: Origin
    let headerID: UInt64
    let flags: BoltPageFlags
    let count: Int
    let overflow: UInt32

    /// The page id errors should name.
    var pageID: UInt64? {
        if case .file(let id) = origin { return id }
        if case .inline(_, let parent) = origin { return parent }
        return nil
    }

    var isLeaf: Bool { flags.contains(.leaf) }
    var isBranch: Bool { flags.contains(.branch) }

    /// Parses the header; `bytes` must hold the whole page including overflow pages.
    init(bytes: [UInt8], origin: Origin, path: String, fileOffset: Int64?) throws(BoltError) {
        guard bytes.count >= BoltFormat.pageHeaderSize else {
            throw BoltPage.error(
                origin, path: path, fileOffset, "page is \(bytes.count) bytes, shorter than its header")
        }
        self.bytes = bytes
        self.origin = origin
        headerID = bytes.loadLE(UInt64.self, at: 0)
        flags = BoltPageFlags(rawValue: bytes.loadLE(UInt16.self, at: 8))
        count = Int(bytes.loadLE(UInt16.self, at: 10))
        overflow = bytes.loadLE(UInt32.self, at: 12)
    }

    static func error(_ origin: Origin, path: String, _ offset: Int64?, _ message: String) -> BoltError {
        switch origin {
        case .file(let id):
            return BoltError(.corrupt, path: path, message, pageID: id, offset: offset)
        case .inline(let bucket, let parent):
            return BoltError(
                .corrupt, path: path, "inline page of bucket \(printable(bucket)): \(message)", pageID: parent,
                offset: offset)
        }
    }

    /// Checks that the element headers fit in the page.
    func checkElementArea(path: String, offset: Int64?) throws(BoltError) {
        let end = BoltFormat.pageHeaderSize + count * BoltFormat.elementSize
        guard end <= bytes.count else {
            throw BoltPage.error(
                origin, path: path, offset,
                "\(flags) page claims \(count) elements, whose headers need \(end) bytes but the page has "
                    + "\(bytes.count)"
            )
        }
    }

    /// The i-th leaf element: flags and the byte ranges of key and value.
    func leafElement(_ i: Int, path: String, offset: Int64?) throws(BoltError) -> (
        flags: UInt32, key: Range<Int>, value: Range<Int>
    ) {
        let element = BoltFormat.pageHeaderSize + i * BoltFormat.elementSize
        let flags = bytes.loadLE(UInt32.self, at: element)
        let pos = Int(bytes.loadLE(UInt32.self, at: element + 4))
        let keySize = Int(bytes.loadLE(UInt32.self, at: element + 8))
        let valueSize = Int(bytes.loadLE(UInt32.self, at: element + 12))
        let keyStart = element + pos
        guard keyStart + keySize + valueSize <= bytes.count else {
            throw BoltPage.error(
                origin, path: path, offset,
                "leaf element \(i) (position \(pos), key \(keySize) bytes, value \(valueSize) bytes) runs past the "
                    + "page's \(bytes.count) bytes")
        }
        return (flags, keyStart..<(keyStart + keySize), (keyStart + keySize)..<(keyStart + keySize + valueSize))
    }

    /// The i-th branch element: the byte range of its key and the child page id.
    func branchElement(_ i: Int, path: String, offset: Int64?) throws(BoltError) -> (key: Range<Int>, child: UInt64) {
        let element = BoltFormat.pageHeaderSize + i * BoltFormat.elementSize
        let pos = Int(bytes.loadLE(UInt32.self, at: element))
        let keySize = Int(bytes.loadLE(UInt32.self, at: element + 4))
        let child = bytes.loadLE(UInt64.self, at: element + 8)
        let keyStart = element + pos
        guard keyStart + keySize <= bytes.count else {
            throw BoltPage.error(
                origin, path: path, offset,
                "branch element \(i) (position \(pos), key \(keySize) bytes) runs past the page's \(bytes.count) bytes")
        }
        return (keyStart..<(keyStart + keySize), child)
    }
}
