import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import MVCC

/// A key space on a fresh database, with helpers that apply one write per revision as the apply loop does.
final class StoreFixture {
    let dir: TemporaryDirectory
    let backend: Backend
    let store: KVStore

    init(path: String? = nil, dir: TemporaryDirectory = TemporaryDirectory()) throws {
        self.dir = dir
        backend = try Backend(path: path ?? dir.path + "/db")
        store = try KVStore(backend: backend)
    }

    @discardableResult
    func write(_ body: (KVWriteTxn) throws -> Void) throws -> (revision: Int64, events: [Mvccpb_Event]) {
        try backend.beginBatch()
        let txn = store.beginWrite()
        try body(txn)
        try store.end(txn)
        try backend.commitBatch()
        return (txn.revision, txn.events)
    }

    @discardableResult
    func put(_ key: String, _ value: String, lease: Int64 = 0) throws -> Int64 {
        try write { _ = try $0.put(key: Data(key.utf8), value: Data(value.utf8), lease: lease) }.revision
    }

    @discardableResult
    func delete(_ range: KeyRange) throws -> Int64 {
        try write { _ = try $0.deleteRange(range) }.revision
    }

    func get(_ range: KeyRange, _ options: RangeOptions = RangeOptions()) throws -> RangeResult {
        try store.range(range, options: options)
    }

    func keys(_ result: RangeResult) -> [String] { result.kvs.map { String(decoding: $0.key, as: UTF8.self) } }
}

func k(_ s: String) -> Data { Data(s.utf8) }

@Suite struct KVStoreTests {
    @Test func revisionsVersionsAndCreateRevisionsFollowEtcd() throws {
        let f = try StoreFixture()
        #expect(f.store.revisions.current == 1)  // an empty etcd store is at revision 1
        #expect(try f.put("a", "1") == 2)
        #expect(try f.put("b", "2") == 3)
        #expect(try f.put("a", "3") == 4)
        let a = try f.get(.single(k("a"))).kvs[0]
        #expect(a.createRevision == 2 && a.modRevision == 4 && a.version == 2 && a.value == k("3"))
        #expect(try f.delete(.single(k("a"))) == 5)
        #expect(try f.get(.single(k("a"))).kvs.isEmpty)
        // Re-creating starts a new generation.
        #expect(try f.put("a", "4") == 6)
        let again = try f.get(.single(k("a"))).kvs[0]
        #expect(again.createRevision == 6 && again.version == 1)
        // A delete of nothing does not consume a revision.
        #expect(try f.delete(.single(k("missing"))) == 6)
    }

    @Test func historicalReadsSeeThePast() throws {
        let f = try StoreFixture()
        try f.put("a", "1")  // 2
        try f.put("b", "1")  // 3
        try f.put("a", "2")  // 4
        try f.delete(.single(k("b")))  // 5
        let all = KeyRange(key: k("\0"), rangeEnd: k("\0"))
        #expect(f.keys(try f.get(all, RangeOptions(revision: 3))) == ["a", "b"])
        #expect(try f.get(.single(k("a")), RangeOptions(revision: 3)).kvs[0].value == k("1"))
        #expect(f.keys(try f.get(all, RangeOptions(revision: 5))) == ["a"])
        #expect(try f.get(.single(k("a")), RangeOptions(revision: 5)).revision == 5)
        #expect(throws: MVCCError.futureRevision) { try f.get(all, RangeOptions(revision: 6)) }
    }

    @Test func rangesPrefixesLimitsAndCounts() throws {
        let f = try StoreFixture()
        for key in ["a", "ab", "abc", "b", "c\u{ff}"] { try f.put(key, key) }
        let prefix = KeyRange(key: k("a"), rangeEnd: KeyRange.prefixEnd(k("a")))
        #expect(f.keys(try f.get(prefix)) == ["a", "ab", "abc"])
        let limited = try f.get(prefix, RangeOptions(limit: 2))
        #expect(f.keys(limited) == ["a", "ab"] && limited.count == 3)
        let counted = try f.get(prefix, RangeOptions(countOnly: true))
        #expect(counted.kvs.isEmpty && counted.count == 3)
        let keysOnly = try f.get(prefix, RangeOptions(keysOnly: true))
        #expect(keysOnly.kvs.allSatisfy { $0.value.isEmpty })
        #expect(f.keys(try f.get(KeyRange(key: k("ab"), rangeEnd: k("\0")))) == ["ab", "abc", "b", "c\u{ff}"])
        #expect(try f.get(KeyRange(key: k("b"), rangeEnd: k("a"))).kvs.isEmpty)
        #expect(KeyRange.prefixEnd(Data([0x61, 0xff])) == k("b"))
        #expect(KeyRange.prefixEnd(Data([0xff, 0xff])) == Data([0]))
    }

    @Test func writesInOneTransactionShareARevisionAndSeeEachOther() throws {
        let f = try StoreFixture()
        try f.put("x", "0")
        let (revision, events) = try f.write { txn in
            try txn.put(key: k("x"), value: k("1"), lease: 0)
            let seen = try txn.range(.single(k("x")), options: RangeOptions())
            #expect(seen.kvs[0].value == k("1") && seen.revision == 3)
            try txn.put(key: k("y"), value: k("2"), lease: 0)
            try txn.deleteRange(.single(k("x")))
        }
        #expect(revision == 3)
        #expect(events.map(\.type) == [.put, .put, .delete])
        #expect(events.allSatisfy { $0.kv.modRevision == 3 })
        #expect(events[2].prevKv.value == k("1"))
    }

    /// A compaction step stops when its time is up, at the end of a chunk of rows: the clock here advances 1 µs per
    /// reading, so a 1.5 µs step reads two chunks of rows (it looks at the clock after each) and leaves the rest.
    @Test func aCompactionStepStopsWhenItsTimeIsUp() throws {
        let f = try StoreFixture()
        for i in 1...200 { try f.put("a", "\(i)") }  // revisions 2...201
        try f.backend.beginBatch()
        try f.store.scheduleCompaction(201)
        var now: UInt64 = 0
        let done = try f.store.compactStep(budget: 1_000, nanoseconds: 1_500) {
            now += 1_000
            return now
        }
        try f.backend.commitBatch()
        #expect(!done)
        #expect(f.store.revisions.compactionFinished == 1 + 2 * Int64(KVStore.compactionChunk))
        try f.backend.beginBatch()
        #expect(try f.store.compactStep(budget: 1_000))
        try f.backend.commitBatch()
        #expect(f.store.revisions.compactionFinished == 201)
        #expect(try f.get(.single(k("a"))).kvs.map(\.value) == [k("200")])
        let rows = try f.backend.read { try $0.scalar("SELECT COUNT(*) FROM revs") }
        #expect(rows == 1, "only the newest version of the key is left")
    }

    @Test func compactionRemovesHistoryButKeepsTheLatest() throws {
        let f = try StoreFixture()
        for i in 1...5 { try f.put("a", "\(i)") }  // revisions 2...6
        try f.put("b", "1")  // 7
        try f.delete(.single(k("b")))  // 8
        try f.put("c", "1")  // 9
        let hashBefore = try f.store.hashKV(revision: 9)
        try f.backend.beginBatch()
        try f.store.scheduleCompaction(8)
        try f.backend.commitBatch()
        #expect(throws: MVCCError.compacted) { try f.get(.single(k("a")), RangeOptions(revision: 7)) }
        // Reading at the compaction revision itself is allowed.
        #expect(try f.get(.single(k("a")), RangeOptions(revision: 8)).kvs[0].value == k("5"))
        // The hash is defined by the compaction, not by how far physical removal has got.
        let hashScheduled = try f.store.hashKV(revision: 9)
        try f.backend.beginBatch()
        while try !f.store.compactStep(budget: 2) {}
        try f.backend.commitBatch()
        let hashAfter = try f.store.hashKV(revision: 9)
        #expect(hashScheduled.hash == hashAfter.hash)
        #expect(hashBefore.compactRevision == 0 && hashAfter.compactRevision == 8)
        let rows = try f.backend.writer.scalar("SELECT COUNT(*) FROM revs")
        // a@6, b's tombstone (made at the compaction revision itself: see the next test) and c@9; the superseded
        // versions are gone.
        #expect(rows == 3)
        // What the metrics report: the rows compaction removed, and every put's key and value bytes.
        #expect(f.store.compactedRows.load(ordering: .relaxed) == 5)
        #expect(f.store.putBytes.load(ordering: .relaxed) == 7 * 2)
        #expect(throws: MVCCError.compacted) { try f.store.scheduleCompaction(8) }
        #expect(throws: MVCCError.futureRevision) { try f.store.scheduleCompaction(100) }
    }

    /// A deletion made at the compaction revision stays until a later compaction: a watcher may start at the
    /// compaction revision, and its first event is that deletion (etcd issue 18089; the member simulation found
    /// Quorum dropping it). Across a restart too, where the tombstone is the key's only row (etcd issue 19179).
    @Test func aDeletionAtTheCompactionRevisionStaysForWatchersStartingThere() throws {
        let f = try StoreFixture()
        func compact(_ revision: Int64, on store: KVStore) throws {
            try f.backend.beginBatch()
            try store.scheduleCompaction(revision)
            while try !store.compactStep(budget: 2) {}
            try f.backend.commitBatch()
        }
        try f.put("a", "1")  // 2
        try f.delete(.single(k("a")))  // 3
        try f.put("b", "1")  // 4
        try compact(3, on: f.store)
        let events = try f.store.events(from: 3, through: 4, limit: 100, prevKV: true).events
        #expect(events.map(\.type) == [.delete, .put] && events.map(\.kv.modRevision) == [3, 4])
        #expect(!events[0].hasPrevKv, "the version before the compaction revision is gone, as in etcd")
        #expect(try f.get(.single(k("a"))).kvs.isEmpty)
        let hash = try f.store.hashKV(revision: 4)
        let restarted = try KVStore(backend: f.backend)
        #expect(
            try restarted.events(from: 3, through: 4, limit: 100, prevKV: false).events.map(\.type) == [.delete, .put])
        #expect(try restarted.hashKV(revision: 4).hash == hash.hash)
        #expect(restarted.keyCount() == 1)
        // The next compaction takes it.
        try compact(4, on: restarted)
        #expect(try f.backend.writer.scalar("SELECT COUNT(*) FROM revs") == 1)  // b@4
    }

    /// Regression, found by `SQLitePowerLossTests`: a key whose newest version one compaction kept, deleted before
    /// the next compaction, lost only its tombstone to that compaction's physical removal (which began after the
    /// previous compaction revision), so the kept version stayed in SQLite and the key came back at the next start.
    @Test func aKeyDeletedBetweenTwoCompactionsStaysDeletedAfterARestart() throws {
        let f = try StoreFixture()
        func compact(_ revision: Int64) throws {
            try f.backend.beginBatch()
            try f.store.scheduleCompaction(revision)
            while try !f.store.compactStep(budget: 2) {}
            try f.backend.commitBatch()
        }
        try f.put("a", "1")  // 2
        try f.put("b", "1")  // 3
        try compact(3)  // keeps a@2 and b@3
        try f.delete(.single(k("a")))  // 4
        try f.put("c", "1")  // 5
        try compact(5)  // a is gone: a@2 and its tombstone go
        #expect(try f.get(.single(k("a"))).kvs.isEmpty)
        #expect(try f.backend.writer.scalar("SELECT COUNT(*) FROM revs") == 2)  // b@3 and c@5
        let restarted = try KVStore(backend: try Backend(path: f.dir.path + "/db"))
        #expect(try restarted.range(.single(k("a")), options: RangeOptions()).kvs.isEmpty)
        #expect(restarted.keyCount() == 2)
    }

    @Test func historyEventsComeInRevisionOrderWithPreviousValues() throws {
        let f = try StoreFixture()
        try f.put("a", "1")
        try f.put("a", "2")
        try f.delete(.single(k("a")))
        let history = try f.store.events(from: 2, through: 100, limit: 100, prevKV: true)
        #expect(history.events.map(\.kv.modRevision) == [2, 3, 4])
        #expect(history.events.map(\.type) == [.put, .put, .delete])
        #expect(!history.events[0].hasPrevKv)
        #expect(history.events[1].prevKv.value == k("1"))
        #expect(history.events[2].prevKv.value == k("2"))
        #expect(history.covered == 4)
        // A limit never splits one revision's events.
        try f.write { txn in
            for i in 0..<5 { try txn.put(key: k("m\(i)"), value: k("v"), lease: 0) }
        }
        let limited = try f.store.events(from: 5, through: 100, limit: 2, prevKV: false)
        #expect(limited.events.count == 5 && limited.covered == 5)
    }

    @Test func survivesReopen() throws {
        let f = try StoreFixture()
        try f.put("a", "1")
        try f.put("b", "2")
        let reopened = try KVStore(backend: try Backend(path: f.dir.path + "/db"))
        #expect(reopened.revisions.current == 3)
        #expect(try reopened.range(.single(k("b")), options: RangeOptions()).kvs[0].value == k("2"))
    }

    @Test func keyRangeOverlapAndContainment() {
        let ab = KeyRange.interval(from: k("a"), to: k("b"))
        #expect(ab.contains(k("a")) && ab.contains(k("az")) && !ab.contains(k("b")))
        #expect(ab.overlaps(.single(k("aa"))))
        #expect(!ab.overlaps(.single(k("b"))))
        #expect(KeyRange.from(k("c")).overlaps(.interval(from: k("a"), to: k("d"))))
        #expect(!KeyRange.from(k("d")).overlaps(.interval(from: k("a"), to: k("d"))))
        #expect(KeyRange(key: k("a"), rangeEnd: Data()) == .single(k("a")))
        #expect(KeyRange(key: k("a"), rangeEnd: Data([0])) == .from(k("a")))
    }
}
