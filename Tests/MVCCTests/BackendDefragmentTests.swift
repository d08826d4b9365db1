import Foundation
import Storage
import TestSupport
import Testing

@testable import MVCC

/// Free pages go back to the file system in steps (`PRAGMA auto_vacuum = INCREMENTAL`); a database created before
/// that is rebuilt once.
@Suite struct BackendDefragmentTests {
    /// Writes `count` keys of `valueSize` bytes, deletes every other one and compacts: most of the file is free.
    static func fillAndFree(_ f: StoreFixture, count: Int = 400, valueSize: Int = 16_384) throws {
        let value = String(repeating: "v", count: valueSize)
        for i in 0..<count { try f.put("key/\(i)", value + "\(i)") }
        for i in stride(from: 0, to: count, by: 2) { try f.delete(.single(k("key/\(i)"))) }
        try f.store.scheduleCompaction(f.store.revisions.current)
        while try !f.store.compactStep(budget: 100) {}
    }

    /// What the key space holds, read from the database file itself (a fresh store over a fresh backend).
    static func reopened(_ f: StoreFixture) throws -> (hash: UInt32, keys: [String: Data]) {
        let store = try KVStore(backend: try Backend(path: f.backend.path))
        let kvs = try store.range(.from(Data()), options: RangeOptions()).kvs
        let keys = Dictionary(uniqueKeysWithValues: kvs.map { (String(decoding: $0.key, as: UTF8.self), $0.value) })
        return (try store.hashKV(revision: 0).hash, keys)
    }

    @Test func aNewDatabaseVacuumsIncrementallyAndShrinksInSteps() throws {
        let f = try StoreFixture()
        #expect(try f.backend.vacuumsIncrementally())
        try Self.fillAndFree(f)
        let before = try f.backend.size()
        #expect(before.total - before.inUse > 2_000_000, "\(before)")
        let hash = try f.store.hashKV(revision: 0).hash
        var steps = 0
        while try f.backend.vacuumStep(pages: 64).left > 0 { steps += 1 }
        #expect(steps > 4)
        try f.backend.truncateJournal(waitingAtMost: 1000)
        let after = try f.backend.size()
        #expect(after.total == after.inUse && after.inUse <= before.inUse, "\(before) -> \(after)")
        #expect(Int64(FileSystem.fileSize(f.backend.path) ?? 0) == after.total)
        let reopened = try Self.reopened(f)
        #expect(reopened.hash == hash && reopened.keys.count == 200)
        #expect(reopened.keys["key/399"] == Data((String(repeating: "v", count: 16_384) + "399").utf8))
    }

    /// A step stops when its time is up, whatever a page costs: the clock here advances 1 µs per reading, so a step
    /// of 10 µs returns 10 pages (the first reading is its start) and leaves the rest for later steps.
    @Test func aStepStopsWhenItsTimeIsUp() throws {
        let f = try StoreFixture()
        try Self.fillAndFree(f)
        let free = try f.backend.freePages()
        var now: UInt64 = 0
        let step = try f.backend.vacuumStep(nanoseconds: 10_000) {
            now += 1_000
            return now
        }
        #expect(step.returned == 10 && step.left == free - 10, "\(step), \(free) free before")
        // The step's commit is timed by the same clock: one reading before it, one after.
        #expect(step.commitNanoseconds == 1_000)
        #expect(try f.backend.freePages() == free - 10)
        let rest = try f.backend.vacuumStep()
        #expect(rest.returned == free - 10 && rest.left == 0)
    }

    /// Before a defragment the pages its steps walk are read from the file: every trunk of the free list (with the
    /// pages they list, every free page SQLite counts) and every pointer-map page; and the writer's cache is sized to
    /// keep them, then sized back.
    @Test func theFreeListAndPointerMapsAreReadAheadAndCached() throws {
        let f = try StoreFixture()
        try Self.fillAndFree(f, count: 1200)
        try f.backend.truncateJournal(waitingAtMost: 1000)  // the file itself now holds the newest free list
        let free = try f.backend.freePages()
        let pages = Int(try f.backend.writer.scalar("PRAGMA page_count") ?? 0)
        let read = FreeListPrefetch.run(path: f.backend.path)
        #expect(read.trunks >= 2 && Int64(read.trunks + read.leaves) == free, "\(read), \(free) free")
        #expect(read.pointerMaps == (pages - 2) / 820 + 1, "\(read), \(pages) pages")

        let cached = try f.backend.vacuumCachePages()
        #expect(cached >= read.trunks + read.pointerMaps + 1024)
        try f.backend.setVacuumCache(pages: cached)
        #expect(try f.backend.writer.scalar("PRAGMA cache_size") == Int64(cached))
        while try f.backend.vacuumStep().left > 0 {}
        try f.backend.setVacuumCache(pages: nil)
        #expect(try f.backend.writer.scalar("PRAGMA cache_size") == -512)
    }

    /// A file that is not a database, or is gone, is read as nothing: the read-ahead is only a hint.
    @Test func readingAheadWhatIsNotADatabaseReadsNothing() throws {
        let dir = TemporaryDirectory()
        try Data(repeating: 7, count: 65_536).write(to: URL(fileURLWithPath: dir.path + "/garbage"))
        #expect(FreeListPrefetch.run(path: dir.path + "/garbage") == FreeListPrefetch.Summary())
        #expect(FreeListPrefetch.run(path: dir.path + "/missing") == FreeListPrefetch.Summary())
    }

    @Test func aDatabaseCreatedWithoutAutoVacuumIsConvertedOnItsFirstDefragment() throws {
        let dir = TemporaryDirectory()
        let path = dir.path + "/db"
        // What Quorum wrote before: the tables made before any auto_vacuum setting.
        do {
            let old = try SQLiteConnection(path: path)
            try old.execute("PRAGMA journal_mode=WAL;" + Backend.schema)
        }
        let f = try StoreFixture(path: path, dir: dir)
        #expect(try !f.backend.vacuumsIncrementally())
        try Self.fillAndFree(f)
        let hash = try f.store.hashKV(revision: 0).hash
        let before = try f.backend.size()
        // An image for a follower is written incremental even from the old file.
        try f.backend.writeImage(to: dir.path + "/image")
        let image = try SQLiteConnection(path: dir.path + "/image")
        #expect(try image.scalar("PRAGMA auto_vacuum") == 2)
        try f.backend.defragment()
        #expect(try f.backend.vacuumsIncrementally())
        let after = try f.backend.size()
        #expect(after.total == after.inUse && after.total < before.total / 2, "\(before) -> \(after)")
        let reopened = try Self.reopened(f)
        #expect(reopened.hash == hash && reopened.keys.count == 200)
        // From then on, in steps.
        for i in 0..<50 { try f.delete(.single(k("key/\(2 * i + 1)"))) }
        try f.store.scheduleCompaction(f.store.revisions.current)
        while try !f.store.compactStep(budget: 100) {}
        #expect(try f.backend.freePages() > 0)
        while try f.backend.vacuumStep(pages: 16).left > 0 {}
        #expect(try f.backend.freePages() == 0)
        #expect(try Self.reopened(f).keys.count == 150)
    }
}
