import Foundation
import Storage
import TestSupport
import Testing

@testable import MVCC

/// The journal (SQLite's WAL) is copied into the database by a thread of its own; the writer copies the rest itself
/// only at the journal's bound, which keeps the journal bounded even while the writer never pauses.
@Suite struct BackendCheckpointTests {
    static func journalBytes(_ backend: Backend) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: backend.path + "-wal"))?[.size] as? NSNumber)?.int64Value
            ?? 0
    }

    @Test func theWriterAsksInTheBackgroundFirstAndCopiesItselfOnlyAtTheBound() {
        let policy = WriterCheckpointPolicy(background: 1024, inline: 4096)
        #expect(policy.decide(frames: 0) == .nothing)
        #expect(policy.decide(frames: 1023) == .nothing)
        #expect(policy.decide(frames: 1024) == .askBackground)
        #expect(policy.decide(frames: 4095) == .askBackground)
        #expect(policy.decide(frames: 4096) == .checkpointInline)
        #expect(policy.decide(frames: 100_000) == .checkpointInline)
    }

    /// 60 MB of values committed back to back: the background thread checkpoints, the journal never grows past its
    /// bound (4,096 frames of 4 KiB, and the frames of the commit that crossed it), and a fresh connection reads every
    /// value from the database.
    @Test func theJournalStaysBoundedUnderBackToBackCommitsAndNothingIsLost() throws {
        let f = try StoreFixture()
        let checkpointer = try #require(f.backend.checkpointer)
        let value = String(repeating: "x", count: 60_000)
        var largest: Int64 = 0
        for i in 0..<1_000 {
            try f.put("key/\(i % 250)", value + "\(i)")
            largest = max(largest, Self.journalBytes(f.backend))
        }
        checkpointer.waitUntilIdle()
        #expect(checkpointer.checkpoints > 0)
        let bound = Int64(Backend.defaultCheckpointPolicy.inline + 64) * 4096 + 32
        #expect(largest <= bound, "journal reached \(largest) bytes")
        let store = try KVStore(backend: try Backend(path: f.backend.path))
        let kvs = try store.range(.from(Data()), options: RangeOptions()).kvs
        #expect(kvs.count == 250)
        #expect(kvs.allSatisfy { $0.value.count > 60_000 })
    }

    /// The writer's bound out of reach, so that it never copies: the background thread alone moves the journal into
    /// the database, whose file then holds the values. (For a while it copied nothing, its connection never having
    /// opened the WAL, and a count of its runs did not show it: the writer's checkpoints did all the work.)
    @Test func theBackgroundThreadAloneCopiesTheJournalIntoTheDatabase() throws {
        let directory = TemporaryDirectory()
        let backend = try Backend(
            path: directory.path + "/db", checkpointPolicy: WriterCheckpointPolicy(background: 64, inline: Int.max))
        let checkpointer = try #require(backend.checkpointer)
        for i in 0..<200 {
            try backend.beginBatch()
            try backend.setMetaData("value/\(i)", Data(repeating: UInt8(i % 256), count: 50_000))
            try backend.commitBatch()
        }
        checkpointer.waitUntilIdle()
        let progress = try #require(checkpointer.lastProgress)
        #expect(progress.copiedFrames > 0, "\(progress)")
        let size = FileSystem.fileSize(backend.path) ?? 0
        #expect(size > 8_000_000, "the database file has \(size) bytes of the 10 MB written")
    }

    /// SQLite's checkpoint on a connection that has not read its database does nothing and reports success; here
    /// it is an error, and after a read the same call copies the journal.
    @Test func aConnectionThatHasNotReadItsDatabaseCannotCheckpointAndSaysSo() throws {
        let directory = TemporaryDirectory()
        let writer = try SQLiteConnection(path: directory.path + "/db")
        try writer.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(v BLOB); INSERT INTO t VALUES(zeroblob(100000))")
        let fresh = try SQLiteConnection(path: directory.path + "/db")
        #expect(throws: SQLiteError.self) { _ = try fresh.checkpointPassive() }
        _ = try fresh.scalar("SELECT COUNT(*) FROM sqlite_master")
        let progress = try #require(try fresh.checkpointPassive())
        #expect(progress.journalFrames > 0 && progress.copiedFrames == progress.journalFrames, "\(progress)")
    }

    /// A checkpoint that failed elsewhere fails the next COMMIT, which committed all the same (as SQLite reports a
    /// failed automatic checkpoint): the member stops on it rather than go on over a journal that may not be on disk.
    @Test func aFailureTheHookReportsFailsTheCommitButKeepsItsWrites() throws {
        let directory = TemporaryDirectory()
        let connection = try SQLiteConnection(path: directory.path + "/db")
        try connection.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(v INTEGER)")
        let failing = SQLiteError(code: 10, message: "disk I/O error", context: "wal_checkpoint(PASSIVE)")
        connection.checkpoint(afterCommit: { _ in .fail(failing) })
        #expect(throws: SQLiteError.self) {
            try connection.execute("BEGIN; INSERT INTO t VALUES(1); COMMIT")
        }
        connection.checkpoint(afterCommit: { _ in .none })
        #expect(!connection.isInTransaction)
        #expect(try connection.scalar("SELECT COUNT(*) FROM t") == 1)
    }

    /// A snapshot install swaps the database file: the checkpointer lets go of the old one first and works on the
    /// new one after.
    @Test func theCheckpointerFollowsTheDatabaseAcrossAReplace() throws {
        let f = try StoreFixture()
        let value = String(repeating: "y", count: 50_000)
        for i in 0..<200 { try f.put("before/\(i)", value) }
        let image = f.backend.path + ".image"
        try f.backend.writeImage(to: image)
        try f.backend.replace(with: image)
        let checkpointer = try #require(f.backend.checkpointer)
        checkpointer.waitUntilIdle()
        let before = checkpointer.checkpoints
        try f.backend.beginBatch()
        for i in 0..<400 {
            try f.backend.setMetaData("filler/\(i)", Data(repeating: UInt8(i % 256), count: 20_000))
            if i % 10 == 9 {
                try f.backend.commitBatch()
                try f.backend.beginBatch()
            }
        }
        try f.backend.commitBatch()
        checkpointer.waitUntilIdle()
        #expect(checkpointer.checkpoints > before)
        #expect(try f.backend.metaData("filler/399")?.count == 20_000)
    }
}
