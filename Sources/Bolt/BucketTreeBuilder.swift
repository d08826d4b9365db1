/// Builds one bucket's B+tree bottom-up from keys that arrive in ascending order, writing each page as soon as it
/// is full.
///
/// Level 0 is the leaf page being filled. Each written page leaves one separator (its first key and page id) in the
/// branch page being filled one level up; when that branch page is full it is written too and leaves a separator
/// another level up. So memory holds at most one partly filled page per level — a few hundred separators for
/// millions of keys — never the values and never a separator per leaf. Finishing writes the partly filled pages
/// bottom-up and returns the root.
struct BucketTreeBuilder {
    /// Where a finished bucket's tree is.
    enum Root {
        /// The bucket is one small leaf, stored inside the parent's value (bbolt's inline bucket): the bytes are the
        /// leaf page, header included, with page id 0.
        case inline([UInt8])
        /// The root page of the bucket's tree.
        case page(UInt64)
    }

    let pageSize: Int
    /// Whether a small bucket may be inlined in its parent (never for the root bucket, which the meta points to).
    let allowInline: Bool
    private var leaf: PageAccumulator
    /// `branches[i]` is the branch page being filled at height i + 1.
    private var branches: [PageAccumulator] = []
    private var leavesWritten = 0
    private var lastKey: [UInt8]?
    private(set) var keyCount = 0

    init(pageSize: Int, allowInline: Bool) {
        self.pageSize = pageSize
        self.allowInline = allowInline
        leaf = PageAccumulator(isLeaf: true, pageSize: pageSize)
    }

    /// The separators held for branch pages not yet written.
    var retainedSeparators: Int { branches.reduce(0) { $0 + $1.count } }

    /// The key that the next `put` must exceed, if any.
    var previousKey: [UInt8]? { lastKey }

    /// Adds a key/value; the caller has checked that keys ascend and sizes are within bbolt's limits.
    mutating func put(key: [UInt8], value: [UInt8], flags: UInt32, sink: PageSink) throws(BoltError) {
        let size = PageAccumulator.elementByteSize(key: key, value: value)
        if leaf.count > 0
            && (leaf.byteSize + size > pageSize || leaf.count >= BoltFormat.maxElementsPerPage)
        {
            try flushLeaf(sink: sink)
        }
        leaf.appendLeaf(key: key, value: value, flags: flags)
        lastKey = key
        keyCount += 1
    }

    private mutating func flushLeaf(sink: PageSink) throws(BoltError) {
        let id = try sink.write(leaf)
        leavesWritten += 1
        let key = leaf.firstKey
        leaf.removeAll()
        try addSeparator(key: key, child: id, height: 0, sink: sink)
    }

    /// Adds a child to the branch page being filled at `height` + 1, writing that page first if it is full.
    private mutating func addSeparator(key: [UInt8], child: UInt64, height: Int, sink: PageSink) throws(BoltError) {
        if branches.count == height {
            guard height < BoltReader.maximumDepth else {
                throw BoltError(.invalidArgument, path: sink.file.path, "the tree would exceed \(height) levels")
            }
            branches.append(PageAccumulator(isLeaf: false, pageSize: pageSize))
        }
        let size = BoltFormat.elementSize + key.count
        // A branch page takes at least two children even when their keys overflow a page: with one, every level
        // would have as many pages as the level below and the tree would never narrow to a root.
        if branches[height].count >= 2
            && (branches[height].byteSize + size > pageSize
                || branches[height].count >= BoltFormat.maxElementsPerPage)
        {
            let id = try sink.write(branches[height])
            let first = branches[height].firstKey
            branches[height].removeAll()
            try addSeparator(key: first, child: id, height: height + 1, sink: sink)
        }
        branches[height].appendBranch(key: key, child: child)
    }

    /// Writes what is still in memory and returns where the tree's root is.
    mutating func finish(sink: PageSink) throws(BoltError) -> Root {
        if leavesWritten == 0 {
            // One leaf holds the whole bucket: inline it like bbolt does when it is at most a quarter page.
            if allowInline && leaf.byteSize <= pageSize / 4 {
                return .inline(leaf.encode(id: 0, pageSize: pageSize, padded: false).bytes)
            }
            let id = try sink.write(leaf)
            leaf.removeAll()
            return .page(id)
        }
        try flushLeaf(sink: sink)
        var height = 0
        while height < branches.count - 1 {
            let id = try sink.write(branches[height])
            let first = branches[height].firstKey
            branches[height].removeAll()
            try addSeparator(key: first, child: id, height: height + 1, sink: sink)
            height += 1
        }
        // The top level never wrote a page (it would have created a level above), so it is the root — unless it
        // holds a single child, which then is the root itself.
        let top = branches.count - 1
        if branches[top].count == 1, let only = branches[top].onlyChild {
            branches.removeAll()
            return .page(only)
        }
        let id = try sink.write(branches[top])
        branches.removeAll()
        return .page(id)
    }
}
