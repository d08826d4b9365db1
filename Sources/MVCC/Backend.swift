import Foundation
import Storage
import Synchronization

/// The durable, indexed store under the key space, leases, alarms and membership: one SQLite database.
///
/// One writer connection, used only by the apply loop, groups many apply batches into one SQLite transaction;
/// readers use a pool of connections and see the last committed transaction (WAL journal mode).
/// SQLite runs with `synchronous=NORMAL`: a power loss may roll back the newest batches but never corrupts the
/// file, and those batches are replayed from Quorum's own write-ahead log, which the `consistent_index` meta
/// row says where to resume. Before the log is truncated behind a snapshot, `makeDurable()` checkpoints.
///
/// A member opens it on SQLite's own unix VFS. The simulator opens the same schema, pragmas, writer and readers on
/// a `DiskVFS` (a simulated disk); there `replace(with:)` and `writeImage(to:)` move files on the VFS's disk, while
/// `copy(to:)` and the WAL part of `size()` still go to POSIX paths.
public final class Backend: @unchecked Sendable {
    public let path: String
    /// The VFS every connection opens on; nil for SQLite's default (POSIX).
    public let vfs: DiskVFS?
    /// The apply loop's connection. Not to be used from any other thread.
    public private(set) var writer: SQLiteConnection
    private let readers = Mutex<[SQLiteConnection]>([])
    /// Readers checked out of the pool, and whether `replace` is waiting for them (guarded by `readerGate`).
    private let readerGate = NSCondition()
    private var readersOut = 0
    private var replacing = false
    private let maxIdleReaders: Int
    /// Called after every successful COMMIT (the key space learns that SQLite caught up with it). Set once,
    /// before the backend is shared.
    public var onCommit: (@Sendable () -> Void)?
    /// Set when a COMMIT failed: SQLite rolled the batch back (SQLITE_FULL, an I/O error), so the key space in memory
    /// is ahead of the database, and its `consistent_index` behind what the member applied. No later batch may join
    /// that database (the next one would record a `consistent_index` past rows that are gone, and an image written
    /// from it would claim them): every batch and image refuses from then on, the member stops, and its next start
    /// replays the lost entries from its log. The member simulation found a leader that went on after a failed
    /// COMMIT and sent a follower an image without the rows of three applied entries (seed 8002345).
    public private(set) var failure: BackendFailed?
    /// Called once, when a COMMIT fails (`failure` is set): the member stops there, whoever committed and whatever
    /// it does with the error. Set once, before the backend is shared.
    public var onFailure: (@Sendable (BackendFailed) -> Void)?

    /// Copies the journal into the database off the apply loop; nil on a VFS (the simulator's disk) or when not
    /// wanted (a deterministic simulation on real files): every checkpoint then stays in the writer's COMMIT. The
    /// writer's own checkpoints (durability, a defragment's end) hold it off first: a checkpoint finding another
    /// running gives up at once (SQLITE_BUSY), whatever the busy timeout.
    let checkpointer: BackgroundCheckpointer?
    /// When commits ask for a background checkpoint, and when the writer checkpoints itself (the journal's bound,
    /// SQLite's default `wal_autocheckpoint` of the past).
    public static let defaultCheckpointPolicy = WriterCheckpointPolicy(background: 1024, inline: 4096)
    let checkpointPolicy: WriterCheckpointPolicy

    public init(
        path: String, maxIdleReaders: Int = 8, vfs: DiskVFS? = nil, backgroundCheckpoints: Bool = true,
        checkpointPolicy: WriterCheckpointPolicy = Backend.defaultCheckpointPolicy
    ) throws {
        self.path = path
        self.maxIdleReaders = maxIdleReaders
        self.vfs = vfs
        self.checkpointPolicy = checkpointPolicy
        checkpointer = vfs == nil && backgroundCheckpoints ? BackgroundCheckpointer(path: path) : nil
        writer = try Backend.openWriter(path: path, vfs: vfs, checkpointer: checkpointer, policy: checkpointPolicy)
        checkpointer?.start()
    }

    deinit { checkpointer?.stop() }

    private static func openWriter(
        path: String, vfs: DiskVFS?, checkpointer: BackgroundCheckpointer?, policy: WriterCheckpointPolicy
    ) throws -> SQLiteConnection {
        let writer = try SQLiteConnection(path: path, vfs: vfs)
        // Free pages go back to the file system in short steps (`vacuumStep`), which needs SQLite's pointer-map pages:
        // a file takes the mode only before its first table (and before WAL mode writes its header), so a new member's
        // or a restored database has it, and an older one keeps NONE until its first defragment rebuilds it. The
        // setting also makes every `VACUUM` and `VACUUM INTO` (images for followers) write an incremental file.
        if try writer.scalar("PRAGMA auto_vacuum") != Backend.incrementalAutoVacuum {
            try writer.execute("PRAGMA auto_vacuum=INCREMENTAL")
        }
        try writer.execute(
            """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            PRAGMA cache_size=-\(Backend.writerCacheKiB);
            PRAGMA temp_store=MEMORY;
            """)
        if let checkpointer {
            // The journal is copied in the background from 1,024 frames on; at 4,096 the writer copies the rest itself
            // (which lets SQLite start the journal over). A failed checkpoint, wherever it ran, fails the next COMMIT.
            writer.checkpoint(afterCommit: { frames in
                if let failure = checkpointer.takeFailure() { return .fail(failure) }
                switch policy.decide(frames: frames) {
                case .nothing:
                    return .none
                case .askBackground:
                    checkpointer.request()
                    return .none
                case .checkpointInline:
                    checkpointer.holdOff()
                    return .now
                }
            })
        } else {
            // wal_autocheckpoint=4096, except that a failed checkpoint fails the COMMIT instead of going unnoticed.
            writer.checkpointAutomatically(everyFrames: policy.inline)
        }
        try writer.execute(Backend.schema)
        try migrate(writer)
        try addHistoryIndex(writer)
        return writer
    }

    /// Databases written before the history table was keyed by revision had one table per key (`kv`, with
    /// `live` beside it): their rows move over once, in order.
    private static func migrate(_ writer: SQLiteConnection) throws {
        guard try writer.scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'kv'") == 1 else {
            return
        }
        try writer.execute(
            """
            BEGIN IMMEDIATE;
            INSERT OR REPLACE INTO revs(rev, sub, key, create_rev, version, lease, value, vlen)
                SELECT rev, sub, key, create_rev, version, lease, value, length(value) FROM kv ORDER BY rev, sub;
            DROP TABLE kv;
            DROP TABLE IF EXISTS live;
            COMMIT;
            """)
    }

    /// Databases written before the history had its index (`revs_meta`) get it, and the column of value lengths it
    /// holds: the column stays NULL in the rows written before (`KVStore.load` asks SQLite for those lengths), and
    /// the index is built once, here, with one pass over the table.
    private static func addHistoryIndex(_ writer: SQLiteConnection) throws {
        if try writer.scalar("SELECT COUNT(*) FROM pragma_table_info('revs') WHERE name = 'vlen'") == 0 {
            try writer.execute("ALTER TABLE revs ADD COLUMN vlen INTEGER")
        }
        try writer.execute(Backend.historyIndex)
    }

    /// Replaces the whole database with the image at `image` (a snapshot received from the leader), durably:
    /// the image is synced and renamed over the database, and the old WAL journal files are removed so SQLite
    /// cannot replay them onto the new image. Apply loop only, between batches.
    public func replace(with image: String) throws {
        rollbackBatch()
        // No reader may be on the old file when it goes: one returned to the pool afterwards would read the replaced
        // database forever, and its close would checkpoint into, and delete, journal files by the name the new
        // database now uses. New reads wait the few milliseconds the swap takes.
        readerGate.lock()
        replacing = true
        while readersOut > 0 { readerGate.wait() }
        readerGate.unlock()
        defer {
            readerGate.lock()
            replacing = false
            readerGate.broadcast()
            readerGate.unlock()
        }
        closeReaders()
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if let vfs {
            // The same swap on the VFS's disk (a simulated member).
            try vfs.syncFile(image)
            writer = try SQLiteConnection(path: ":memory:")
            try? vfs.removeFile(path + "-wal")
            try vfs.renameFile(image, to: path)
            try vfs.syncDirectory(directory.isEmpty ? "/" : directory)
            writer = try Backend.openWriter(path: path, vfs: vfs, checkpointer: nil, policy: checkpointPolicy)
            return
        }
        let file = try File(path: image, writable: true)
        try file.sync(dataOnly: false)
        // The checkpointer's connection goes first, then the writer's: closing the last connection checkpoints and
        // deletes the journal; then the image takes the database's place.
        checkpointer?.stop()
        writer = try SQLiteConnection(path: ":memory:")
        try? FileSystem.remove(path + "-wal")
        try? FileSystem.remove(path + "-shm")
        try FileSystem.rename(image, to: path)
        try FileSystem.syncDirectory(directory.isEmpty ? "." : directory)
        writer = try Backend.openWriter(path: path, vfs: vfs, checkpointer: checkpointer, policy: checkpointPolicy)
        checkpointer?.start()
    }

    /// Writes a compact, consistent image of the committed database to `destination` (what a leader sends a
    /// follower that needs a snapshot). Apply loop only, so the image matches the applied index exactly.
    public func writeImage(to destination: String) throws {
        try commitBatch()
        if let vfs { try? vfs.removeFile(destination) } else { try? FileSystem.remove(destination) }
        let s = try writer.statement("VACUUM INTO ?1")
        s.bind(1, destination)
        try s.run()
    }

    /// The history without its values, in revision order: what `KVStore.load` reads to rebuild the key index.
    /// The table's leaf pages hold the start of every value beside its key (a row of a 4 KiB value keeps 489 bytes
    /// there, the rest in an overflow page), so a scan of the table reads every ninth page of the file: from the
    /// disk, once the file is not in memory, that is a random read every few rows (an 8 GiB database took 228 s to
    /// start after the page cache was dropped, against 6 s with it warm; `scripts/bench-startup.sh`). The index's
    /// entries are a few dozen bytes, appended in revision order like the table's rows.
    /// `vlen` is `length(value)`, a column because SQLite (3.40) does not read an indexed expression from the index.
    static let historyIndex = """
        CREATE INDEX IF NOT EXISTS revs_meta ON revs(rev, sub, key, create_rev, version, lease, vlen)
        """

    static let schema = """
        CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL DEFAULT 0, data BLOB)
            WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS revs(
            rev INTEGER NOT NULL, sub INTEGER NOT NULL, key BLOB NOT NULL, create_rev INTEGER NOT NULL,
            version INTEGER NOT NULL, lease INTEGER NOT NULL, value BLOB NOT NULL, vlen INTEGER,
            PRIMARY KEY(rev, sub)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS leases(id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL, remaining_ttl INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS alarms(member_id INTEGER NOT NULL, alarm INTEGER NOT NULL,
            PRIMARY KEY(member_id, alarm)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS members(id INTEGER PRIMARY KEY, name TEXT NOT NULL, peer_urls TEXT NOT NULL,
            client_urls TEXT NOT NULL, is_learner INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS removed_members(id INTEGER PRIMARY KEY);
        CREATE TABLE IF NOT EXISTS auth(bucket TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
            PRIMARY KEY(bucket, key)) WITHOUT ROWID;
        """

    // MARK: Batches (apply loop only)

    /// Opens the transaction that the following writes join.
    public func beginBatch() throws {
        if let failure { throw failure }
        if !writer.isInTransaction { try writer.run("BEGIN IMMEDIATE") }
    }

    /// Drops the batch not yet committed, as a killed process loses it (a simulated crash): the connection then
    /// holds no lock, so the database can be opened again in the same process.
    public func abandonBatch() {
        if writer.isInTransaction { try? writer.execute("ROLLBACK") }
    }

    /// Commits the batch; readers see it from now on.
    public func commitBatch() throws {
        if let failure { throw failure }
        guard writer.isInTransaction else { return }
        do {
            try writer.run("COMMIT")
        } catch {
            // A COMMIT that fails on an I/O error or a full disk leaves no transaction open: the batch is gone.
            let failed = BackendFailed(path: path, underlying: error)
            failure = failed
            if writer.isInTransaction { try? writer.execute("ROLLBACK") }
            onFailure?(failed)
            throw failed
        }
        onCommit?()
    }

    public func rollbackBatch() {
        if writer.isInTransaction { try? writer.execute("ROLLBACK") }
    }

    /// Makes every committed batch durable (a full checkpoint with fsync), before the WAL is released behind it.
    ///
    /// A read transaction that began while the WAL was wholly checkpointed holds SQLite's read lock 0, and one on an
    /// older snapshot pins the frames after it: a long one (a snapshot stream, a backup) outlasts the busy timeout and
    /// the checkpoint gives up, having synced nothing when it could copy nothing. The WAL is then synced directly,
    /// which makes every commit durable all the same (recovery replays it).
    public func makeDurable() throws {
        try commitBatch()
        checkpointer?.holdOff()
        if try !writer.checkpointFull() { try writer.syncJournal() }
    }

    // MARK: Meta rows

    public func metaInt(_ name: String, on connection: SQLiteConnection? = nil) throws -> Int64? {
        let s = try (connection ?? writer).statement("SELECT value FROM meta WHERE name = ?1")
        s.bind(1, name)
        defer { s.reset() }
        return try s.step() ? s.int64(0) : nil
    }

    public func setMetaInt(_ name: String, _ value: Int64) throws {
        let s = try writer.statement(
            "INSERT INTO meta(name, value) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value")
        s.bind(1, name).bind(2, value)
        try s.run()
    }

    public func metaData(_ name: String, on connection: SQLiteConnection? = nil) throws -> Data? {
        let s = try (connection ?? writer).statement("SELECT data FROM meta WHERE name = ?1")
        s.bind(1, name)
        defer { s.reset() }
        return try s.step() ? s.data(0) : nil
    }

    public func setMetaData(_ name: String, _ value: Data) throws {
        let s = try writer.statement(
            "INSERT INTO meta(name, data) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET data = excluded.data")
        s.bind(1, name).bind(2, value)
        try s.run()
    }

    // MARK: Readers

    /// Runs `body` inside a read transaction on a pooled connection: it sees one committed state throughout.
    public func read<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        let connection = try takeReader()
        defer { returnReader(connection) }
        try connection.run("BEGIN")
        defer { try? connection.run("COMMIT") }
        return try body(connection)
    }

    /// Runs `body` in a read transaction on a connection of its own, closed afterwards, with a small page cache and no
    /// mapping of the file: for scans of the whole database (etcd-format snapshots, backups), which last minutes and
    /// should neither hold a pooled reader that long nor, through a mapping, leave every page of the file resident in
    /// the member's memory.
    public func readOnOwnConnection<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        enterReader()
        defer { leaveReader() }
        let connection = try SQLiteConnection(path: path, vfs: vfs)
        try connection.execute("PRAGMA query_only=1; PRAGMA cache_size=-2048; PRAGMA mmap_size=0;")
        try connection.execute("BEGIN")
        defer { try? connection.execute("COMMIT") }
        return try body(connection)
    }

    /// Read transactions open on the database right now (pooled reads, whole-database scans such as snapshot
    /// streams and backups, copies): etcd's `etcd_mvcc_db_open_read_transactions`.
    public var openReadTransactions: Int {
        readerGate.lock()
        defer { readerGate.unlock() }
        return readersOut
    }

    /// Counts a reader in, after any `replace` under way.
    private func enterReader() {
        readerGate.lock()
        while replacing { readerGate.wait() }
        readersOut += 1
        readerGate.unlock()
    }

    private func leaveReader() {
        readerGate.lock()
        readersOut -= 1
        if readersOut == 0 { readerGate.broadcast() }
        readerGate.unlock()
    }

    private func takeReader() throws -> SQLiteConnection {
        enterReader()
        if let pooled = readers.withLock({ $0.popLast() }) { return pooled }
        do {
            return try openReader()
        } catch {
            returnReader(nil)
            throw error
        }
    }

    private func openReader() throws -> SQLiteConnection {
        let connection = try SQLiteConnection(path: path, vfs: vfs)
        // Readers (history reads, watch catch-up) read pages with pread into a cache of their own, which holds the
        // B-trees' upper levels. They do not map the file: SQLite maps it once per connection, and a page read by
        // several readers counted once per mapping in the member's RSS (2.4 GB of a 1 GiB database after ten
        // seconds of gets, for the same get rate as with pread: docs/BENCHMARKS.md).
        try connection.execute("PRAGMA query_only=1; PRAGMA cache_size=-4096; PRAGMA mmap_size=0;")
        return connection
    }

    private func returnReader(_ connection: SQLiteConnection?) {
        if let connection {
            readers.withLock { pool in
                if pool.count < maxIdleReaders { pool.append(connection) }
            }
        }
        leaveReader()
    }

    /// Drops idle readers (before a defragment or a restore replaces the file).
    public func closeReaders() {
        readers.withLock { $0.removeAll() }
    }

    // MARK: Size and maintenance

    /// Bytes allocated by the database file, and bytes in use by live pages (the rest is free pages).
    public func size() throws -> (total: Int64, inUse: Int64) {
        try read { c in
            let pageSize = try c.scalar("PRAGMA page_size") ?? 4096
            let pages = try c.scalar("PRAGMA page_count") ?? 0
            let free = try c.scalar("PRAGMA freelist_count") ?? 0
            let walBytes = Int64(FileSystem.fileSize(path + "-wal") ?? 0)
            return (pages * pageSize + walBytes, (pages - free) * pageSize)
        }
    }

    /// `PRAGMA auto_vacuum`'s value for INCREMENTAL.
    static let incrementalAutoVacuum: Int64 = 2

    /// Whether free pages can be returned in steps (`vacuumStep`): false for a database created before Quorum set
    /// `auto_vacuum=INCREMENTAL`, until `convertToIncrementalVacuum()`.
    public func vacuumsIncrementally() throws -> Bool {
        try writer.scalar("PRAGMA auto_vacuum") == Backend.incrementalAutoVacuum
    }

    /// Pages on the free list (the committed batch's view on the writer).
    public func freePages() throws -> Int64 {
        try writer.scalar("PRAGMA freelist_count") ?? 0
    }

    /// The database's size in pages, as the writer sees it (a vacuum step's truncation included).
    public func pageCount() throws -> Int64 {
        try writer.scalar("PRAGMA page_count") ?? 0
    }

    /// One step of a defragmentation, in a transaction of its own: returns free pages to the file system one at a
    /// time (SQLite moves pages from the end of the file into free slots and truncates it; the file shrinks on disk at
    /// the next checkpoint) until none is left, `pages` have gone, or `nanoseconds` have passed by `clock`. A step is
    /// bounded by time because a page's cost varies a hundredfold: about 20 µs for a free page at the end, up to a
    /// millisecond for a live one SQLite must find a slot for in a long free list. Returns the pages returned and the
    /// free pages left, and how long the step's commit took (it copies the journal into the file when it finds it at
    /// the writer's bound). Apply loop only, between batches; an incremental database only (`vacuumsIncrementally()`).
    public func vacuumStep(
        pages: Int = .max, nanoseconds: UInt64 = .max, clock: () -> UInt64 = monotonicNanoseconds
    ) throws -> (returned: Int, left: Int64, commitNanoseconds: UInt64) {
        try commitBatch()
        try beginBatch()
        var returned = 0
        do {
            // `PRAGMA incremental_vacuum(N)` yields a row after each page it returns: stepping it page by page and
            // resetting it early is how a step stops on time. Its N is only a ceiling here.
            let vacuum = try writer.statement("PRAGMA incremental_vacuum(2147483647)")
            defer { vacuum.reset() }
            let start = clock()
            while returned < pages, try vacuum.step() {
                returned += 1
                if clock() &- start >= nanoseconds { break }
            }
        } catch {
            rollbackBatch()
            throw error
        }
        let left = try freePages()
        let committing = clock()
        try commitBatch()
        return (returned, left, clock() &- committing)
    }

    /// The writer's page cache in KiB outside a defragment: batches of appended rows need little.
    static let writerCacheKiB = 512
    /// The most a defragment's writer cache may take (64 MiB: the trunks of 64 GB of free pages).
    static let vacuumCacheLimitKiB = 65_536

    /// The pages a defragment's writer keeps cached: every free-list trunk (one lists about a thousand free pages)
    /// and pointer-map page (one maps about 800 pages), which SQLite walks for each page it returns, and room for
    /// the pages it moves; within `vacuumCacheLimitKiB`. With the default 512 KiB every walk of a long free list
    /// read its trunks again (`FreeListPrefetch` has the measurements).
    public func vacuumCachePages() throws -> Int {
        let pageSize = Int(try writer.scalar("PRAGMA page_size") ?? 4096)
        let pages = Int(try writer.scalar("PRAGMA page_count") ?? 0)
        let trunks = Int(try freePages()) / (pageSize / 4 - 2) + 1
        let pointerMaps = pages / PointerMapLayout(pageSize: pageSize, reservedBytes: 0).period + 1
        let wanted = trunks + pointerMaps + 1024
        return min(max(wanted, Self.writerCacheKiB * 1024 / pageSize), Self.vacuumCacheLimitKiB * 1024 / pageSize)
    }

    /// Sizes the writer's page cache for a defragment (`pages`, from `vacuumCachePages`), or back to its everyday
    /// size (nil), releasing what the larger one held. Apply loop only.
    public func setVacuumCache(pages: Int?) throws {
        if let pages {
            try writer.execute("PRAGMA cache_size=\(pages)")
        } else {
            try writer.execute("PRAGMA cache_size=-\(Self.writerCacheKiB); PRAGMA shrink_memory;")
        }
    }

    /// Rebuilds a database created with `auto_vacuum=NONE` as an incremental one (a full `VACUUM`, the old blocking
    /// defragment), once: later defragments go in steps. Apply loop only; writes wait for it.
    public func convertToIncrementalVacuum() throws {
        try commitBatch()
        closeReaders()
        try writer.execute("PRAGMA auto_vacuum=INCREMENTAL")
        try writer.execute("VACUUM")
        checkpointer?.holdOff()
        try writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    }

    /// Ends a defragmentation: copies the journal into the (now shorter) file and empties it, so that the files
    /// take no more than the pages in use. Readers on older snapshots are waited for at most `milliseconds`; when
    /// they keep the journal, it stays (it is reused, and emptied by a later checkpoint). Apply loop only.
    @discardableResult
    public func truncateJournal(waitingAtMost milliseconds: Int32) throws -> Bool {
        try commitBatch()
        checkpointer?.holdOff()
        return try writer.checkpointTruncate(busyMilliseconds: milliseconds)
    }

    /// Rewrites the file without free pages at once (etcd's defragment), blocking writers while it runs: what a
    /// defragment did before it went in steps, kept for the tools and tests that want it in one call.
    public func defragment() throws {
        if try vacuumsIncrementally() {
            while try vacuumStep().left > 0 {}
            checkpointer?.holdOff()
            try writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        } else {
            try convertToIncrementalVacuum()
        }
    }

    /// Writes a consistent copy of the committed state to `destination` (for Snapshot and for peers).
    public func copy(to destination: String) throws {
        try? FileSystem.remove(destination)
        let source = try takeReader()
        defer { returnReader(source) }
        try SQLiteBackup.copy(from: source, to: destination)
    }
}

/// The database refuses work after a failed COMMIT (see `Backend.failure`).
public struct BackendFailed: Error, CustomStringConvertible {
    public var path: String
    /// The COMMIT's own error (SQLite's full disk or I/O error).
    public var underlying: any Error
    public var description: String {
        "backend: \(path) stopped after a failed commit (the batch was rolled back): \(underlying)"
    }
}
