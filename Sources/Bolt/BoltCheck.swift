/// A bit per page, so checking a large file costs an eighth of a byte per page.
private struct PageBitmap {
    private var words: [UInt64]
    init(pages: UInt64) { words = [UInt64](repeating: 0, count: Int((pages + 63) / 64)) }
    subscript(id: UInt64) -> Bool {
        get { words[Int(id / 64)] & (1 << (id % 64)) != 0 }
        set {
            if newValue { words[Int(id / 64)] |= 1 << (id % 64) } else { words[Int(id / 64)] &= ~(1 << (id % 64)) }
        }
    }
}

extension BoltReader {
    /// bbolt's consistency check (`Tx.Check`, which `etcdctl snapshot status` runs first): no page freed twice,
    /// every page of every bucket (nested ones too) referenced once, not free, and a branch or leaf page, and every
    /// page below the high-water mark either reachable or free. Returns the problems in bbolt's wording; an empty
    /// array means the file passes. Unreadable pages throw as they do for a cursor.
    public func check() throws(BoltError) -> [String] {
        let hwm = meta.highWaterMark
        var problems: [String] = []
        var freed = PageBitmap(pages: hwm)
        for id in try freePageIDs() {
            guard id < hwm else {
                problems.append("page \(id): freed beyond the high-water mark \(hwm)")
                continue
            }
            if freed[id] { problems.append("page \(id): already freed") }
            freed[id] = true
        }
        var reachable = PageBitmap(pages: hwm)
        reachable[0] = true
        reachable[1] = true
        if meta.freelistPageID != BoltFormat.noFreelist {
            let page = try readPage(meta.freelistPageID, referrer: "the meta page's freelist")
            for i in 0...UInt64(page.overflow) { reachable[meta.freelistPageID + i] = true }
        }

        // Depth-first over every bucket's pages; nested buckets are queued as they are found in leaves.
        var buckets: [(name: [UInt8], root: BucketRoot)] = [([], .page(meta.rootPageID))]
        while let bucket = buckets.popLast() {
            guard case .page(let rootID) = bucket.root else {
                if case .inline(let page) = bucket.root {
                    try collectNested(in: page, parent: bucket.name, into: &buckets)
                }
                continue
            }
            var pending: [(id: UInt64, depth: Int)] = [(rootID, 0)]
            while let (id, depth) = pending.popLast() {
                guard depth < BoltReader.maximumDepth else {
                    throw BoltError(
                        .corrupt, path: path, "tree deeper than \(BoltReader.maximumDepth) levels", pageID: id)
                }
                let page = try readPage(id, referrer: "bucket \(printable(bucket.name))")
                var repeated = false
                for i in 0...UInt64(page.overflow) {
                    if reachable[id + i] {
                        problems.append("page \(id + i): multiple references")
                        repeated = true
                    }
                    reachable[id + i] = true
                }
                if freed[id] { problems.append("page \(id): reachable freed") }
                if repeated { continue }  // already walked (or a cycle): don't walk it again
                if page.isBranch {
                    try page.checkElementArea(path: path, offset: nil)
                    for i in 0..<page.count {
                        pending.append((try page.branchElement(i, path: path, offset: nil).child, depth + 1))
                    }
                } else if page.isLeaf {
                    try collectNested(in: page, parent: bucket.name, into: &buckets)
                } else {
                    problems.append("page \(id): invalid type: \(page.flags)")
                }
            }
        }
        // Without a persisted freelist (etcd opens bbolt with NoFreelistSync), bbolt derives the free pages from
        // this very walk, so every unreachable page counts as free.
        if meta.freelistPageID != BoltFormat.noFreelist {
            for id in 0..<hwm where !reachable[id] && !freed[id] {
                problems.append("page \(id): unreachable unfreed")
            }
        }
        return problems
    }

    private func collectNested(
        in page: BoltPage, parent: [UInt8], into buckets: inout [(name: [UInt8], root: BucketRoot)]
    ) throws(BoltError) {
        try page.checkElementArea(path: path, offset: nil)
        for i in 0..<page.count {
            let element = try page.leafElement(i, path: path, offset: nil)
            guard element.flags & bucketLeafFlag != 0 else { continue }
            let name = Array(page.bytes[element.key])
            let root = try bucketRoot(name: name, value: Array(page.bytes[element.value]), parentPage: page.pageID)
            buckets.append((name, root))
        }
    }
}
