import CSQLite
import Foundation

/// An error reported by SQLite, with the statement or operation it came from.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    public var context: String

    public init(code: Int32, message: String, context: String) {
        self.code = code
        self.message = message
        self.context = context
    }

    public var description: String { "sqlite: \(message) (code \(code)) in \(context)" }
}

/// SQLITE_TRANSIENT: tells SQLite to copy bound bytes, since Swift arrays may move.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection.
///
/// The key space lives in SQLite because it gives a durable, indexed, crash-safe B-tree that may exceed
/// memory, with concurrent readers (WAL journal mode) beside one writer. A connection is used by one thread at a
/// time; the owner (the apply loop, or a reader pool) serialises access, which is why this is `@unchecked Sendable`.
public final class SQLiteConnection: @unchecked Sendable {
    public let path: String
    let handle: OpaquePointer
    private var statements: [String: SQLiteStatement] = [:]
    /// The target of `checkpoint(afterCommit:)`'s hook, kept alive as long as the connection.
    private var walHookTarget: WALHookTarget?
    /// The VFS the connection runs on, held so that it outlives the connection; nil for SQLite's own (POSIX).
    public let vfs: DiskVFS?

    /// How long a statement waits for another connection's lock before SQLITE_BUSY.
    static let busyTimeoutMilliseconds: Int32 = 10_000

    /// Opens `path` with SQLite's default VFS, or on `vfs` (a `Disk` such as the simulator's).
    public init(path: String, readOnly: Bool = false, vfs: DiskVFS? = nil) throws(SQLiteError) {
        var db: OpaquePointer?
        let flags =
            (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, vfs?.name)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: message, context: "open \(path)")
        }
        self.path = path
        self.handle = db
        self.vfs = vfs
        sqlite3_busy_timeout(db, Self.busyTimeoutMilliseconds)
        sqlite3_extended_result_codes(db, 1)
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Runs one or more statements without results.
    public func execute(_ sql: String) throws(SQLiteError) {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(error)
            throw SQLiteError(code: rc, message: message, context: sql)
        }
    }

    /// Runs one statement without results, prepared once per connection: for the transaction statements every read
    /// and every batch runs (`BEGIN`, `COMMIT`), which `execute` would parse and plan again each time.
    public func run(_ sql: String) throws(SQLiteError) { try statement(sql).run() }

    /// A prepared statement, cached per connection: the hot paths never re-parse SQL.
    public func statement(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        if let cached = statements[sql] {
            cached.reset()
            return cached
        }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql) }
        let statement = SQLiteStatement(connection: self, handle: stmt, sql: sql)
        statements[sql] = statement
        return statement
    }

    /// Runs `body` in a transaction; rolls back if it throws.
    public func transaction<T>(immediate: Bool = true, _ body: () throws -> T) throws -> T {
        try run(immediate ? "BEGIN IMMEDIATE" : "BEGIN")
        do {
            let result = try body()
            try run("COMMIT")
            return result
        } catch {
            try? run("ROLLBACK")
            throw error
        }
    }

    public var changes: Int { Int(sqlite3_changes(handle)) }

    public var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    func error(_ rc: Int32, _ context: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), context: context)
    }

    /// SQLite's automatic checkpoint (`PRAGMA wal_autocheckpoint`) with its errors reported: after a COMMIT that left
    /// at least `frames` frames in the WAL, a PASSIVE checkpoint runs, and if it fails (an fsync that failed) the
    /// COMMIT reports the error (the transaction is committed all the same). SQLite's own hook ignores the error, and
    /// after a failed fsync Linux forgets the dirty pages, so a later checkpoint that "succeeds" may copy a WAL that is
    /// not on disk into the database: a power cut in that copy corrupts it.
    public func checkpointAutomatically(everyFrames frames: Int) {
        checkpoint(afterCommit: { $0 >= frames ? .now : .none })
    }

    /// What the WAL hook does after a COMMIT (`checkpoint(afterCommit:)`).
    public enum CommitCheckpoint: Sendable {
        /// Nothing now.
        case none
        /// A PASSIVE checkpoint now, in this COMMIT, its error (an fsync that failed) reported by the COMMIT.
        case now
        /// The COMMIT reports this error (a checkpoint that failed elsewhere); the transaction is committed.
        case fail(SQLiteError)
    }

    private final class WALHookTarget {
        let decide: (Int) -> CommitCheckpoint
        init(_ decide: @escaping (Int) -> CommitCheckpoint) { self.decide = decide }
    }

    /// After every COMMIT, `decide` gets the frames in the WAL and says whether this connection checkpoints now
    /// (as `checkpointAutomatically` does at its threshold), or reports an error. It runs inside the COMMIT, on the
    /// connection's thread, so it must be quick.
    public func checkpoint(afterCommit decide: @escaping (Int) -> CommitCheckpoint) {
        let target = WALHookTarget(decide)
        walHookTarget = target
        sqlite3_wal_hook(
            handle,
            { context, db, name, frames in
                guard let context else { return SQLITE_OK }
                switch Unmanaged<WALHookTarget>.fromOpaque(context).takeUnretainedValue().decide(Int(frames)) {
                case .none:
                    return SQLITE_OK
                case .now:
                    let rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
                    return rc == SQLITE_BUSY ? SQLITE_OK : rc
                case .fail(let error):
                    return error.code
                }
            }, Unmanaged.passUnretained(target).toOpaque())
    }

    /// What a checkpoint saw: the frames in the WAL, and how many of them the database now holds.
    public struct CheckpointProgress: Equatable, Sendable {
        public var journalFrames: Int
        public var copiedFrames: Int
    }

    /// A PASSIVE checkpoint: copies what the WAL holds that no reader still needs, and syncs, without waiting for
    /// anyone. Returns nil when another connection was checkpointing (SQLITE_BUSY).
    ///
    /// A connection learns that its database is in WAL mode only when it first reads it; until then SQLite's
    /// checkpoint does nothing, succeeds, and reports -1 frames. That is an error here (open the WAL with a read
    /// first): a background checkpointer that ran that way copied nothing for as long as it ran, unnoticed.
    public func checkpointPassive() throws(SQLiteError) -> CheckpointProgress? {
        var journal: Int32 = -1
        var copied: Int32 = -1
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_PASSIVE, &journal, &copied)
        if rc == SQLITE_BUSY { return nil }
        guard rc == SQLITE_OK else { throw error(rc, "wal_checkpoint(PASSIVE)") }
        guard journal >= 0 else {
            throw SQLiteError(
                code: SQLITE_ERROR, message: "no WAL open on this connection (read the database first)",
                context: "\(path) wal_checkpoint(PASSIVE)")
        }
        return CheckpointProgress(journalFrames: Int(journal), copiedFrames: Int(copied))
    }

    /// A FULL checkpoint: copies the WAL into the database and syncs both, waiting (the busy timeout) for readers on
    /// older snapshots. Returns false when readers still kept it from copying every frame: SQLITE_BUSY, which
    /// `PRAGMA wal_checkpoint` reports only in a result row. A checkpoint that could copy nothing synced nothing.
    public func checkpointFull() throws(SQLiteError) -> Bool {
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_FULL, nil, nil)
        if rc == SQLITE_BUSY { return false }
        guard rc == SQLITE_OK else { throw error(rc, "wal_checkpoint(FULL)") }
        return true
    }

    /// A TRUNCATE checkpoint: copies the WAL into the database (which shrinks to its page count), syncs, and empties
    /// the WAL file, waiting at most `busyMilliseconds` (instead of the connection's busy timeout) for readers on
    /// older snapshots. Returns false when they kept it from finishing (SQLITE_BUSY): the WAL then stays as it is.
    public func checkpointTruncate(busyMilliseconds: Int32) throws(SQLiteError) -> Bool {
        sqlite3_busy_timeout(handle, busyMilliseconds)
        defer { sqlite3_busy_timeout(handle, Self.busyTimeoutMilliseconds) }
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
        if rc == SQLITE_BUSY { return false }
        guard rc == SQLITE_OK else { throw error(rc, "wal_checkpoint(TRUNCATE)") }
        return true
    }

    /// Syncs the connection's WAL (or rollback journal) through its VFS, as a commit with `synchronous=FULL` would:
    /// every frame written so far becomes durable. Nothing to do when none is open.
    public func syncJournal() throws(SQLiteError) {
        var file: UnsafeMutablePointer<sqlite3_file>?
        let rc = sqlite3_file_control(handle, "main", SQLITE_FCNTL_JOURNAL_POINTER, &file)
        guard rc == SQLITE_OK else { throw error(rc, "journal pointer") }
        guard let file, let sync = file.pointee.pMethods?.pointee.xSync else { return }
        let synced = sync(file, SQLITE_SYNC_NORMAL)
        guard synced == SQLITE_OK else {
            throw SQLiteError(code: synced, message: "syncing the journal failed", context: "\(path) journal sync")
        }
    }

    /// Single integer result of a query (e.g. a PRAGMA), or nil.
    public func scalar(_ sql: String) throws(SQLiteError) -> Int64? {
        let s = try statement(sql)
        defer { s.reset() }
        return try s.step() ? s.int64(0) : nil
    }
}

/// A prepared statement. Bind parameters (1-based), `step()` through rows, read columns (0-based).
public final class SQLiteStatement {
    unowned let connection: SQLiteConnection
    let handle: OpaquePointer
    let sql: String

    init(connection: SQLiteConnection, handle: OpaquePointer, sql: String) {
        self.connection = connection
        self.handle = handle
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    public func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    @discardableResult
    public func bind(_ index: Int32, _ value: Int64) -> SQLiteStatement {
        sqlite3_bind_int64(handle, index, value)
        return self
    }

    @discardableResult
    public func bind(_ index: Int32, _ value: [UInt8]) -> SQLiteStatement {
        value.withUnsafeBytes { raw in
            // A zero-length blob must still bind as a blob, not NULL: empty values are legal in etcd.
            _ = sqlite3_bind_blob(
                handle, index, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(raw.count), transient)
        }
        return self
    }

    @discardableResult
    public func bind(_ index: Int32, _ value: Data) -> SQLiteStatement {
        value.withUnsafeBytes { raw in
            _ = sqlite3_bind_blob(
                handle, index, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(raw.count), transient)
        }
        return self
    }

    @discardableResult
    public func bind(_ index: Int32, _ value: String) -> SQLiteStatement {
        sqlite3_bind_text(handle, index, value, -1, transient)
        return self
    }

    @discardableResult
    public func bindNull(_ index: Int32) -> SQLiteStatement {
        sqlite3_bind_null(handle, index)
        return self
    }

    /// Advances to the next row; false when done.
    public func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.error(rc, sql)
        }
    }

    /// Runs a statement that returns no rows.
    public func run() throws(SQLiteError) {
        defer { sqlite3_reset(handle) }
        while try step() {}
    }

    public func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    public func bytes(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let pointer = sqlite3_column_blob(handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    public func data(_ column: Int32) -> Data {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let pointer = sqlite3_column_blob(handle, column) else { return Data() }
        return Data(bytes: pointer, count: count)
    }

    public func byteCount(_ column: Int32) -> Int { Int(sqlite3_column_bytes(handle, column)) }

    /// The bytes of a BLOB column without copying them: valid only during `body` (SQLite's buffer, until the next
    /// step or reset).
    public func withBlob<R>(_ column: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let pointer = sqlite3_column_blob(handle, column) else {
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    public func string(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(handle, column) else { return "" }
        return String(cString: pointer)
    }
}

/// Copies a live database into a new file with SQLite's online backup, giving a consistent image while writes go on.
public enum SQLiteBackup {
    public static func copy(from source: SQLiteConnection, to path: String) throws(SQLiteError) {
        let destination = try SQLiteConnection(path: path)
        guard let backup = sqlite3_backup_init(destination.handle, "main", source.handle, "main") else {
            throw destination.error(sqlite3_errcode(destination.handle), "backup init")
        }
        let rc = sqlite3_backup_step(backup, -1)
        sqlite3_backup_finish(backup)
        guard rc == SQLITE_DONE else { throw destination.error(rc, "backup step") }
    }
}
