import EtcdProto
import Foundation
import Storage
import TestSupport
import Testing

@testable import MVCC

/// The ordered map under the key index, checked against a plain sorted reference under random operations.
@Suite struct SortedKeyMapTests {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test(arguments: [1, 2, 3]) func matchesASortedReference(seed: UInt64) {
        var g = Generator(state: seed)
        var map = SortedKeyMap<Int>()
        var reference: [Data: Int] = [:]
        func key() -> Data {
            // Short keys from a small alphabet collide often: inserts, replacements and removals all happen.
            let length = Int.random(in: 0...4, using: &g)
            return Data((0..<length).map { _ in UInt8.random(in: 0...5, using: &g) * 50 })
        }
        for step in 0..<20_000 {
            let k = key()
            switch Int.random(in: 0..<11, using: &g) {
            case 0..<5:
                map.set(k, step)
                reference[k] = step
            case 5:
                // Keeps an existing value, inserts a missing one.
                let value = map.value(for: k, orInsert: { step })
                if reference[k] == nil { reference[k] = step }
                #expect(value == reference[k])
            case 6..<8:
                map.remove(k)
                reference[k] = nil
            default:
                #expect(map[k] == reference[k])
            }
        }
        #expect(map.count == reference.count)
        let sorted = reference.keys.sorted { KeyRange.less($0, $1) }
        var visited: [Data] = []
        map.forEach(from: Data()) { k, v in
            visited.append(k)
            #expect(reference[k] == v)
            return true
        }
        #expect(visited == sorted)
        // A scan from any start key begins at the first key not below it.
        for _ in 0..<200 {
            let start = key()
            var first: Data?
            map.forEach(from: start) { k, _ in
                first = k
                return false
            }
            #expect(first == sorted.first { !KeyRange.less($0, start) })
        }
    }

    @Test func keysArrivingInOrderAppendAndSplit() {
        var map = SortedKeyMap<Int>()
        for i in 0..<5_000 { _ = map.value(for: Data(String(format: "%05d", i).utf8), orInsert: { i }) }
        _ = map.value(for: Data("00042".utf8), orInsert: { -1 })
        #expect(map.count == 5_000 && map[Data("00042".utf8)] == 42)
        var previous: Data?
        map.forEach(from: Data()) { key, _ in
            if let previous { #expect(KeyRange.less(previous, key)) }
            previous = key
            return true
        }
        #expect(map.leaves.allSatisfy { $0.count <= SortedKeyMap<Int>.leafCapacity })
    }

    /// A leaf packs its keys into one buffer; removed keys' bytes are reclaimed once they are half of it.
    @Test func removedKeysBytesAreReclaimedAndTheRestStayFindable() {
        var map = SortedKeyMap<Int>()
        func key(_ i: Int) -> Data { Data((String(format: "%03d", i) + String(repeating: "x", count: 97)).utf8) }
        for i in 0..<200 { map.set(key(i), i) }
        #expect(map.leaves.count == 1 && map.leaves[0].bytes.count == 200 * 100)
        let removed = Set((0..<150).map { $0 * 4 / 3 })
        for i in removed { map.remove(key(i)) }
        #expect(map.count == 50 && map.leaves[0].bytes.count < 100 * 100)
        for i in 0..<200 { #expect(map[key(i)] == (removed.contains(i) ? nil : i)) }
        var keys: [Data] = []
        map.forEach(from: Data()) { k, v in
            #expect(k == key(v))
            keys.append(k)
            return true
        }
        #expect(keys.count == 50 && keys == keys.sorted { KeyRange.less($0, $1) })
    }

    @Test func manyKeysSplitLeavesAndStayInOrder() {
        var map = SortedKeyMap<Int>()
        // Descending inserts always land at the front: the worst case for the leaf directory.
        for i in stride(from: 9_999, through: 0, by: -1) { map.set(Data(String(format: "%05d", i).utf8), i) }
        #expect(map.count == 10_000 && map.leaves.count > 10_000 / SortedKeyMap<Int>.leafCapacity)
        var expected = 0
        map.forEach(from: Data()) { _, v in
            #expect(v == expected)
            expected += 1
            return true
        }
        #expect(expected == 10_000)
        map.mutateAll { value in
            if let v = value, v % 3 != 0 { value = nil }
        }
        #expect(map.count == 3_334)
        #expect(map[Data("00003".utf8)] == 3 && map[Data("00004".utf8)] == nil)
    }
}

/// The key index's per-key history, as etcd's compaction defines it.
@Suite struct KeyEntryTests {
    func ref(_ main: Int64, deleted: Bool = false) -> RevisionRef {
        RevisionRef(main: main, sub: 0, tombstone: deleted)
    }

    @Test func versionsAtOrBeforeARevision() {
        let e = KeyEntry(head: nil, history: [ref(2), ref(5), ref(7, deleted: true), ref(9)])
        #expect(e.version(atOrBefore: 1) == nil)
        #expect(e.version(atOrBefore: 2)?.main == 2)
        #expect(e.version(atOrBefore: 6)?.main == 5)
        #expect(e.version(atOrBefore: 8)?.tombstone == true)
        #expect(e.version(before: 9)?.main == 7)
        #expect(e.retains(main: 5, sub: 0) && !e.retains(main: 4, sub: 0))
    }

    @Test func compactionKeepsTheNewestLiveVersionAndEverythingAfter() {
        let e = KeyEntry(head: nil, history: [ref(2), ref(5), ref(7, deleted: true), ref(9)])
        e.compact(at: 6)
        #expect(e.history.map(\.main) == [5, 7, 9])
        e.compact(at: 8)  // the newest at or before 8 is a deletion: it goes too
        #expect(e.history.map(\.main) == [9])
        e.compact(at: 20)
        #expect(e.history.map(\.main) == [9])
    }
}

/// Reads across the boundary between rows SQLite holds and rows only memory holds (the apply loop commits
/// lazily): every reader must see the same history either way.
@Suite struct LazyCommitTests {
    /// A store whose writes stay in SQLite's open transaction until `commit()`.
    final class Lazy {
        let dir = TemporaryDirectory()
        let backend: Backend
        let store: KVStore

        init() throws {
            backend = try Backend(path: dir.path + "/db")
            store = try KVStore(backend: backend)
        }

        @discardableResult
        func put(_ key: String, _ value: String) throws -> Int64 {
            try backend.beginBatch()
            let txn = store.beginWrite()
            try txn.put(key: k(key), value: k(value), lease: 0)
            try store.end(txn)
            return txn.revision
        }

        @discardableResult
        func delete(_ key: String) throws -> Int64 {
            try backend.beginBatch()
            let txn = store.beginWrite()
            try txn.deleteRange(.single(k(key)))
            try store.end(txn)
            return txn.revision
        }

        func commit() throws { try backend.commitBatch() }

        func committedRows() throws -> Int64 {
            try backend.read { c in try c.scalar("SELECT COUNT(*) FROM revs") ?? 0 }
        }
    }

    @Test func historyReadsMergeCommittedAndPendingRows() throws {
        let l = try Lazy()
        try l.put("a", "1")  // 2
        try l.put("b", "1")  // 3
        try l.commit()
        try l.put("a", "2")  // 4
        try l.delete("b")  // 5
        try l.put("a", "3")  // 6
        #expect(try l.committedRows() == 2, "rows after the commit are still only in the open transaction")
        let a = KeyRange.single(k("a"))
        #expect(try l.store.range(a, options: RangeOptions(revision: 2)).kvs[0].value == k("1"))  // from SQLite
        #expect(try l.store.range(a, options: RangeOptions(revision: 5)).kvs[0].value == k("2"))  // from memory
        #expect(try l.store.range(.single(k("b")), options: RangeOptions(revision: 4)).kvs[0].value == k("1"))
        #expect(try l.store.range(.single(k("b")), options: RangeOptions(revision: 5)).kvs.isEmpty)
        let events = try l.store.events(from: 2, through: 100, limit: 100, prevKV: true)
        #expect(events.events.map(\.kv.modRevision) == [2, 3, 4, 5, 6])
        #expect(events.events.map(\.type) == [.put, .put, .put, .delete, .put])
        #expect(events.events[2].prevKv.value == k("1") && events.events[3].prevKv.value == k("1"))
        #expect(events.events[4].prevKv.value == k("2"))
        let pending = try l.store.hashKV(revision: 6)
        try l.commit()
        #expect(try l.committedRows() == 5)
        #expect(try l.store.hashKV(revision: 6).hash == pending.hash, "the hash does not depend on what is committed")
        #expect(try l.store.range(a, options: RangeOptions(revision: 5)).kvs[0].value == k("2"))  // now from SQLite
    }

    @Test func uncommittedWritesAreLostOnReopenButTheIndexMatchesTheDatabase() throws {
        let l = try Lazy()
        try l.put("a", "1")
        try l.commit()
        try l.put("a", "2")
        // Reopening without a commit is a crash: SQLite rolls the open transaction back, and the member's log
        // (not this test) would apply the lost entries again.
        let reopened = try KVStore(backend: try Backend(path: l.dir.path + "/db"))
        #expect(reopened.revisions.current == 2)
        #expect(try reopened.range(.single(k("a")), options: RangeOptions()).kvs[0].value == k("1"))
        #expect(reopened.keyCount() == 1)
    }

    @Test func compactionForgetsSupersededVersionsInMemoryAndOnDisk() throws {
        let l = try Lazy()
        for i in 1...4 { try l.put("a", "\(i)") }  // 2...5
        try l.put("b", "1")  // 6
        try l.delete("b")  // 7
        try l.commit()
        try l.backend.beginBatch()
        try l.store.scheduleCompaction(6)
        #expect(throws: MVCCError.compacted) {
            try l.store.range(.single(k("a")), options: RangeOptions(revision: 5))
        }
        #expect(try l.store.range(.single(k("a")), options: RangeOptions(revision: 6)).kvs[0].value == k("4"))
        while try !l.store.compactStep(budget: 2) {}
        try l.commit()
        // Left: a@5 (newest of a at or before 6), b@6 (newest of b at or before 6), b's deletion at 7.
        #expect(try l.committedRows() == 3)
        #expect(try l.store.events(from: 6, through: 7, limit: 10, prevKV: true).events.map(\.type) == [.put, .delete])
    }

    @Test func compactionStepsSmallerThanARevisionFinish() throws {
        let l = try Lazy()
        try l.backend.beginBatch()
        let txn = l.store.beginWrite()
        for i in 0..<5 { try txn.put(key: k("k\(i)"), value: k("v"), lease: 0) }  // 5 rows at revision 2, all kept
        try l.store.end(txn)
        try l.put("k0", "w")  // 3
        try l.commit()
        try l.backend.beginBatch()
        try l.store.scheduleCompaction(3)
        var steps = 0
        while try !l.store.compactStep(budget: 2) {
            steps += 1
            try #require(steps < 10, "a step inside a revision of kept rows must not start over")
        }
        try l.commit()
        #expect(try l.committedRows() == 5)  // k0@2 went
    }

    @Test func databasesWithTheOldPerKeyTablesAreMigrated() throws {
        let dir = TemporaryDirectory()
        let path = dir.path + "/db"
        let old = try SQLiteConnection(path: path)
        try old.execute(
            """
            CREATE TABLE meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL DEFAULT 0, data BLOB) WITHOUT ROWID;
            CREATE TABLE kv(key BLOB NOT NULL, rev INTEGER NOT NULL, sub INTEGER NOT NULL, create_rev INTEGER NOT NULL,
                version INTEGER NOT NULL, lease INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY(key, rev)) WITHOUT ROWID;
            CREATE TABLE live(key BLOB PRIMARY KEY, create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL,
                version INTEGER NOT NULL, lease INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
            INSERT INTO meta(name, value) VALUES('current_rev', 4);
            INSERT INTO kv VALUES(CAST('a' AS BLOB), 2, 0, 2, 1, 0, CAST('1' AS BLOB));
            INSERT INTO kv VALUES(CAST('b' AS BLOB), 3, 0, 3, 1, 7, CAST('x' AS BLOB));
            INSERT INTO kv VALUES(CAST('a' AS BLOB), 4, 0, 2, 2, 0, CAST('2' AS BLOB));
            """)
        let store = try KVStore(backend: try Backend(path: path))
        #expect(store.revisions.current == 4)
        #expect(try store.range(.single(k("a")), options: RangeOptions()).kvs[0].version == 2)
        #expect(try store.range(.single(k("a")), options: RangeOptions(revision: 3)).kvs[0].value == k("1"))
        #expect(store.leasedKeys().map(\.lease) == [7])
        #expect(try store.backend.writer.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name IN ('kv', 'live')") == 0)
    }
}
