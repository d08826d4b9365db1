import Foundation
import Testing

@testable import MVCC

/// `ReadAhead` and the start-up scan built on it: the key index a member rebuilds must not depend on whether the
/// history was read ahead on a thread of its own or on the caller's.
@Suite struct ReadAheadTests {
    /// A producer that counts how far ahead of the consumer it got.
    final class Counter: @unchecked Sendable {
        let lock = NSLock()
        var made = 0
        var taken = 0
        var mostAhead = 0
        let limit: Int
        let failAt: Int?
        init(limit: Int, failAt: Int? = nil) {
            self.limit = limit
            self.failAt = failAt
        }
        struct Failure: Error {}
        func produce() throws -> Int? {
            try lock.withLock {
                if made == failAt { throw Failure() }
                guard made < limit else { return nil }
                made += 1
                mostAhead = max(mostAhead, made - taken)
                return made
            }
        }
        func took() { lock.withLock { taken += 1 } }
    }

    @Test func resultsComeInOrderAndTheProducerStaysWithinItsCapacity() throws {
        let counter = Counter(limit: 1000)
        let ahead = ReadAhead(capacity: 3, name: "test-read-ahead") { try counter.produce() }
        defer { ahead.close() }
        var seen: [Int] = []
        while let n = try ahead.next() {
            seen.append(n)
            counter.took()
        }
        #expect(seen == Array(1...1000))
        #expect(try ahead.next() == nil)
        // Three waiting plus the one being made when the consumer took its last.
        #expect(counter.mostAhead <= 4)
    }

    @Test func anErrorComesAfterTheResultsBeforeItThenTheEnd() throws {
        let counter = Counter(limit: 100, failAt: 5)
        let ahead = ReadAhead(capacity: 2, name: "test-read-ahead") { try counter.produce() }
        defer { ahead.close() }
        var seen: [Int] = []
        #expect(throws: Counter.Failure.self) {
            while let n = try ahead.next() { seen.append(n) }
        }
        #expect(seen == [1, 2, 3, 4, 5])
        #expect(try ahead.next() == nil)
    }

    @Test func closingEarlyStopsTheProducer() throws {
        let counter = Counter(limit: 1_000_000)
        let ahead = ReadAhead(capacity: 2, name: "test-read-ahead") { try counter.produce() }
        #expect(try ahead.next() == 1)
        ahead.close()
        let made = counter.lock.withLock { counter.made }
        #expect(made <= 4)
        #expect(try ahead.next() == nil)
    }

    /// A history several batches long, with keys overwritten and deleted across batch boundaries: read ahead and
    /// read in place give the same rows, and the reopened store answers as the one that wrote them.
    @Test func theHistoryReadAheadIsTheHistoryReadInPlace() throws {
        let f = try StoreFixture()
        let rows = HistoryIndexScan.batchRows * 2 + 17
        try f.write { txn in
            for i in 0..<rows / 2 { _ = try txn.put(key: k("key-\(i)"), value: k("v\(i)"), lease: 0) }
        }
        try f.write { txn in _ = try txn.deleteRange(.interval(from: k("key-1"), to: k("key-2"))) }
        try f.write { txn in
            for i in 0..<rows / 2 { _ = try txn.put(key: k("key-\(i)"), value: k("w\(i)"), lease: 0) }
        }

        func scan(readAhead: Bool) throws -> [(HistoryIndexScan.Row, Data)] {
            let scan = try HistoryIndexScan(
                connection: f.backend.writer, sql: KVStore.indexSource, readAhead: readAhead)
            defer { scan.close() }
            var out: [(HistoryIndexScan.Row, Data)] = []
            while let batch = try scan.next() { batch.forEach { row, key in out.append((row, Data(key))) } }
            return out
        }
        let inPlace = try scan(readAhead: false)
        let ahead = try scan(readAhead: true)
        #expect(inPlace.count > HistoryIndexScan.batchRows * 2)
        #expect(inPlace.map(\.0) == ahead.map(\.0))
        #expect(inPlace.map(\.1) == ahead.map(\.1))

        let reopened = try KVStore(backend: try Backend(path: f.dir.path + "/db"))
        let everything = KeyRange.from(Data([0]))
        #expect(try reopened.range(everything, options: RangeOptions()).kvs == f.get(everything).kvs)
        #expect(reopened.keyCount() == f.store.keyCount())
        #expect(reopened.revisions == f.store.revisions)
    }
}
