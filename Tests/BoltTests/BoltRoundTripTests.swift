import Bolt
import Foundation
import TestSupport
import Testing

/// Files written by `BoltWriter` read back through `BoltReader` exactly, whatever the mix of bucket sizes, key
/// sizes and value sizes, and pass bbolt's own consistency check.
@Suite struct BoltRoundTripTests {
    /// A bucket's worth of random, strictly ascending keys with values of the requested sizes.
    static func randomEntries(
        count: Int, keyLength: ClosedRange<Int>, valueLength: () -> Int, using random: inout SeededRandom
    ) -> [BoltEntry] {
        var keys = Set<[UInt8]>()
        while keys.count < count {
            keys.insert(random.bytes(Int.random(in: keyLength, using: &random)))
        }
        return keys.sorted { $0.lexicographicallyPrecedes($1) }.map {
            BoltEntry(key: $0, value: random.bytes(valueLength()))
        }
    }

    @Test func randomBucketsOfEveryShapeReadBackExactly() throws {
        var random = SeededRandom()
        let scratch = TemporaryDirectory()
        var rng = random
        // An empty bucket, a tiny one (inlined), one with empty values, one with values several pages long, one with
        // long keys, and one with 200k small entries (a three-level tree).
        var expected: [[UInt8]: [BoltEntry]] = [:]
        expected[[UInt8]("empty")] = []
        expected[[UInt8]("tiny")] = [BoltEntry(key: [UInt8]("a"), value: [UInt8]("1"))]
        expected[[UInt8]("empty-values")] = Self.randomEntries(
            count: 3000, keyLength: 1...12, valueLength: { 0 }, using: &rng)
        expected[[UInt8]("large-values")] = Self.randomEntries(
            count: 40, keyLength: 4...8, valueLength: { Int.random(in: 0...20_000, using: &random) }, using: &rng)
        expected[[UInt8]("long-keys")] = Self.randomEntries(
            count: 500, keyLength: 200...5000, valueLength: { Int.random(in: 0...64, using: &random) }, using: &rng)
        expected[[UInt8]("many")] = (0..<200_000).map { i in
            var key = [UInt8]("k")
            withUnsafeBytes(of: UInt32(i).bigEndian) { key.append(contentsOf: $0) }
            return BoltEntry(key: key, value: [UInt8](repeating: UInt8(i & 0xFF), count: i % 24))
        }
        let path = scratch.file("db")
        let writer = try BoltWriter(path: path)
        // Buckets go in in any order; the root bucket sorts them.
        for name in expected.keys.shuffled(using: &random) {
            try writer.writeBucket(name, (expected[name] ?? []).map { ($0.key, $0.value) })
        }
        let summary = try writer.finish()
        #expect(summary.keyCount == expected.values.reduce(0) { $0 + $1.count })
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64 == summary.fileSize)

        let reader = try BoltReader(path: path)
        #expect(reader.pageSize == 4096)
        #expect(reader.rejectedMeta == nil)
        #expect(reader.meta.highWaterMark == summary.highWaterMark)
        #expect(try reader.bucketNames() == expected.keys.sorted { $0.lexicographicallyPrecedes($1) })
        let actual = try dumpAll(reader)
        for (name, entries) in expected {
            let got = actual[name] ?? []
            #expect(got.count == entries.count, "bucket \(String(decoding: name, as: UTF8.self))")
            #expect(got == entries, "bucket \(String(decoding: name, as: UTF8.self))")
        }
        #expect(try reader.check() == [])
        #expect(try reader.freePageIDs() == [])
    }

    @Test func smallBucketsAreInlinedAndLargeOnesGetTheirOwnPages() throws {
        let scratch = TemporaryDirectory()
        let path = scratch.file("db")
        let writer = try BoltWriter(path: path)
        try writer.writeBucket([UInt8]("small"), [([UInt8]("k"), [UInt8]("v"))])
        try writer.writeBucket(
            [UInt8]("big"), (0..<100).map { ([UInt8]("key\(1000 + $0)"), [UInt8](repeating: 7, count: 100)) })
        _ = try writer.finish()
        let reader = try BoltReader(path: path)
        var root = try reader.rootCursor()
        var headers: [String: [UInt8]] = [:]
        while let entry = try root.next() {
            #expect(entry.isBucket)
            headers[String(decoding: entry.key, as: UTF8.self)] = entry.value
        }
        // A bucket header starts with the root page id: 0 means the page follows inline.
        let small = try #require(headers["small"])
        #expect(small.prefix(8).allSatisfy { $0 == 0 })
        let inlineSize = 16 + 16 + 16 + 2  // bucket header, page header, one element, key and value
        #expect(small.count == inlineSize)
        #expect(headers["big"]?.count == 16)
        #expect(try reader.check() == [])
    }

    @Test func aValueOfManyPagesUsesOverflowPagesAndReadsBack() throws {
        var random = SeededRandom()
        let scratch = TemporaryDirectory()
        let path = scratch.file("db")
        let huge = random.bytes(1_000_000)
        let writer = try BoltWriter(path: path)
        try writer.writeBucket(
            [UInt8]("b"), [([UInt8]("a"), [UInt8]("x")), ([UInt8]("huge"), huge), ([UInt8]("z"), [UInt8]("y"))])
        let summary = try writer.finish()
        #expect(summary.highWaterMark > 1_000_000 / 4096)
        let entries = try dumpAll(try BoltReader(path: path))[[UInt8]("b")] ?? []
        #expect(entries.map(\.key) == [[UInt8]("a"), [UInt8]("huge"), [UInt8]("z")])
        #expect(entries.count == 3 && entries[1].value == huge)
        #expect(try BoltReader(path: path).check() == [])
    }

    @Test func aMissingBucketIsReportedByName() throws {
        let scratch = TemporaryDirectory()
        let path = scratch.file("db")
        let writer = try BoltWriter(path: path)
        try writer.writeBucket([UInt8]("present"), [([UInt8]("k"), [UInt8]("v"))])
        _ = try writer.finish()
        let reader = try BoltReader(path: path)
        #expect(try reader.hasBucket([UInt8]("present")))
        #expect(try !reader.hasBucket([UInt8]("absent")))
        let error = #expect(throws: BoltError.self) { try reader.cursor(bucket: [UInt8]("absent")) }
        #expect(error?.kind == .bucketNotFound)
        #expect(error?.description.contains("absent") == true)
    }

    @Test func aDatabaseWithNoBucketsIsValid() throws {
        let scratch = TemporaryDirectory()
        let path = scratch.file("db")
        let summary = try BoltWriter(path: path).finish()
        #expect(summary.highWaterMark == 4)  // two meta pages, an empty root leaf, the freelist
        let reader = try BoltReader(path: path)
        #expect(try reader.bucketNames() == [])
        #expect(try reader.check() == [])
    }

    @Test func theWriterRefusesWhatBboltWouldRefuse() throws {
        let scratch = TemporaryDirectory()
        let writer = try BoltWriter(path: scratch.file("db"))
        try writer.beginBucket([UInt8]("b"))
        try writer.put(key: [UInt8]("b"), value: [])
        for (key, reason) in [([UInt8]("a"), "keys must ascend"), ([UInt8]("b"), "keys must ascend"), ([], "empty")] {
            let error = #expect(throws: BoltError.self) { try writer.put(key: key, value: []) }
            #expect(error?.kind == .invalidArgument)
            #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
        }
        let tooLong = #expect(throws: BoltError.self) {
            try writer.put(key: [UInt8](repeating: 0x7A, count: 40_000), value: [])
        }
        #expect(tooLong?.message.contains("32768") == true)
        let nested = #expect(throws: BoltError.self) { try writer.beginBucket([UInt8]("c")) }
        #expect(nested?.message.contains("still open") == true)
        try writer.endBucket()
        let duplicate = #expect(throws: BoltError.self) { try writer.beginBucket([UInt8]("b")) }
        #expect(duplicate?.message.contains("already written") == true)
        _ = try writer.finish()
        #expect(throws: BoltError.self) { try writer.beginBucket([UInt8]("late")) }
    }
}
