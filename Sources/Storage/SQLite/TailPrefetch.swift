import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads into the operating system's page cache, on a thread of its own and a little ahead of a running incremental
/// vacuum, the pages the vacuum's next steps read: each live page at the end of the file, which it moves into a free
/// slot, and the page pointing at it, whose pointer it rewrites (the pointer map names both: `PointerMapEntry`).
///
/// Why: with the free list's trunks read ahead (`FreeListPrefetch`), the long defragment steps left were single
/// page moves waiting 20-720 ms for one to three reads of exactly these pages from a disk busy with 64 writing
/// clients, on the apply loop. Read here, they wait on this thread instead.
///
/// The owner (the apply loop) tells it where the vacuum is after each step (`onVacuumProgress`); it reads no more
/// than `window` pages below that, so what it reads is still cached when the vacuum gets there, and never below the
/// size the file will have (nothing there moves). Like `FreeListPrefetch` it reads the file without SQLite, so an
/// entry may be a checkpoint old: only a hint, and wrong hints only cost a read.
public final class TailPrefetch: @unchecked Sendable {
    /// Guards `cursor`, `stopping`, `waiting`, `finished` and `read`.
    private let condition = NSCondition()
    private var cursor: TailPrefetchCursor
    private var stopping = false
    /// The thread has read all it may and waits for the vacuum to move.
    private var waiting = false
    private var finished = false
    private var read = 0
    private let fd: Int32
    private let layout: PointerMapLayout
    private let window: Int
    /// Set once, by the owner, before the thread exists.
    private var started = false

    /// Opens the file and reads its header; nil when it is not an auto-vacuum SQLite database (nothing to read ahead).
    /// `end` and `freePages`: the file's page count and free list before the first step.
    public init?(path: String, end: Int, freePages: Int, window: Int = 4096, chunk: Int = 256) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        guard let layout = SQLiteFileHeader(fd: fd)?.pointerMaps else {
            close(fd)
            return nil
        }
        self.fd = fd
        self.layout = layout
        self.window = window
        self.cursor = TailPrefetchCursor(end: end, freePages: freePages, window: window, chunk: chunk)
    }

    deinit {
        if !started { close(fd) }
    }

    /// Starts the thread, which closes the file when `stop()` ends it. Once only.
    public func start() {
        precondition(!started, "started twice")
        started = true
        let thread = Thread { [self] in run() }
        thread.name = "defragment-read-ahead"
        thread.start()
    }

    /// The vacuum's step is committed: the file now has `end` pages, `freePages` of them free. Does not block.
    public func onVacuumProgress(end: Int, freePages: Int) {
        condition.lock()
        cursor.onVacuumProgress(end: end, freePages: freePages)
        waiting = false
        condition.broadcast()
        condition.unlock()
    }

    /// Ends the thread after the chunk it reads, without waiting for it. Returns the pages read so far, for the log.
    @discardableResult
    public func stop() -> Int {
        condition.lock()
        defer { condition.unlock() }
        stopping = true
        condition.broadcast()
        return read
    }

    /// The pages read so far: live pages, their parents and the map pages naming them.
    public var pagesRead: Int {
        condition.lock()
        defer { condition.unlock() }
        return read
    }

    /// Waits until the thread has read all it may before the vacuum moves, or has ended (tests).
    public func waitUntilIdle() {
        condition.lock()
        defer { condition.unlock() }
        while !waiting && !finished { condition.wait() }
    }

    private func run() {
        defer {
            close(fd)
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        var map = [UInt8](repeating: 0, count: layout.pageSize)
        var mapPage = 0
        var page = [UInt8](repeating: 0, count: layout.pageSize)
        // Parents are often shared (one interior page points at hundreds): read each once per window.
        var parentsRead = Set<Int>()
        while true {
            condition.lock()
            var next: ClosedRange<Int>?
            while !stopping {
                next = cursor.nextChunk()
                if next != nil { break }
                waiting = true
                condition.broadcast()
                condition.wait()
            }
            condition.unlock()
            guard let chunk = next else { return }
            var chunkRead = 0
            for number in chunk.reversed() where layout.hasEntry(number) {
                let mapNumber = layout.mapPage(for: number)
                if mapNumber != mapPage {
                    // A short read: a checkpoint truncated the file below this page meanwhile (the vacuum passed it).
                    guard readPage(mapNumber, into: &map) else {
                        mapPage = 0
                        continue
                    }
                    mapPage = mapNumber
                    chunkRead += 1
                }
                guard let entry = PointerMapEntry(map, at: layout.entryOffset(for: number)) else { continue }
                for wanted in entry.pagesReadToMove(number) {
                    if wanted != number {
                        if parentsRead.count >= 4 * window { parentsRead.removeAll(keepingCapacity: true) }
                        guard parentsRead.insert(wanted).inserted else { continue }
                    }
                    if readPage(wanted, into: &page) { chunkRead += 1 }
                }
            }
            condition.lock()
            read += chunkRead
            condition.unlock()
        }
    }

    private func readPage(_ number: Int, into buffer: inout [UInt8]) -> Bool {
        pread(fd, &buffer, layout.pageSize, off_t(number - 1) * off_t(layout.pageSize)) == layout.pageSize
    }
}

/// Where `TailPrefetch` reads next, as a value: the vacuum works down from the end of the file to the size it will
/// have (`floor`); the read-ahead works down from the end too, at most `window` pages ahead of it, in chunks.
public struct TailPrefetchCursor: Equatable, Sendable {
    public let window: Int
    public let chunk: Int
    /// The highest page not read ahead yet.
    public private(set) var next: Int
    /// The file's page count after the vacuum's last step.
    public private(set) var end: Int
    /// The file's size once no page is free: nothing at or below it moves.
    public private(set) var floor: Int

    public init(end: Int, freePages: Int, window: Int, chunk: Int) {
        precondition(window > 0 && chunk > 0)
        self.window = window
        self.chunk = chunk
        self.next = end
        self.end = end
        self.floor = max(end - freePages, 0)
    }

    /// A step is committed: the end moved down (and the read-ahead with it if the vacuum passed it).
    public mutating func onVacuumProgress(end: Int, freePages: Int) {
        self.end = end
        floor = max(end - freePages, 0)
        next = min(next, end)
    }

    /// The pages to read next, or nil when the read-ahead is `window` pages ahead of the vacuum or at the floor.
    public mutating func nextChunk() -> ClosedRange<Int>? {
        let low = max(floor + 1, end - window + 1, next - chunk + 1, 1)
        guard next >= low else { return nil }
        defer { next = low - 1 }
        return low...next
    }
}
