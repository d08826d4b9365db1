/// Writes a new bbolt file in one pass with memory that does not grow with the data.
///
/// The caller adds top-level buckets one at a time and puts each bucket's keys in ascending byte order:
///
///     let writer = try BoltWriter(path: "/tmp/db")
///     try writer.beginBucket(Array("key".utf8))
///     try writer.put(key: k1, value: v1)      // k1 < k2 < ...
///     try writer.endBucket()
///     let summary = try writer.finish()
///
/// Leaf pages are filled to the page size and appended to the file as they fill; a value larger than a page gets
/// overflow pages. Only one partly filled page per tree level stays in memory (see `BucketTreeBuilder`). A bucket
/// that ends up as a single leaf of at most a quarter page is stored inline in the root bucket, as bbolt does.
/// `finish` writes the root bucket (the top-level bucket names, held in memory and sorted: they are few), an empty
/// freelist page, and last the two meta pages at offsets 0 and `pageSize` — so the output must be a seekable file.
/// The result opens in bbolt (and so in etcd) and passes bbolt's consistency check: every page below the high-water
/// mark is reachable exactly once.
public final class BoltWriter {
    /// What was written.
    public struct Summary: Sendable, Equatable {
        /// The file's size: the high-water mark times the page size.
        public var fileSize: Int64
        /// Pages 0 ..< highWaterMark are in use.
        public var highWaterMark: UInt64
        public var pageSize: Int
        public var bucketCount: Int
        /// Keys in all buckets together.
        public var keyCount: Int
        /// The most separators (first key and page id of a written page) held in memory at once.
        public var peakRetainedSeparators: Int
    }

    public let path: String
    public let pageSize: Int
    private let file: FileDescriptor
    private let sink: PageSink
    private var current: (name: [UInt8], tree: BucketTreeBuilder)?
    /// Top-level bucket name → its value in the root bucket (bucket header, plus the page when inline).
    private var rootEntries: [(name: [UInt8], value: [UInt8])] = []
    private var names: Set<[UInt8]> = []
    private var finished = false
    private var keyCount = 0
    /// The transaction id of meta page 0; page 1 gets one less, so both describe the same tree (like `bbolt`'s
    /// `Tx.WriteTo`) and either can stand in for the other.
    private let transactionID: UInt64 = 2

    /// The separators held in memory right now, across every level of the bucket being written.
    public var retainedSeparatorCount: Int { current?.tree.retainedSeparators ?? 0 }
    /// The most separators that were held at once so far.
    public private(set) var peakRetainedSeparatorCount = 0

    /// Whether `finish` fsyncs the file.
    public let durable: Bool

    /// Creates (or truncates) the file at `path`. `durable: false` skips the fsync at `finish`: for a scratch copy
    /// that is read back at once and removed (see `EtcdSnapshotExport`), where the fsync only waits for the disk.
    public init(path: String, pageSize: Int = BoltFormat.defaultPageSize, durable: Bool = true) throws(BoltError) {
        guard pageSize >= 1024, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            throw BoltError(.invalidArgument, path: path, "page size \(pageSize) is not a power of two in 1024...65536")
        }
        self.path = path
        self.pageSize = pageSize
        self.durable = durable
        file = try FileDescriptor.create(path)
        sink = PageSink(file: file, pageSize: pageSize)
    }

    /// Starts a top-level bucket; the previous one must have been ended. Names must be unique and non-empty.
    public func beginBucket(_ name: [UInt8]) throws(BoltError) {
        try checkOpen()
        if let current {
            throw BoltError(
                .invalidArgument, path: path,
                "bucket \(printable(name)) begun while bucket \(printable(current.name)) is still open")
        }
        try checkKey(name, what: "bucket name")
        guard !names.contains(name) else {
            throw BoltError(.invalidArgument, path: path, "bucket \(printable(name)) was already written")
        }
        names.insert(name)
        current = (name, BucketTreeBuilder(pageSize: pageSize, allowInline: true))
    }

    /// Adds a key/value to the open bucket. Keys must be non-empty, at most 32768 bytes and strictly ascending.
    public func put(key: [UInt8], value: [UInt8]) throws(BoltError) {
        guard var open = current else {
            throw BoltError(.invalidArgument, path: path, "put of key \(printable(key)) with no bucket open")
        }
        try checkKey(key, what: "key")
        guard value.count <= BoltFormat.maxValueSize else {
            throw BoltError(
                .invalidArgument, path: path,
                "value of key \(printable(key)) is \(value.count) bytes; bbolt allows \(BoltFormat.maxValueSize)")
        }
        if let previous = open.tree.previousKey, byteOrder(previous, key) >= 0 {
            throw BoltError(
                .invalidArgument, path: path,
                "keys must ascend: \(printable(key)) follows \(printable(previous)) in bucket \(printable(open.name))")
        }
        current = nil  // keep the builder uniquely referenced while it changes
        defer { current = open }
        try open.tree.put(key: key, value: value, flags: 0, sink: sink)
        keyCount += 1
        let retained = open.tree.retainedSeparators
        if retained > peakRetainedSeparatorCount { peakRetainedSeparatorCount = retained }
    }

    /// Finishes the open bucket: its remaining pages are written (or it is kept for inlining).
    public func endBucket() throws(BoltError) {
        guard var open = current else {
            throw BoltError(.invalidArgument, path: path, "endBucket with no bucket open")
        }
        current = nil
        var value = [UInt8](repeating: 0, count: BoltFormat.bucketHeaderSize)
        switch try open.tree.finish(sink: sink) {
        case .inline(let page):
            value.append(contentsOf: page)
        case .page(let id):
            value.storeLE(id, at: 0)
        }
        rootEntries.append((open.name, value))
    }

    /// Writes a whole bucket from a sequence of ascending key/value pairs.
    public func writeBucket(_ name: [UInt8], _ entries: some Sequence<(key: [UInt8], value: [UInt8])>)
        throws(BoltError)
    {
        try beginBucket(name)
        for entry in entries { try put(key: entry.key, value: entry.value) }
        try endBucket()
    }

    /// Writes the root bucket, the freelist and the meta pages, syncs and closes the file.
    public func finish() throws(BoltError) -> Summary {
        try checkOpen()
        if current != nil { try endBucket() }
        finished = true
        defer { file.close() }

        rootEntries.sort { byteOrder($0.name, $1.name) < 0 }
        var root = BucketTreeBuilder(pageSize: pageSize, allowInline: false)
        for entry in rootEntries {
            try root.put(key: entry.name, value: entry.value, flags: bucketLeafFlag, sink: sink)
        }
        guard case .page(let rootPageID) = try root.finish(sink: sink) else {
            throw BoltError(.invalidArgument, path: path, "internal error: the root bucket was inlined")
        }

        // An empty freelist: every page below the high-water mark is in use.
        let freelistPageID = sink.nextPageID
        var freelist = [UInt8](repeating: 0, count: pageSize)
        freelist.storeLE(freelistPageID, at: 0)
        freelist.storeLE(BoltPageFlags.freelist.rawValue, at: 8)
        try sink.append(freelist, pages: 1)
        try sink.flush()

        let highWaterMark = sink.nextPageID
        var meta = BoltMeta(
            pageSize: UInt32(pageSize), rootPageID: rootPageID, freelistPageID: freelistPageID,
            highWaterMark: highWaterMark, transactionID: transactionID)
        try file.write(meta.encodedPage(id: 0), at: 0)
        meta.transactionID = transactionID - 1
        try file.write(meta.encodedPage(id: 1), at: Int64(pageSize))
        if durable { try file.sync() }
        return Summary(
            fileSize: Int64(highWaterMark) * Int64(pageSize), highWaterMark: highWaterMark, pageSize: pageSize,
            bucketCount: rootEntries.count, keyCount: keyCount, peakRetainedSeparators: peakRetainedSeparatorCount)
    }

    private func checkOpen() throws(BoltError) {
        if finished { throw BoltError(.invalidArgument, path: path, "the writer has already finished") }
    }

    private func checkKey(_ key: [UInt8], what: String) throws(BoltError) {
        guard !key.isEmpty else { throw BoltError(.invalidArgument, path: path, "\(what) is empty; bbolt needs one") }
        guard key.count <= BoltFormat.maxKeySize else {
            throw BoltError(
                .invalidArgument, path: path,
                "\(what) \(printable(key)) is \(key.count) bytes; bbolt allows \(BoltFormat.maxKeySize)")
        }
    }
}
