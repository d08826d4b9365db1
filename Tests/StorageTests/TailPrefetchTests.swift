import Foundation
import Storage
import TestSupport
import Testing

/// The defragment's read-ahead: where SQLite's pointer map is, what it says, and how far ahead of the vacuum the
/// read-ahead goes.
@Suite struct TailPrefetchTests {
    /// An incremental-vacuum database with b-tree pages several levels deep, overflow chains, and free pages spread
    /// through the file: rows of random sizes, a seeded random two thirds of them deleted.
    static func fragmentedDatabase(_ dir: TemporaryDirectory, random: inout SeededRandom) throws -> String {
        let path = dir.path + "/db"
        let db = try SQLiteConnection(path: path)
        try db.execute(
            """
            PRAGMA auto_vacuum=INCREMENTAL;
            CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);
            CREATE INDEX t_v ON t(substr(v, 1, 40));
            """)
        try db.transaction {
            let insert = try db.statement("INSERT INTO t(k, v) VALUES (?, randomblob(?))")
            for k in 0..<3000 {
                // Mostly a few hundred bytes, one in ten a chain of overflow pages.
                let size =
                    Int64.random(in: 1...10, using: &random) == 1 ? 20_000 : Int64.random(in: 50...900, using: &random)
                try insert.bind(1, Int64(k)).bind(2, size).run()
                insert.reset()
            }
            let delete = try db.statement("DELETE FROM t WHERE k = ?")
            for k in 0..<3000 where Int.random(in: 0..<3, using: &random) != 0 {
                try delete.bind(1, Int64(k)).run()
                delete.reset()
            }
        }
        return path
    }

    /// A fragmented database (with its seed, printed), open read-only, and its page and free-page counts.
    struct Fragmented {
        let seed: UInt64
        let dir = TemporaryDirectory()
        let path: String
        let db: SQLiteConnection
        let pages: Int
        let free: Int

        init(_ test: String = #function) throws {
            var random = SeededRandom(test)
            seed = random.seed
            path = try TailPrefetchTests.fragmentedDatabase(dir, random: &random)
            db = try SQLiteConnection(path: path, readOnly: true)
            pages = Int(try db.scalar("PRAGMA page_count") ?? 0)
            free = Int(try db.scalar("PRAGMA freelist_count") ?? 0)
        }
    }

    /// Each used page's entry as SQLite's `dbstat` table describes the tree. It names pages by path: "/" a root,
    /// "/00a/" the root's child at cell 10, "/00a/003+000000" the first overflow page of cell 3 on "/00a/",
    /// "/00a/003+000001" the next one.
    static func entriesFromTheTree(_ db: SQLiteConnection) throws -> [Int: PointerMapEntry] {
        var pageAt: [String: Int] = [:]
        var rows: [(name: String, path: String, page: Int)] = []
        let stat = try db.statement("SELECT name, path, pageno FROM dbstat")
        while try stat.step() {
            let row = (name: stat.string(0), path: stat.string(1), page: Int(stat.int64(2)))
            pageAt[row.name + row.path] = row.page
            rows.append(row)
        }
        var expected: [Int: PointerMapEntry] = [:]
        for row in rows where row.page > 1 {
            if row.path == "/" {
                expected[row.page] = PointerMapEntry(kind: .root, parent: 0)
            } else if let plus = row.path.lastIndex(of: "+") {
                let cell = row.path[..<plus]
                let cellPage = String(cell[...(try #require(cell.lastIndex(of: "/")))])
                let index = try #require(Int(row.path[row.path.index(after: plus)...], radix: 16))
                let parent =
                    index == 0
                    ? try #require(pageAt[row.name + cellPage])
                    : try #require(pageAt[row.name + cell + "+" + String(format: "%06x", index - 1)])
                expected[row.page] = PointerMapEntry(kind: index == 0 ? .firstOverflow : .laterOverflow, parent: parent)
            } else {
                let trimmed = row.path.dropLast()
                let parentPath = String(trimmed[...(try #require(trimmed.lastIndex(of: "/")))])
                expected[row.page] = PointerMapEntry(kind: .btree, parent: try #require(pageAt[row.name + parentPath]))
            }
        }
        return expected
    }

    /// Every page's entry, decoded from the file at the place `PointerMapLayout` says, matches the tree SQLite's own
    /// `dbstat` table describes: roots, b-tree pages under their parents, first overflow pages under the page holding
    /// the cell, later ones under the page before, and every other page free.
    @Test func thePointerMapSaysWhatSQLitesTreeSays() throws {
        let f = try Fragmented()
        let (seed, path, db, pageCount, free) = (f.seed, f.path, f.db, f.pages, f.free)
        #expect(free > 100, "seed \(seed)")

        let expected = try Self.entriesFromTheTree(db)
        #expect(expected.values.contains { $0.kind == .laterOverflow }, "seed \(seed)")
        #expect(expected.values.contains { $0.kind == .btree }, "seed \(seed)")

        let file = try Data(contentsOf: URL(fileURLWithPath: path))
        let layout = PointerMapLayout(pageSize: 4096, reservedBytes: Int(file[20]))
        func page(_ number: Int) -> [UInt8] { Array(file[(number - 1) * 4096..<number * 4096]) }
        var frees = 0
        for number in 2...pageCount {
            guard layout.hasEntry(number) else {
                #expect(expected[number] == nil, "page \(number) is a map page, seed \(seed)")
                continue
            }
            let entry = PointerMapEntry(page(layout.mapPage(for: number)), at: layout.entryOffset(for: number))
            if let wanted = expected[number] {
                #expect(entry == wanted, "page \(number), seed \(seed)")
            } else {
                #expect(entry?.kind == .free, "page \(number), seed \(seed)")
                frees += 1
            }
        }
        #expect(frees == free, "seed \(seed)")
    }

    /// The page holding the byte at 1 GiB is never used; when a map page would fall on it, SQLite puts it on the page
    /// after, which then maps the pages up to the next one.
    @Test func aMapPageThatWouldHoldTheLockByteMovesToThePageAfter() {
        let layout = PointerMapLayout(pageSize: 1024, reservedBytes: 0)
        #expect(layout.period == 205)
        #expect(layout.lockBytePage == 1_048_577)
        #expect((layout.lockBytePage - 2) % layout.period == 0, "a map page would fall on it")
        #expect(!layout.hasEntry(layout.lockBytePage))
        #expect(layout.mapPage(for: 1_048_579) == 1_048_578)
        #expect(!layout.hasEntry(1_048_578))
        #expect(layout.entryOffset(for: 1_048_579) == 0)
        #expect(layout.mapPage(for: 1_048_576) == 1_048_577 - 205)
        #expect(layout.mapPage(for: 2) == 2 && !layout.hasEntry(2) && layout.entryOffset(for: 3) == 0)
    }

    /// The vacuum reads a live page and its parent to move it; a free page or a root it does not read.
    @Test func theReadAheadWantsTheLivePageAndItsParent() {
        #expect(PointerMapEntry(kind: .btree, parent: 7).pagesReadToMove(90) == [90, 7])
        #expect(PointerMapEntry(kind: .laterOverflow, parent: 89).pagesReadToMove(90) == [90, 89])
        #expect(PointerMapEntry(kind: .free, parent: 0).pagesReadToMove(90) == [])
        #expect(PointerMapEntry(kind: .root, parent: 0).pagesReadToMove(3) == [])
        #expect(PointerMapEntry([9, 0, 0, 0, 1], at: 0) == nil, "not a type SQLite writes")
        #expect(PointerMapEntry([5, 0, 0, 1, 2], at: 1) == nil, "past the end")
    }

    /// The cursor reads down from the end in chunks, never more than a window below the vacuum's end, never at or
    /// below the size the file will have; as the vacuum moves down, so does it, and it skips what the vacuum passed.
    @Test func theCursorStaysAWindowAheadOfTheVacuumAndAboveTheFloor() {
        var cursor = TailPrefetchCursor(end: 10_000, freePages: 9_000, window: 300, chunk: 128)
        #expect(cursor.nextChunk() == 9_873...10_000)
        #expect(cursor.nextChunk() == 9_745...9_872)
        #expect(cursor.nextChunk() == 9_701...9_744)
        #expect(cursor.nextChunk() == nil, "a window ahead")
        cursor.onVacuumProgress(end: 9_900, freePages: 8_900)
        #expect(cursor.nextChunk() == 9_601...9_700)
        #expect(cursor.nextChunk() == nil)
        // The vacuum passed the read-ahead (it was slow): it starts again at the end.
        cursor.onVacuumProgress(end: 9_000, freePages: 8_000)
        #expect(cursor.nextChunk() == 8_873...9_000)
        // Near the floor: nothing at or below it.
        cursor.onVacuumProgress(end: 1_100, freePages: 80)
        #expect(cursor.nextChunk() == 1_021...1_100)
        #expect(cursor.nextChunk() == nil)
    }

    /// On a real file: the thread reads the live pages of the first window and their parents, then waits; told the
    /// vacuum moved down, it reads the next window; stopped, it ends.
    @Test func theThreadReadsAWindowAtATime() throws {
        let f = try Fragmented()
        let (seed, path, db, end, free) = (f.seed, f.path, f.db, f.pages, f.free)
        let prefetch = try #require(TailPrefetch(path: path, end: end, freePages: free, window: 64, chunk: 16))
        let live = try Self.entriesFromTheTree(db).filter { $0.value.kind != .root }
        func liveIn(_ pages: ClosedRange<Int>) -> Int { live.keys.count { pages.contains($0) } }
        let firstWindow = try #require(liveIn(end - 63...end) > 0 ? end - 63...end : nil, "seed \(seed)")
        prefetch.start()
        prefetch.waitUntilIdle()
        let first = prefetch.pagesRead
        // Every live page of the window, at most a parent for each, and the one or two map pages covering them.
        #expect(first > liveIn(firstWindow) && first <= 2 * liveIn(firstWindow) + 2, "\(first), seed \(seed)")
        prefetch.onVacuumProgress(end: end - 64, freePages: free - 64)
        prefetch.waitUntilIdle()
        let second = prefetch.pagesRead - first
        #expect(second >= liveIn(end - 127...end - 64), "\(second), seed \(seed)")
        #expect(second <= 2 * liveIn(end - 127...end - 64) + 2, "\(second), seed \(seed)")
        prefetch.stop()
        #expect(TailPrefetch(path: f.dir.path + "/missing", end: 10, freePages: 5) == nil)
    }

    /// A checkpoint may truncate the file below pages the read-ahead was about to read (the vacuum passed them): it
    /// skips the pages gone and goes on with the rest.
    @Test func pagesPastTheFilesEndAreSkippedNotTheEndOfTheReadAhead() throws {
        let f = try Fragmented()
        let live = try Self.entriesFromTheTree(f.db).filter { $0.value.kind != .root }
        let below = live.keys.count { (f.pages - 99...f.pages).contains($0) }
        // Told the file is 1,000 pages longer than it is: the first chunks are past its end.
        let prefetch = try #require(
            TailPrefetch(path: f.path, end: f.pages + 1000, freePages: f.free + 1000, window: 1100, chunk: 16))
        prefetch.start()
        prefetch.waitUntilIdle()
        #expect(prefetch.pagesRead > below, "seed \(f.seed)")
        prefetch.stop()
    }
}
