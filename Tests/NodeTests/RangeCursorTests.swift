import EtcdProto
import Foundation
import MVCC
import Storage
import TestSupport
import Testing

@testable import Node

/// A Range read in pages (`RangeCursor`, what unary Range and RangeStream are built on) gives exactly the answer of
/// the unpaged read (`RangeExecution`) for every kind of request, whatever the page size; a compaction past the
/// pinned revision fails the next page; keys-only and count-only pages never look at a value.
@Suite struct RangeCursorTests {
    /// A store with a history of puts, deletions and a compaction, behind a value cache of `budget` bytes.
    final class Store {
        let dir = TemporaryDirectory()
        let backend: Backend
        let store: KVStore

        init(budget: Int) throws {
            backend = try Backend(path: dir.path + "/db")
            store = try KVStore(backend: backend, valueCacheBytes: budget)
        }

        func write(_ body: (KVWriteTxn) throws -> Void) throws {
            try backend.beginBatch()
            let txn = store.beginWrite()
            try body(txn)
            try store.end(txn)
        }
    }

    static func key(_ i: Int) -> Data { Data("k/\(String(format: "%03d", i))".utf8) }

    /// The same random history in every store: puts (some in multi-key revisions), deletions, lazy commits, and a
    /// compaction part way.
    static func fill(_ stores: [Store], _ g: inout SeededRandom) throws {
        for step in 0..<300 {
            let kind = Int.random(in: 0..<10, using: &g)
            let keys = (0..<Int.random(in: 1...4, using: &g)).map { _ in Int.random(in: 0..<80, using: &g) }
            let size = Int.random(in: 0...300, using: &g)
            for s in stores {
                try s.write { txn in
                    for k in Set(keys).sorted() {
                        if kind == 0 {
                            _ = try txn.deleteRange(.single(key(k)))
                        } else {
                            _ = try txn.put(
                                key: key(k), value: Data(repeating: UInt8(step & 0xff), count: size), lease: 0)
                        }
                    }
                }
                if kind == 1 { try s.backend.commitBatch() }
                if step == 150 {
                    try s.store.scheduleCompaction(s.store.revisions.current - 40)
                    while try !s.store.compactStep(budget: 7) {}
                }
            }
        }
    }

    static func randomRequest(_ g: inout SeededRandom, _ revisions: RevisionState) -> Etcdserverpb_RangeRequest {
        var r = Etcdserverpb_RangeRequest()
        switch Int.random(in: 0..<5, using: &g) {
        case 0: r.key = key(Int.random(in: 0..<80, using: &g))  // one key
        case 1:
            r.key = Data("k/0".utf8)  // a prefix
            r.rangeEnd = Data("k/1".utf8)
        case 2:
            r.key = key(Int.random(in: 0..<80, using: &g))  // from a key on
            r.rangeEnd = Data([0])
        case 3:
            let a = Int.random(in: 0..<80, using: &g)
            r.key = key(a)
            r.rangeEnd = key(a + Int.random(in: 0...30, using: &g))  // an interval (maybe empty)
        default:
            r.key = Data([0])  // everything
            r.rangeEnd = Data([0])
        }
        if Bool.random(using: &g) { r.limit = Int64.random(in: 1...12, using: &g) }
        switch Int.random(in: 0..<6, using: &g) {
        case 0: r.keysOnly = true
        case 1: r.countOnly = true
        default: break
        }
        switch Int.random(in: 0..<4, using: &g) {
        case 0:
            // Anywhere from just below the compaction (refused) to just past the newest (refused too).
            r.revision = Int64.random(in: max(1, revisions.compacted - 2)...revisions.current + 1, using: &g)
        case 1:
            // The edges themselves, so every run asks for compacted and future revisions, not only a lucky seed.
            let edges = [revisions.compacted - 1, revisions.compacted, revisions.current, revisions.current + 1]
            r.revision = max(1, edges[Int.random(in: 0..<edges.count, using: &g)])
        default: break
        }
        if Int.random(in: 0..<3, using: &g) == 0 {
            let pick = { (g: inout SeededRandom) in Int64.random(in: 0...revisions.current, using: &g) }
            switch Int.random(in: 0..<4, using: &g) {
            case 0: r.minModRevision = pick(&g)
            case 1: r.maxModRevision = pick(&g)
            case 2: r.minCreateRevision = pick(&g)
            default: r.maxCreateRevision = pick(&g)
            }
        }
        return r
    }

    /// The unpaged answer, or its error.
    static func unpaged(_ r: Etcdserverpb_RangeRequest, _ store: KVStore) -> Result<
        Etcdserverpb_RangeResponse, EtcdError
    > {
        Result { () throws(EtcdError) in
            do {
                return try RangeExecution.execute(r) { range, options in try store.range(range, options: options) }
            } catch let error as EtcdError {
                throw error
            } catch {
                throw .internal("\(error)")
            }
        }
    }

    /// Every page merged into one answer, as a RangeStream client merges its messages; also how many pages it took.
    static func paged(_ r: Etcdserverpb_RangeRequest, _ store: KVStore, budget: Int) -> (
        Result<Etcdserverpb_RangeResponse, EtcdError>, pages: Int
    ) {
        var cursor = RangeCursor(r, store: store)
        var response = Etcdserverpb_RangeResponse()
        var pages = 0
        do throws(EtcdError) {
            repeat {
                response.kvs += try cursor.next(byteBudget: budget)
                pages += 1
            } while !cursor.finished
        } catch {
            return (.failure(error), pages)
        }
        response.header.revision = cursor.headerRevision
        response.more = cursor.more
        response.count = cursor.count
        return (.success(response), pages)
    }

    @Test func pagesMergedAreTheUnpagedAnswerForEveryKindOfRequest() throws {
        var g = SeededRandom()
        let tiny = try Store(budget: 1_024)  // nearly every value comes from SQLite
        let full = try Store(budget: 64 << 20)
        try Self.fill([tiny, full], &g)
        var multiPage = 0
        var errors = 0
        for i in 0..<600 {
            let s = Bool.random(using: &g) ? tiny : full
            let r = Self.randomRequest(&g, s.store.revisions)
            let budget = Int.random(in: 1...2_000, using: &g)
            let expected = Self.unpaged(r, s.store)
            let (got, pages) = Self.paged(r, s.store, budget: budget)
            #expect(got == expected, "request \(i): \(r) budget \(budget)")
            if pages > 1 { multiPage += 1 }
            if case .failure = expected { errors += 1 }
        }
        #expect(multiPage > 100, "most multi-key answers took several pages")
        #expect(errors > 0, "compacted and future revisions were asked for")
    }

    @Test func aCompactionPastThePinnedRevisionFailsTheNextPage() throws {
        let s = try Store(budget: 64 << 20)
        try s.write { txn in
            for i in 0..<50 { _ = try txn.put(key: Self.key(i), value: Data(repeating: 1, count: 100), lease: 0) }
        }
        var r = Etcdserverpb_RangeRequest()
        r.key = Data([0])
        r.rangeEnd = Data([0])
        var cursor = RangeCursor(r, store: s.store)
        let first = try cursor.next(byteBudget: 500)
        #expect(!first.isEmpty && !cursor.finished)
        let pinned = cursor.pinnedRevision
        // Every key is written again: the pinned versions are history now, still readable...
        try s.write { txn in
            for i in 0..<50 { _ = try txn.put(key: Self.key(i), value: Data(repeating: 2, count: 100), lease: 0) }
        }
        let second = try cursor.next(byteBudget: 500)
        #expect(second.allSatisfy { $0.modRevision == pinned && $0.value == Data(repeating: 1, count: 100) })
        // ...until a compaction passes them.
        try s.store.scheduleCompaction(s.store.revisions.current)
        #expect(throws: EtcdError.compacted) { _ = try cursor.next(byteBudget: 500) }
    }

    @Test func keysOnlyAndCountOnlyPagesNeverLookAtAValue() throws {
        var g = SeededRandom()
        let s = try Store(budget: 0)  // no value is in memory
        try Self.fill([s], &g)
        try s.backend.commitBatch()
        let misses = s.store.valueCacheStats.misses
        for flags in [(true, false), (false, true)] {
            var r = Etcdserverpb_RangeRequest()
            r.key = Data([0])
            r.rangeEnd = Data([0])
            r.keysOnly = flags.0
            r.countOnly = flags.1
            let (got, _) = Self.paged(r, s.store, budget: 64)
            let response = try got.get()
            #expect(response.count > 0)
            #expect(response.kvs.allSatisfy { $0.value.isEmpty })
        }
        #expect(s.store.valueCacheStats.misses == misses, "no value was looked for")
    }
}
