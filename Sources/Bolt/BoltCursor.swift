/// One key/value of a bucket.
public struct BoltEntry: Sendable, Equatable {
    public var key: [UInt8]
    /// The value; for a nested bucket, its header (and inline page) as stored.
    public var value: [UInt8]
    /// Whether the value is a nested bucket (bbolt's bucket leaf flag).
    public var isBucket: Bool

    public init(key: [UInt8], value: [UInt8], isBucket: Bool = false) {
        self.key = key
        self.value = value
        self.isBucket = isBucket
    }
}

/// Walks a bucket's tree depth-first and yields its key/values in order, reading one page per level at a time.
///
/// Memory is one page (with its overflow) per level of the tree. Corruption cannot make it loop or wander: a child
/// that is already on the path from the root is a cycle, the depth is capped, only branch and leaf pages are
/// followed, and keys must strictly ascend — a page reached twice repeats keys and is reported.
public struct BoltCursor {
    private struct Frame {
        var page: BoltPage
        var index: Int
        var offset: Int64?
    }

    private let reader: BoltReader
    /// The bucket's name, for messages (empty for the root bucket).
    public let bucket: [UInt8]
    private var stack: [Frame] = []
    private var lastKey: [UInt8]?

    /// The page the last entry came from (for messages about it); for an inline bucket, the page holding it.
    public var pageID: UInt64? { stack.last?.page.pageID }

    private var bucketLabel: String { bucket.isEmpty ? "the root bucket" : "bucket \(printable(bucket))" }

    init(reader: BoltReader, bucket: [UInt8], root: BoltReader.BucketRoot, referrer: String) throws(BoltError) {
        self.reader = reader
        self.bucket = bucket
        switch root {
        case .inline(let page):
            try page.checkElementArea(path: reader.path, offset: nil)
            stack.append(Frame(page: page, index: 0, offset: nil))
        case .page(let id):
            try push(id, referrer: referrer)
        }
    }

    private mutating func push(_ id: UInt64, referrer: String) throws(BoltError) {
        let path = reader.path
        if stack.count >= BoltReader.maximumDepth {
            throw BoltError(
                .corrupt, path: path, "\(bucketLabel)'s tree is deeper than \(BoltReader.maximumDepth) levels",
                pageID: id)
        }
        if stack.contains(where: { $0.page.pageID == id }) {
            throw BoltError(
                .corrupt, path: path,
                "cycle in \(bucketLabel): \(referrer) points back to page \(id), its own ancestor",
                pageID: id)
        }
        let page = try reader.readPage(id, referrer: referrer)
        let offset = Int64(id) * Int64(reader.pageSize)
        guard page.isLeaf || page.isBranch else {
            throw BoltError(
                .corrupt, path: path,
                "\(referrer) points to a \(page.flags) page where \(bucketLabel) needs a branch or leaf page",
                pageID: id, offset: offset)
        }
        if page.isBranch && page.count == 0 {
            throw BoltError(
                .corrupt, path: path, "branch page of \(bucketLabel) has no elements", pageID: id, offset: offset)
        }
        try page.checkElementArea(path: path, offset: offset)
        stack.append(Frame(page: page, index: 0, offset: offset))
    }

    /// The next key/value in key order, or nil after the last.
    public mutating func next() throws(BoltError) -> BoltEntry? {
        let path = reader.path
        while let top = stack.last {
            let depth = stack.count - 1
            if top.index >= top.page.count {
                stack.removeLast()
                continue
            }
            stack[depth].index += 1
            if top.page.isLeaf {
                let element = try top.page.leafElement(top.index, path: path, offset: top.offset)
                let key = Array(top.page.bytes[element.key])
                if key.isEmpty {
                    throw BoltPage.error(
                        top.page.origin, path: path, top.offset, "leaf element \(top.index) has an empty key")
                }
                if let lastKey, byteOrder(lastKey, key) >= 0 {
                    throw BoltPage.error(
                        top.page.origin, path: path, top.offset,
                        "keys out of order in \(bucketLabel): \(printable(key)) after \(printable(lastKey)) (a "
                            + "corrupt or repeated page)")
                }
                lastKey = key
                return BoltEntry(
                    key: key, value: Array(top.page.bytes[element.value]),
                    isBucket: element.flags & bucketLeafFlag != 0)
            }
            let element = try top.page.branchElement(top.index, path: path, offset: top.offset)
            try push(element.child, referrer: "element \(top.index) of branch page \(top.page.pageID ?? 0)")
        }
        return nil
    }
}
