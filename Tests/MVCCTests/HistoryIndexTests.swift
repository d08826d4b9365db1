import EtcdProto
import Foundation
import Storage
import TestSupport
import Testing

@testable import MVCC

/// Start-up rebuilds the key index from the history's index (`revs_meta`), never from the table that holds the
/// values: once a database no longer fits in memory, a scan of that table reads a page from the disk every few rows.
@Suite struct HistoryIndexTests {
    @Test func startUpScansTheHistoryIndexAloneWithoutTouchingTheTable() throws {
        let f = try StoreFixture()
        try f.put("a", String(repeating: "v", count: 5000))
        let plan = try f.backend.writer.statement("EXPLAIN QUERY PLAN " + KVStore.indexSource)
        var details: [String] = []
        while try plan.step() { details.append(plan.string(3)) }
        #expect(details == ["SCAN revs USING COVERING INDEX revs_meta"])
    }

    @Test func everyWriteRecordsItsValueLengthInTheIndex() throws {
        let f = try StoreFixture()
        try f.put("a", "hello")
        try f.put("empty", "")
        try f.delete(.single(k("a")))
        let rows = try f.backend.writer.statement("SELECT key, vlen FROM revs INDEXED BY revs_meta ORDER BY rev, sub")
        var lengths: [String: [Int64]] = [:]
        while try rows.step() { lengths[rows.string(0), default: []].append(rows.int64(1)) }
        #expect(lengths == ["a": [5, 0], "empty": [0]])

        let reopened = try KVStore(backend: try Backend(path: f.dir.path + "/db"))
        #expect(reopened.state.withLock { $0.keys[k("empty")]?.head?.valueLength } == 0)
        #expect(try reopened.range(.single(k("empty")), options: RangeOptions()).kvs.map(\.value) == [Data()])
        #expect(try reopened.range(.single(k("a")), options: RangeOptions()).kvs.isEmpty)
    }

    /// A database written before the index: its table had no `vlen`. Opening it adds the column and builds the
    /// index once; the lengths of the rows written before come from the table, and the rows written after carry
    /// theirs.
    @Test func aDatabaseFromBeforeTheIndexGetsItAndKeepsEveryValueLength() throws {
        let dir = TemporaryDirectory()
        let path = dir.path + "/db"
        do {
            let old = try SQLiteConnection(path: path)
            try old.execute(
                """
                CREATE TABLE meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL DEFAULT 0, data BLOB) WITHOUT ROWID;
                CREATE TABLE revs(
                    rev INTEGER NOT NULL, sub INTEGER NOT NULL, key BLOB NOT NULL, create_rev INTEGER NOT NULL,
                    version INTEGER NOT NULL, lease INTEGER NOT NULL, value BLOB NOT NULL,
                    PRIMARY KEY(rev, sub)) WITHOUT ROWID;
                INSERT INTO revs VALUES(2, 0, x'61', 2, 1, 0, x'68656c6c6f');
                INSERT INTO revs VALUES(3, 0, x'62', 3, 1, 0, x'');
                INSERT INTO revs VALUES(4, 0, x'61', 2, 2, 0, x'78797a');
                INSERT INTO revs VALUES(5, 0, x'63', 5, 1, 0, x'31');
                INSERT INTO revs VALUES(6, 0, x'63', 0, 0, 0, x'');
                INSERT INTO meta(name, value) VALUES('current_rev', 6);
                """)
        }
        let f = try StoreFixture(path: path, dir: dir)
        #expect(
            try f.backend.writer.scalar("SELECT COUNT(*) FROM pragma_index_list('revs') WHERE name = 'revs_meta'") == 1)
        #expect(f.store.state.withLock { s in ["a", "b"].map { s.keys[k($0)]?.head?.valueLength } } == [3, 0])
        #expect(f.store.keyCount() == 2)
        let all = try f.get(.from(Data()))
        #expect(all.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["xyz", ""])
        #expect(try f.get(.single(k("a")), RangeOptions(revision: 3)).kvs.map(\.value) == [k("hello")])

        try f.put("d", "four")
        let reopened = try KVStore(backend: try Backend(path: path))
        #expect(
            reopened.state.withLock { s in ["a", "b", "d"].map { s.keys[k($0)]?.head?.valueLength } } == [3, 0, 4])
        #expect(try f.backend.writer.scalar("SELECT COUNT(*) FROM revs WHERE vlen IS NULL") == 5)
        #expect(try f.backend.writer.scalar("SELECT vlen FROM revs WHERE key = x'64'") == 4)
    }
}
