/// Reads a bbolt file without mapping or loading it: pages are fetched with `pread` as a cursor needs them.
///
/// Opening validates both meta pages the way bbolt does (magic, version, FNV-64a checksum) and uses the valid one
/// with the highest transaction id; then it checks that the chosen meta is coherent with the file (the root and
/// freelist pages lie below the high-water mark, and the file is long enough to hold every page). Files written by
/// real bbolt — with a freelist, free pages between live ones, inline buckets, a file longer than the high-water
/// mark, or a snapshot's sha256 trailer after the pages — read like any other.
public final class BoltReader {
    /// Why a meta page was passed over.
    public struct MetaProblem: Sendable, Equatable, CustomStringConvertible {
        public var pageID: UInt64
        public var kind: BoltError.Kind
        public var message: String
        public var description: String { "meta page \(pageID): \(message)" }
    }

    public let path: String
    /// The file's size in bytes (at least `dataSize`; more with a trailer or preallocated space).
    public let fileSize: Int64
    public let pageSize: Int
    /// The meta page in use.
    public let meta: BoltMeta
    /// Which meta page (0 or 1) is in use.
    public let metaPageID: UInt64
    /// The other meta page's problem, when it failed validation (a torn write, a bit flip); nil when both are valid.
    public let rejectedMeta: MetaProblem?
    let file: FileDescriptor

    /// The bytes the database occupies: the high-water mark times the page size (bbolt's `Tx.Size`).
    public var dataSize: Int64 { Int64(meta.highWaterMark) * Int64(pageSize) }

    /// The deepest tree a cursor follows; bbolt trees of real data are a handful of levels deep.
    static let maximumDepth = 64

    public init(path: String) throws(BoltError) {
        self.path = path
        file = try FileDescriptor.openForReading(path)
        fileSize = try file.size()
        guard fileSize > 0 else { throw BoltError(.truncated, path: path, "the file is empty (0 bytes)") }
        let minimum = Int64(BoltFormat.pageHeaderSize + BoltFormat.metaSize)
        guard fileSize >= minimum else {
            throw BoltError(
                .truncated, path: path,
                "the file is \(fileSize) bytes, too short to hold a bbolt meta page (\(minimum) bytes)", offset: 0)
        }
        let choice = try BoltReader.chooseMeta(file: file, fileSize: fileSize)
        meta = choice.meta
        metaPageID = choice.pageID
        rejectedMeta = choice.rejected
        pageSize = Int(choice.meta.pageSize)
        try checkCoherence()
    }

    // MARK: Meta pages

    private static func readMeta(file: FileDescriptor, pageID: UInt64, offset: Int64, fileSize: Int64) throws(BoltError)
        -> (meta: BoltMeta?, problem: MetaProblem?)
    {
        let needed = BoltFormat.pageHeaderSize + BoltFormat.metaSize
        guard offset + Int64(needed) <= fileSize else {
            return (
                nil,
                MetaProblem(
                    pageID: pageID, kind: .truncated,
                    message: "the file (\(fileSize) bytes) ends before the meta page at offset \(offset)")
            )
        }
        let bytes = try file.read(count: needed, at: offset, pageID: pageID)
        let meta = BoltMeta(decoding: bytes, at: BoltFormat.pageHeaderSize)
        if let failure = meta.validationFailure() {
            return (meta, MetaProblem(pageID: pageID, kind: failure.kind, message: failure.message))
        }
        let pageSize = Int(meta.pageSize)
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            return (
                meta,
                MetaProblem(
                    pageID: pageID, kind: .corrupt,
                    message: "page size \(pageSize) is not a power of two in 512...65536")
            )
        }
        return (meta, nil)
    }

    /// bbolt's choice: the valid meta page with the higher transaction id, else the other valid one.
    private static func chooseMeta(file: FileDescriptor, fileSize: Int64) throws(BoltError) -> (
        meta: BoltMeta, pageID: UInt64, rejected: MetaProblem?
    ) {
        let path = file.path
        let first = try readMeta(file: file, pageID: 0, offset: 0, fileSize: fileSize)
        // Meta page 1 sits one page in; a valid meta 0 says how long a page is. Without one, try the usual sizes and
        // accept a meta 1 that agrees with its own position.
        var second: (meta: BoltMeta?, problem: MetaProblem?)
        if let meta0 = first.meta, first.problem == nil {
            second = try readMeta(file: file, pageID: 1, offset: Int64(meta0.pageSize), fileSize: fileSize)
        } else {
            second = try readMeta(file: file, pageID: 1, offset: 4096, fileSize: fileSize)
            if second.problem != nil {
                for size in [8192, 16384, 32768, 65536, 1024, 2048, 512] {
                    let candidate = try readMeta(file: file, pageID: 1, offset: Int64(size), fileSize: fileSize)
                    if candidate.problem == nil, let m = candidate.meta, Int(m.pageSize) == size {
                        second = candidate
                        break
                    }
                }
            } else if let m = second.meta, m.pageSize != 4096 {
                second.problem = MetaProblem(
                    pageID: 1, kind: .corrupt,
                    message: "meta page 1 at offset 4096 declares a page size of \(m.pageSize)")
            }
        }
        var valid: [(BoltMeta, UInt64)] = []
        if let m = first.meta, first.problem == nil { valid.append((m, 0)) }
        if let m = second.meta, second.problem == nil { valid.append((m, 1)) }
        valid.sort { $0.0.transactionID > $1.0.transactionID }
        if let best = valid.first {
            return (best.0, best.1, first.problem ?? second.problem)
        }
        let problems = [first.problem, second.problem].compactMap { $0 }
        let kinds = problems.map(\.kind)
        let kind: BoltError.Kind =
            kinds.allSatisfy({ $0 == .notBolt })
            ? .notBolt
            : kinds.contains(.checksumMismatch)
                ? .checksumMismatch
                : kinds.contains(.unsupportedVersion)
                    ? .unsupportedVersion
                    : kinds.contains(.truncated) ? .truncated : .corrupt
        let prefix = kind == .notBolt ? "not a bbolt file: " : "no valid meta page: "
        throw BoltError(kind, path: path, prefix + problems.map(\.description).joined(separator: "; "), offset: 0)
    }

    private func checkCoherence() throws(BoltError) {
        let hwm = meta.highWaterMark
        let txid = meta.transactionID
        let metaOffset = Int64(metaPageID) * Int64(pageSize)
        guard hwm >= 3, hwm <= UInt64(Int64.max) / UInt64(pageSize) else {
            throw BoltError(
                .corrupt, path: path, "meta page \(metaPageID) (txid \(txid)) has an impossible high-water mark \(hwm)",
                pageID: metaPageID, offset: metaOffset)
        }
        guard meta.rootPageID >= 2, meta.rootPageID < hwm else {
            throw BoltError(
                .corrupt, path: path,
                "meta page \(metaPageID) (txid \(txid)) puts the root bucket at page \(meta.rootPageID), outside "
                    + "2..<\(hwm)", pageID: metaPageID, offset: metaOffset)
        }
        guard meta.freelistPageID == BoltFormat.noFreelist || (meta.freelistPageID >= 2 && meta.freelistPageID < hwm)
        else {
            throw BoltError(
                .corrupt, path: path,
                "meta page \(metaPageID) (txid \(txid)) puts the freelist at page \(meta.freelistPageID), outside "
                    + "2..<\(hwm)", pageID: metaPageID, offset: metaOffset)
        }
        guard dataSize <= fileSize else {
            throw BoltError(
                .truncated, path: path,
                "the file is truncated: meta page \(metaPageID) (txid \(txid)) says the database spans \(hwm) pages "
                    + "(\(dataSize) bytes) but the file has \(fileSize) bytes", offset: fileSize)
        }
    }

    // MARK: Pages

    /// Reads page `id` (and its overflow pages), checking that it lies below the high-water mark and that its
    /// header carries its own id. `referrer` says who pointed here, for the error message.
    func readPage(_ id: UInt64, referrer: @autoclosure () -> String) throws(BoltError) -> BoltPage {
        let hwm = meta.highWaterMark
        guard id >= 2, id < hwm else {
            throw BoltError(
                .corrupt, path: path,
                "\(referrer()) refers to page \(id), outside the data pages 2..<\(hwm) (the high-water mark)",
                pageID: id)
        }
        let offset = Int64(id) * Int64(pageSize)
        var bytes = try file.read(count: pageSize, at: offset, pageID: id)
        let headerID = bytes.loadLE(UInt64.self, at: 0)
        guard headerID == id else {
            throw BoltError(
                .corrupt, path: path, "page header says it is page \(headerID) (reached from \(referrer()))",
                pageID: id, offset: offset)
        }
        let overflow = UInt64(bytes.loadLE(UInt32.self, at: 12))
        if overflow > 0 {
            guard id + overflow < hwm else {
                throw BoltError(
                    .corrupt, path: path,
                    "page claims \(overflow) overflow pages, running past the high-water mark \(hwm)", pageID: id,
                    offset: offset)
            }
            bytes += try file.read(
                count: Int(overflow) * pageSize, at: offset + Int64(pageSize), pageID: id)
        }
        return try BoltPage(bytes: bytes, origin: .file(id), path: path, fileOffset: offset)
    }

    // MARK: Buckets

    /// The root of a bucket, decoded from its value in the parent: a page id, or an inline page.
    enum BucketRoot {
        case page(UInt64)
        case inline(BoltPage)
    }

    func bucketRoot(name: [UInt8], value: [UInt8], parentPage: UInt64?) throws(BoltError) -> BucketRoot {
        guard value.count >= BoltFormat.bucketHeaderSize else {
            throw BoltError(
                .corrupt, path: path,
                "bucket \(printable(name)) has a \(value.count)-byte header; bbolt's is \(BoltFormat.bucketHeaderSize)",
                pageID: parentPage)
        }
        let root = value.loadLE(UInt64.self, at: 0)
        if root != 0 { return .page(root) }
        let page = try BoltPage(
            bytes: Array(value[BoltFormat.bucketHeaderSize...]), origin: .inline(bucket: name, parent: parentPage),
            path: path, fileOffset: nil)
        guard page.isLeaf else {
            throw BoltPage.error(
                page.origin, path: path, nil, "an inline bucket's page must be a leaf, not \(page.flags)")
        }
        return .inline(page)
    }

    /// The names of the top-level buckets, in bbolt's (byte) order.
    public func bucketNames() throws(BoltError) -> [[UInt8]] {
        var cursor = try rootCursor()
        var names: [[UInt8]] = []
        while let entry = try cursor.next() {
            if entry.isBucket { names.append(entry.key) }
        }
        return names
    }

    /// A cursor over the root bucket, whose entries are the top-level buckets (values: bucket headers).
    public func rootCursor() throws(BoltError) -> BoltCursor {
        try BoltCursor(reader: self, bucket: [], root: .page(meta.rootPageID), referrer: "the meta page")
    }

    /// A cursor over the keys of the top-level bucket `name`, in order.
    public func cursor(bucket name: [UInt8]) throws(BoltError) -> BoltCursor {
        var root = try rootCursor()
        while let entry = try root.next() {
            let order = byteOrder(entry.key, name)
            if order > 0 { break }
            if order == 0 {
                guard entry.isBucket else {
                    throw BoltError(
                        .corrupt, path: path, "the root holds \(printable(name)) as a plain key, not a bucket",
                        pageID: root.pageID)
                }
                return try BoltCursor(
                    reader: self, bucket: name,
                    root: bucketRoot(name: name, value: entry.value, parentPage: root.pageID),
                    referrer: "bucket \(printable(name))")
            }
        }
        throw BoltError(.bucketNotFound, path: path, "no bucket named \(printable(name))")
    }

    /// Whether the top-level bucket `name` exists.
    public func hasBucket(_ name: [UInt8]) throws(BoltError) -> Bool {
        do {
            _ = try cursor(bucket: name)
            return true
        } catch  where error.kind == .bucketNotFound {
            return false
        }
    }

    // MARK: Freelist

    /// The page ids the freelist page records as free. Empty when the freelist is not persisted (etcd runs bbolt
    /// with `NoFreelistSync`, so its snapshots have none): bbolt then treats every unreachable page as free.
    public func freePageIDs() throws(BoltError) -> [UInt64] {
        guard meta.freelistPageID != BoltFormat.noFreelist else { return [] }
        let page = try readPage(meta.freelistPageID, referrer: "the meta page's freelist")
        let offset = Int64(meta.freelistPageID) * Int64(pageSize)
        guard page.flags.contains(.freelist) else {
            throw BoltError(
                .corrupt, path: path, "the freelist page is a \(page.flags) page", pageID: meta.freelistPageID,
                offset: offset)
        }
        var start = BoltFormat.pageHeaderSize
        var count = page.count
        if count == 0xFFFF {
            // Too many for the 16-bit count: the first id slot holds the real count.
            guard page.bytes.count >= start + 8 else {
                throw BoltError(.corrupt, path: path, "freelist page too short", pageID: meta.freelistPageID)
            }
            let real = page.bytes.loadLE(UInt64.self, at: start)
            guard real <= UInt64(page.bytes.count / 8) else {
                throw BoltError(
                    .corrupt, path: path, "freelist claims \(real) ids, more than its page can hold",
                    pageID: meta.freelistPageID, offset: offset)
            }
            count = Int(real)
            start += 8
        }
        guard start + count * 8 <= page.bytes.count else {
            throw BoltError(
                .corrupt, path: path, "freelist claims \(count) ids, more than its page can hold",
                pageID: meta.freelistPageID, offset: offset)
        }
        return (0..<count).map { page.bytes.loadLE(UInt64.self, at: start + $0 * 8) }
    }
}
