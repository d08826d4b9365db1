import Bolt
import Foundation
import TestSupport
import Testing

/// Files that real bbolt wrote after deletes carry free pages, listed on a freelist page (or, with etcd's
/// NoFreelistSync, not listed at all). The reader walks past them, and the consistency check accounts for them as
/// bbolt's `Tx.Check` does.
@Suite struct BoltFreelistTests {
    /// A database with bucket "b", plus three free pages appended after it and listed on its freelist page, the
    /// way a bbolt file looks after a transaction freed pages. `edit` may change the freelist's ids.
    func databaseWithFreePages(
        _ scratch: TemporaryDirectory, name: String, escapedCount: Bool = false,
        edit: (inout [UInt64]) -> Void = { _ in }
    ) throws -> (path: String, free: [UInt64], entries: [BoltEntry]) {
        let path = scratch.file(name)
        let entries = (0..<400).map { BoltEntry(key: Array("key-\(1000 + $0)".utf8), value: Array("value \($0)".utf8)) }
        let writer = try BoltWriter(path: path)
        try writer.writeBucket(Array("b".utf8), entries.map { ($0.key, $0.value) })
        _ = try writer.finish()
        var meta = try BoltReader(path: path).meta
        var bytes = try Bytes.read(path)
        let pageSize = Int(meta.pageSize)
        let hwm = meta.highWaterMark
        var free = [hwm, hwm + 1, hwm + 2]
        edit(&free)
        // The free pages hold leftovers of old data, as they do in bbolt.
        bytes += [UInt8](repeating: 0xAB, count: 3 * pageSize)
        // The freelist page: count, then the ids (bbolt puts the count in the first slot when it is 0xFFFF).
        let freelist = Int(meta.freelistPageID) * pageSize
        var ids = free
        var count = UInt16(ids.count)
        if escapedCount {
            ids.insert(UInt64(free.count), at: 0)
            count = 0xFFFF
        }
        bytes[freelist + 10] = UInt8(count & 0xFF)
        bytes[freelist + 11] = UInt8(count >> 8)
        for (i, id) in ids.enumerated() {
            for b in 0..<8 { bytes[freelist + 16 + i * 8 + b] = UInt8(truncatingIfNeeded: id >> (8 * UInt64(b))) }
        }
        meta.highWaterMark = hwm + 3
        bytes.replaceSubrange(0..<pageSize, with: meta.encodedPage(id: 0))
        meta.transactionID -= 1
        bytes.replaceSubrange(pageSize..<(2 * pageSize), with: meta.encodedPage(id: 1))
        try Bytes.write(bytes, to: path)
        return (path, free, entries)
    }

    @Test func freePagesOnAFreelistAreSkippedAndAccountedFor() throws {
        let scratch = TemporaryDirectory()
        for escaped in [false, true] {
            let db = try databaseWithFreePages(scratch, name: "free-\(escaped)", escapedCount: escaped)
            let reader = try BoltReader(path: db.path)
            #expect(try reader.freePageIDs() == db.free)
            #expect(try reader.check() == [])
            #expect(try dumpAll(reader)[Array("b".utf8)] == db.entries)
        }
    }

    @Test func theCheckReportsWhatBboltsCheckWould() throws {
        let scratch = TemporaryDirectory()
        // A live page on the freelist, a page freed twice, and a free page left off the list.
        let db = try databaseWithFreePages(scratch, name: "bad") { ids in
            ids = [3, ids[0], ids[0]]
        }
        let reader = try BoltReader(path: db.path)
        let problems = try reader.check()
        let hwm = reader.meta.highWaterMark - 3  // the first appended page
        #expect(problems.contains("page \(hwm): already freed"), "\(problems)")
        #expect(problems.contains("page 3: reachable freed"), "\(problems)")
        #expect(problems.contains("page \(hwm + 1): unreachable unfreed"), "\(problems)")
        #expect(problems.contains("page \(hwm + 2): unreachable unfreed"), "\(problems)")
    }
}
