import Foundation
import Storage

/// Start-up's read of the history without its values (`KVStore.indexSource`), in batches of rows copied out of
/// SQLite, read ahead on a thread of its own (`ReadAhead`) when the database is on the real disk.
///
/// Why: rebuilding the key index is most of a large member's start-up, and it is two kinds of work, SQLite stepping
/// through the history's index (waiting for the disk when those pages are not in the page cache) and the key index's
/// inserts. One after the other, 33.5 million keys took 31 s with the pages cached and 55 s without. On two threads
/// the two overlap. A simulated disk is read on the caller's thread: the simulator drives its I/O from one thread.
final class HistoryIndexScan {
    /// One row of the history's index.
    struct Row: Equatable {
        var main: Int64
        var sub: Int64
        var createRevision: Int64
        var version: Int64
        var lease: Int64
        /// The value's length; nil for a row written before the index had lengths.
        var valueLength: Int64?
        /// Where the row's key ends in its batch's `keys`; it starts where the previous row's ends.
        var keyEnd: Int
    }

    /// Rows and their keys' bytes, back to back.
    struct Batch {
        var keys: [UInt8] = []
        var rows: [Row] = []

        /// Each row with its key's bytes, valid during the call.
        func forEach(_ body: (Row, UnsafeRawBufferPointer) -> Void) {
            keys.withUnsafeBytes { all in
                var start = 0
                for row in rows {
                    body(row, UnsafeRawBufferPointer(rebasing: all[start..<row.keyEnd]))
                    start = row.keyEnd
                }
            }
        }
    }

    /// Rows per batch, and batches read ahead: a few MiB at most, whatever the database.
    static let batchRows = 8192
    static let batchesAhead = 4

    private let statement: SQLiteStatement
    private var readAhead: ReadAhead<Batch>?
    private var exhausted = false

    /// Starts reading `connection`'s history; the connection is the scan's until `close()`.
    init(connection: SQLiteConnection, sql: String, readAhead: Bool) throws {
        statement = try connection.statement(sql)
        if readAhead {
            // Unowned: the scan owns the reader, and `close()` ends the reading thread before the scan can go.
            self.readAhead = ReadAhead(capacity: Self.batchesAhead, name: "quorum-index-load") { [unowned self] in
                try readBatch()
            }
        }
    }

    /// The next batch, nil at the end.
    func next() throws -> Batch? {
        if let readAhead { return try readAhead.next() }
        return try readBatch()
    }

    /// Stops reading and hands the connection back.
    func close() {
        readAhead?.close()
        readAhead = nil
        statement.reset()
    }

    /// Up to `batchRows` rows; nil once the statement is done (stepping it again would start it over).
    private func readBatch() throws -> Batch? {
        guard !exhausted else { return nil }
        var batch = Batch()
        batch.rows.reserveCapacity(Self.batchRows)
        let s = statement
        while batch.rows.count < Self.batchRows {
            guard try s.step() else {
                exhausted = true
                break
            }
            s.withBlob(2) { batch.keys.append(contentsOf: $0) }
            batch.rows.append(
                Row(
                    main: s.int64(0), sub: s.int64(1), createRevision: s.int64(3), version: s.int64(4),
                    lease: s.int64(5), valueLength: s.isNull(6) ? nil : s.int64(6), keyEnd: batch.keys.count))
        }
        return batch.rows.isEmpty ? nil : batch
    }
}
