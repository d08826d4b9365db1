/// Hands out page ids in increasing order and appends each page to the file as soon as it is complete.
///
/// Pages 0 and 1 are the meta pages, written last by `BoltWriter`; every other page is allocated at the end of
/// the file and written once, so the file grows strictly sequentially through a fixed-size buffer.
final class PageSink {
    let file: FileDescriptor
    let pageSize: Int
    /// The next page id to hand out: the high-water mark so far.
    private(set) var nextPageID: UInt64 = 2
    private var buffer: [UInt8] = []
    private var bufferStart: Int64
    private let bufferLimit = 1 << 20
    private(set) var pagesWritten: UInt64 = 0

    init(file: FileDescriptor, pageSize: Int) {
        self.file = file
        self.pageSize = pageSize
        bufferStart = Int64(2 * pageSize)
        buffer.reserveCapacity(bufferLimit + pageSize)
    }

    /// Encodes the accumulated elements as the next page(s) of the file and returns the page id.
    func write(_ accumulator: PageAccumulator) throws(BoltError) -> UInt64 {
        let id = nextPageID
        let (bytes, pages) = accumulator.encode(id: id, pageSize: pageSize)
        try append(bytes, pages: pages)
        return id
    }

    /// Appends whole pages already encoded (their header must carry `nextPageID`).
    func append(_ bytes: [UInt8], pages: Int) throws(BoltError) {
        nextPageID += UInt64(pages)
        pagesWritten += UInt64(pages)
        if bytes.count >= bufferLimit {
            try flush()
            try file.write(bytes, at: bufferStart)
            bufferStart += Int64(bytes.count)
            return
        }
        buffer.append(contentsOf: bytes)
        if buffer.count >= bufferLimit { try flush() }
    }

    func flush() throws(BoltError) {
        guard !buffer.isEmpty else { return }
        try file.write(buffer, at: bufferStart)
        bufferStart += Int64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }
}
