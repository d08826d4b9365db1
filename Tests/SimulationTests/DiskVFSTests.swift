import Foundation
import Simulation
import Storage
import Synchronization
import TestSupport
import Testing

/// `DiskVFS` alone: SQLite in WAL mode on `SimFileSystem`, several connections on one database, behaving as they do on
/// SQLite's own unix VFS. The concurrency scenarios run on both, so "as on POSIX" is checked, not assumed.
@Suite("DiskVFS", .ownThread)
struct DiskVFSTests {
    /// Opens connections on one database: on the simulated disk, or with SQLite's unix VFS in a real directory.
    struct Place {
        let open: () throws -> SQLiteConnection
        let keep: AnyObject
    }

    static func simulated() throws -> Place {
        let fs = SimFileSystem(seed: 7)
        try fs.makeDirectory("/db")
        try fs.makeDirectory("/tmp")
        let vfs = DiskVFS(disk: fs, temporaryDirectory: "/tmp", seed: 7)
        return Place(open: { try SQLiteConnection(path: "/db/test.db", vfs: vfs) }, keep: fs)
    }

    static func posix() -> Place {
        let directory = TemporaryDirectory()
        return Place(open: { try SQLiteConnection(path: directory.file("test.db")) }, keep: directory)
    }

    static func count(_ c: SQLiteConnection) throws -> Int64 { try c.scalar("SELECT COUNT(*) FROM t") ?? -1 }

    @Test(arguments: ["simulated", "posix"])
    func readersSeeCommittedWritesAndKeepTheirSnapshot(_ where: String) throws {
        let place = try `where` == "simulated" ? Self.simulated() : Self.posix()
        let writer = try place.open()
        try writer.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE t(x INTEGER)")
        try writer.execute("INSERT INTO t VALUES(1)")
        let first = try place.open()
        let second = try place.open()
        // The pool's readers map the file; on a DiskVFS they must still read through xRead.
        try second.execute("PRAGMA query_only=1; PRAGMA mmap_size=17179869184")
        try first.execute("BEGIN")
        #expect(try Self.count(first) == 1)
        try writer.execute("INSERT INTO t VALUES(2)")
        #expect(try Self.count(first) == 1, "a read transaction keeps its snapshot")
        #expect(try Self.count(second) == 2)
        try first.execute("COMMIT")
        #expect(try Self.count(first) == 2)
        try writer.execute("PRAGMA wal_checkpoint(FULL)")
        try writer.execute("INSERT INTO t SELECT x + 2 FROM t")
        #expect(try Self.count(second) == 4)
        let check = try second.statement("PRAGMA integrity_check")
        #expect(try check.step() && check.string(0) == "ok")
        check.reset()
    }

    @Test(arguments: ["simulated", "posix"])
    func aSecondWriterIsBusy(_ where: String) throws {
        let place = try `where` == "simulated" ? Self.simulated() : Self.posix()
        let a = try place.open()
        try a.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER)")
        let b = try place.open()
        try b.execute("PRAGMA busy_timeout=0")
        try a.execute("BEGIN IMMEDIATE; INSERT INTO t VALUES(1)")
        let busy = #expect(throws: SQLiteError.self) { try b.execute("BEGIN IMMEDIATE") }
        #expect(busy?.code == 5, "SQLITE_BUSY")
        // A reader is not held up by the writer.
        #expect(try Self.count(b) == 0)
        try a.execute("COMMIT")
        try b.execute("BEGIN IMMEDIATE; INSERT INTO t VALUES(2); COMMIT")
        #expect(try Self.count(a) == 2)
    }

    /// What `Backend.makeDurable` must allow for, on SQLite's own VFS as on this one: a read transaction that began
    /// on a wholly checkpointed WAL (read lock 0) keeps a FULL checkpoint from copying anything, and SQLite reports
    /// that only as SQLITE_BUSY (a result row, for `PRAGMA wal_checkpoint`).
    @Test(arguments: ["simulated", "posix"])
    func aReadOfTheCheckpointedDatabaseKeepsAFullCheckpointBusy(_ where: String) throws {
        let place = try `where` == "simulated" ? Self.simulated() : Self.posix()
        let writer = try place.open()
        try writer.execute("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=0; CREATE TABLE t(x INTEGER)")
        try writer.execute("INSERT INTO t VALUES(1)")
        #expect(try writer.checkpointFull())
        let reader = try place.open()
        try reader.execute("BEGIN")
        #expect(try Self.count(reader) == 1)
        try writer.execute("INSERT INTO t VALUES(2)")
        #expect(try !writer.checkpointFull())
        let row = try writer.statement("PRAGMA wal_checkpoint(FULL)")
        #expect(try row.step() && row.int64(0) == 1, "busy, in the row; the statement itself succeeds")
        row.reset()
        try reader.execute("COMMIT")
        #expect(try writer.checkpointFull())
    }

    /// The busy handler waits through the VFS's sleep, which a simulation owns: with a 10 s timeout the second writer
    /// still gets SQLITE_BUSY, having asked to sleep that long, at once.
    @Test func theBusyHandlerSleepsThroughTheOwner() throws {
        let fs = SimFileSystem(seed: 3)
        try fs.makeDirectory("/db")
        let slept = Atomic<Int>(0)
        let vfs = DiskVFS(disk: fs, temporaryDirectory: "/db", seed: 3, sleep: { slept.add($0, ordering: .relaxed) })
        let a = try SQLiteConnection(path: "/db/x.db", vfs: vfs)
        try a.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER); BEGIN IMMEDIATE")
        let b = try SQLiteConnection(path: "/db/x.db", vfs: vfs)
        let busy = #expect(throws: SQLiteError.self) { try b.execute("BEGIN IMMEDIATE") }
        #expect(busy?.code == 5)
        #expect(slept.load(ordering: .relaxed) >= 9_000_000, "about busy_timeout's 10 s, in microseconds")
    }

    @Test func temporaryFilesGoAwayWithTheirConnection() throws {
        let fs = SimFileSystem(seed: 5)
        try fs.makeDirectory("/db")
        try fs.makeDirectory("/tmp")
        let vfs = DiskVFS(disk: fs, temporaryDirectory: "/tmp", seed: 5)
        var c: SQLiteConnection? = try SQLiteConnection(path: "/db/t.db", vfs: vfs)
        // A temporary database on file with a tiny cache spills to a file SQLite opens without a name.
        try c!.execute(
            """
            PRAGMA journal_mode=WAL; PRAGMA temp_store=FILE; CREATE TEMP TABLE scratch(v BLOB);
            PRAGMA temp.cache_size=4;
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
            INSERT INTO scratch SELECT randomblob(1000) FROM n;
            """)
        #expect(try c!.scalar("SELECT COUNT(*) FROM scratch") == 400)
        let during = try fs.list("/tmp")
        #expect(!during.isEmpty && during.allSatisfy { $0.hasPrefix("etilqs_") }, "\(during)")
        c = nil
        #expect(try fs.list("/tmp").isEmpty)
        #expect(fs.exists("/db/t.db"))
    }

    /// After `restart` (a power cut), a connection from before holds nothing: closing it neither checkpoints nor
    /// deletes the WAL that the new connections use, and the database it left is whole.
    @Test func connectionsFromBeforeARestartCannotTouchTheDatabase() throws {
        let fs = SimFileSystem(seed: 9)
        try fs.makeDirectory("/db")
        let vfs = DiskVFS(disk: fs, temporaryDirectory: "/db", seed: 9)
        var old: SQLiteConnection? = try SQLiteConnection(path: "/db/r.db", vfs: vfs)
        try old!.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER); INSERT INTO t VALUES(1)")
        try old!.execute("PRAGMA wal_checkpoint(FULL)")
        var rng = SimRandom(seed: 9)
        fs.crash(rng: &rng)
        vfs.restart()
        #expect(throws: SQLiteError.self) { try old!.execute("INSERT INTO t VALUES(2)") }
        let new = try SQLiteConnection(path: "/db/r.db", vfs: vfs)
        try new.execute("INSERT INTO t VALUES(3)")
        old = nil
        #expect(fs.exists("/db/r.db-wal"), "the new connection's WAL is still there")
        #expect(try Self.count(new) == 2)
        let check = try new.statement("PRAGMA integrity_check")
        #expect(try check.step() && check.string(0) == "ok")
        check.reset()
    }
}
