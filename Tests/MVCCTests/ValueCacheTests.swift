import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import MVCC

/// The value cache on its own: the budget bounds it, and CLOCK spares values read since the hand last passed.
@Suite struct ValueCacheTests {
    func value(_ n: Int) -> Data { Data(repeating: 0x41, count: n) }

    @Test func neverHoldsMoreThanItsBudget() {
        var g = SeededRandom()
        let cache = ValueCache(budget: 4_096)
        for main in Int64(1)...5_000 {
            cache.insert(main: main, sub: 0, value(Int.random(in: 0...600, using: &g)))
            if Bool.random(using: &g) { _ = cache.value(main: Int64.random(in: 1...main, using: &g), sub: 0) }
            if Int.random(in: 0..<10, using: &g) == 0 {
                cache.remove(main: Int64.random(in: 1...main, using: &g), sub: 0)
            }
            #expect(cache.bytes <= cache.budget)
            #expect(cache.bytes >= cache.count * ValueCache.entryOverhead)
        }
        #expect(cache.count > 0)
    }

    @Test func valuesLargerThanTheBudgetAndAZeroBudgetCacheNothing() {
        let small = ValueCache(budget: 1_024)
        small.insert(main: 1, sub: 0, value(1_024))
        #expect(small.count == 0 && small.bytes == 0 && small.value(main: 1, sub: 0) == nil)
        let none = ValueCache(budget: 0)
        none.insert(main: 1, sub: 0, Data())
        #expect(none.count == 0)
    }

    @Test func aValueReadSinceTheHandPassedSurvivesTheNextEviction() {
        let per = 100 + ValueCache.entryOverhead
        let cache = ValueCache(budget: 3 * per)
        for main in Int64(1)...3 { cache.insert(main: main, sub: 0, value(100)) }
        #expect(cache.value(main: 1, sub: 0) != nil)
        cache.insert(main: 4, sub: 0, value(100))  // evicts 2, the first unreferenced one; 1 is spared
        #expect(cache.value(main: 1, sub: 0) != nil)
        #expect(cache.value(main: 2, sub: 0) == nil)
        #expect(cache.value(main: 3, sub: 0) != nil && cache.value(main: 4, sub: 0) != nil)
        #expect(cache.count == 3 && cache.bytes == 3 * per)
    }
}

/// The key space with a value cache so small (1 KiB) that nearly every read misses, against the same operations on
/// a store whose cache holds everything: every answer must be identical (puts, overwrites, deletions, transactions,
/// ranges with limit, keys-only and count-only at the head and at older revisions, watch history with previous
/// versions, compaction, lazy commits and restarts), and the small cache never exceeds its budget.
@Suite struct TinyValueCacheTests {
    /// One store: its directory, backend and key space, reopened on `restart`.
    final class Member {
        let dir = TemporaryDirectory()
        let budget: Int
        var backend: Backend
        var store: KVStore

        init(budget: Int) throws {
            self.budget = budget
            backend = try Backend(path: dir.path + "/db")
            store = try KVStore(backend: backend, valueCacheBytes: budget)
        }

        /// Hits and misses of the caches this member had before its last restart.
        var earlier = (hits: 0, misses: 0)

        func restart() throws {
            earlier = (earlier.hits + cache.hits, earlier.misses + cache.misses)
            try backend.commitBatch()
            backend = try Backend(path: dir.path + "/db")
            store = try KVStore(backend: backend, valueCacheBytes: budget)
        }

        var cache: ValueCache { store.state.withLock { $0.values } }
    }

    /// A range's answer, or its error, comparable across the two stores.
    struct Answer: Equatable {
        var kvs: [Mvccpb_KeyValue] = []
        var count = 0
        var revision: Int64 = 0
        var error: String?
    }

    static func answer(_ body: () throws -> RangeResult) -> Answer {
        do {
            let r = try body()
            return Answer(kvs: r.kvs, count: r.count, revision: r.revision)
        } catch {
            return Answer(error: "\(error)")
        }
    }

    static let keys = (0..<24).map { Data("k\($0 < 10 ? "0" : "")\($0)".utf8) }

    static func randomValue(_ g: inout SeededRandom) -> Data {
        switch Int.random(in: 0..<10, using: &g) {
        case 0: return Data()
        case 1: return Data(g.bytes(Int.random(in: 1_500...3_000, using: &g)))  // larger than the whole budget
        default: return Data(g.bytes(Int.random(in: 1...300, using: &g)))
        }
    }

    static func randomRange(_ g: inout SeededRandom) -> KeyRange {
        let a = keys.randomElement(using: &g)!
        switch Int.random(in: 0..<4, using: &g) {
        case 0: return .single(a)
        case 1: return .from(a)
        case 2: return .interval(from: a, to: keys.randomElement(using: &g)!)
        default: return .from(Data())
        }
    }

    static func randomOptions(_ g: inout SeededRandom, _ revisions: RevisionState) -> RangeOptions {
        var o = RangeOptions()
        if Bool.random(using: &g) { o.limit = Int.random(in: 1...5, using: &g) }
        switch Int.random(in: 0..<4, using: &g) {
        case 0: o.revision = Int64.random(in: max(1, revisions.compacted - 1)...revisions.current + 1, using: &g)
        case 1: o.revision = revisions.current
        default: o.revision = 0
        }
        switch Int.random(in: 0..<5, using: &g) {
        case 0: o.keysOnly = true
        case 1: o.countOnly = true
        default: break
        }
        return o
    }

    /// What `/metrics` exports (`quorum_mvcc_value_cache_*`): hits and misses counted across a snapshot install
    /// (`reload`, which replaces the cache), so the counters never go back, and the bytes held now.
    @Test func cacheStatsCountLookupsAcrossAReload() throws {
        let m = try Member(budget: 1 << 20)
        try m.backend.beginBatch()
        let txn = m.store.beginWrite()
        for key in Self.keys { _ = try txn.put(key: key, value: Data(repeating: 0x61, count: 100), lease: 0) }
        try m.store.end(txn)
        try m.backend.commitBatch()
        let all = KeyRange(key: Data([0]), rangeEnd: Data([0]))
        _ = try m.store.range(all, options: RangeOptions())
        let before = m.store.valueCacheStats
        #expect(before.hits >= Self.keys.count, "\(before)")
        #expect(before.bytes >= Self.keys.count * 100, "\(before)")
        try m.store.reload()
        // The new cache is empty: the next read misses every value, and the counts go on from where they were.
        _ = try m.store.range(all, options: RangeOptions())
        let after = m.store.valueCacheStats
        #expect(after.hits >= before.hits, "\(before) \(after)")
        #expect(after.misses >= before.misses + Self.keys.count, "\(before) \(after)")
    }

    @Test func aTinyCacheAnswersExactlyAsAnUnlimitedOne() throws {
        var g = SeededRandom()
        let tiny = try Member(budget: 1_024)
        let full = try Member(budget: Int.max)
        let members = [tiny, full]
        var checkedReads = 0
        for step in 0..<1_500 {
            let revisions = tiny.store.revisions
            #expect(revisions == full.store.revisions, "step \(step)")
            let op = Int.random(in: 0..<100, using: &g)
            switch op {
            case 0..<40:
                // One write: puts, deletions and reads inside a transaction, as the apply loop runs a txn.
                let steps = op < 30 ? 1 : Int.random(in: 2...5, using: &g)
                var plan: [(kind: Int, key: Data, value: Data, range: KeyRange, options: RangeOptions)] = []
                for _ in 0..<steps {
                    plan.append(
                        (
                            Int.random(in: 0..<10, using: &g), Self.keys.randomElement(using: &g)!,
                            Self.randomValue(&g), Self.randomRange(&g), Self.randomOptions(&g, revisions)
                        ))
                }
                let lease = Int64.random(in: 0...2, using: &g)
                var outcomes: [[String]] = []
                for m in members {
                    try m.backend.beginBatch()
                    let txn = m.store.beginWrite()
                    var seen: [String] = []
                    for p in plan {
                        switch p.kind {
                        case 0..<6:
                            let prev = try txn.put(key: p.key, value: p.value, lease: lease)
                            seen.append("put prev \(String(describing: prev))")
                        case 6..<8:
                            seen.append("deleted \(try txn.deleteRange(p.range))")
                        default:
                            var o = p.options
                            o.revision = 0
                            seen.append("read \(Self.answer { try txn.range(p.range, options: o) })")
                            seen.append("get \(String(describing: try txn.get(p.key)))")
                        }
                    }
                    try m.store.end(txn)
                    seen.append("events \(txn.events)")
                    outcomes.append(seen)
                }
                #expect(outcomes[0] == outcomes[1], "step \(step)")
            case 40..<75:
                let range = Self.randomRange(&g)
                let options = Self.randomOptions(&g, revisions)
                let misses = tiny.cache.misses
                let a = Self.answer { try tiny.store.range(range, options: options) }
                let b = Self.answer { try full.store.range(range, options: options) }
                #expect(a == b, "step \(step): \(range) \(options)")
                if options.keysOnly || options.countOnly {
                    #expect(tiny.cache.misses == misses, "keys-only and count-only reads never look for values")
                    #expect(a.kvs.allSatisfy { $0.value.isEmpty })
                }
                checkedReads += 1
            case 75..<82:
                let from = Int64.random(in: max(1, revisions.compacted)...revisions.current + 1, using: &g)
                let limit = Int.random(in: 1...20, using: &g)
                func history(_ m: Member) -> String {
                    do {
                        let e = try m.store.events(from: from, through: Int64.max, limit: limit, prevKV: true)
                        return "\(e.events) \(e.covered)"
                    } catch { return "\(error)" }
                }
                #expect(history(tiny) == history(full), "step \(step)")
            case 82..<90:
                for m in members { try m.backend.commitBatch() }
            case 90..<94:
                guard revisions.current > revisions.compacted + 1 else { break }
                let at = Int64.random(in: revisions.compacted + 1...revisions.current, using: &g)
                let finish = Bool.random(using: &g)
                for m in members {
                    try m.backend.beginBatch()
                    try m.store.scheduleCompaction(at)
                    // Physical removal is sometimes left pending: a restart or a later compaction finishes it.
                    if finish {
                        while try !m.store.compactStep(budget: 3) {}
                    } else {
                        try m.store.compactStep(budget: 3)
                    }
                }
            case 94..<97:
                for m in members { try m.restart() }
                #expect(tiny.store.keyCount() == full.store.keyCount())
            default:
                let hashes = try members.map { try $0.store.hashKV(revision: 0).hash }
                #expect(hashes[0] == hashes[1], "step \(step)")
            }
            #expect(tiny.cache.bytes <= tiny.budget, "step \(step)")
        }
        #expect(checkedReads > 300)
        let misses = tiny.earlier.misses + tiny.cache.misses
        let hits = tiny.earlier.hits + tiny.cache.hits
        print("tiny cache: \(hits) hits, \(misses) misses over \(checkedReads) reads")
        #expect(misses > hits, "the tiny cache misses most reads, so SQLite answered them")
    }

    /// Values too large for the cache are read back from SQLite after a restart, byte for byte, and a keys-only read
    /// of them needs none.
    @Test func largeValuesSurviveARestartWithoutACache() throws {
        let m = try Member(budget: 0)
        let big = Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try m.backend.beginBatch()
        let txn = m.store.beginWrite()
        try txn.put(key: Data("big".utf8), value: big, lease: 0)
        try txn.put(key: Data("empty".utf8), value: Data(), lease: 0)
        try m.store.end(txn)
        #expect(try m.store.range(.single(Data("big".utf8)), options: RangeOptions()).kvs.first?.value == big)
        try m.restart()
        let all = try m.store.range(.from(Data()), options: RangeOptions())
        #expect(all.kvs.map(\.value) == [big, Data()])
        #expect(all.kvs.map(\.version) == [1, 1] && all.kvs.map(\.modRevision) == [2, 2])
        let misses = m.cache.misses
        #expect(try m.store.range(.from(Data()), options: RangeOptions(keysOnly: true)).kvs.count == 2)
        #expect(m.cache.misses == misses)
    }
}
