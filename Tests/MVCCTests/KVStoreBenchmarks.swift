import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import MVCC

#if canImport(Glibc)
    import Glibc
#endif

/// In-process measurements of the key space (puts, head reads, ranges, start-up, index memory), printed rather than
/// asserted: timings on a shared machine are noise for a test, but the same harness before and after a change says
/// what the change cost. Runs only with `QUORUM_MVCC_BENCH=1` (and `QUORUM_MVCC_BENCH_KEYS`, default 100,000).
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["QUORUM_MVCC_BENCH"] == "1"))
struct KVStoreBenchmarks {
    static var keyCount: Int {
        ProcessInfo.processInfo.environment["QUORUM_MVCC_BENCH_KEYS"].flatMap { Int($0) } ?? 100_000
    }

    static func key(_ i: Int) -> Data { Data(String(format: "/registry/pods/%08d", i).utf8) }

    /// Heap bytes in use over all arenas: glibc's `malloc_info` totals (looked up at run time, as `Pprof` does: the
    /// Glibc module exports neither it nor `mallinfo2`), the arenas' memory less their free chunks plus mmapped ones.
    static func heapInUse() -> Int {
        #if canImport(Glibc)
            typealias MallocInfo = @convention(c) (Int32, UnsafeMutablePointer<FILE>?) -> Int32
            guard let symbol = dlsym(nil, "malloc_info"), let file = tmpfile() else { return 0 }
            defer { fclose(file) }
            guard unsafeBitCast(symbol, to: MallocInfo.self)(0, file) == 0 else { return 0 }
            fflush(file)
            rewind(file)
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = fread(&chunk, 1, chunk.count, file)
                if n <= 0 { break }
                bytes += chunk[0..<n]
            }
            let xml = String(decoding: bytes, as: UTF8.self)
            let totals = xml.range(of: "</heap>", options: .backwards).map { String(xml[$0.upperBound...]) } ?? xml
            func size(_ prefix: String) -> Int {
                guard let line = totals.split(separator: "\n").first(where: { $0.contains(prefix) }),
                    let r = line.range(of: "size=\"")
                else { return 0 }
                return Int(line[r.upperBound...].prefix { $0.isNumber }) ?? 0
            }
            return size("<system type=\"current\"") - size("<total type=\"fast\"") - size("<total type=\"rest\"")
                + size("<total type=\"mmap\"")
        #else
            return 0
        #endif
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Writes `count` keys with values of `valueSize` bytes, 100 puts per revision batch and commit.
    static func fill(_ backend: Backend, _ store: KVStore, count: Int, valueSize: Int) throws {
        let value = Data(repeating: 0x61, count: valueSize)
        var i = 0
        while i < count {
            try backend.beginBatch()
            for _ in 0..<100 where i < count {
                let txn = store.beginWrite()
                try txn.put(key: key(i), value: value, lease: 0)
                try store.end(txn)
                i += 1
            }
            try backend.commitBatch()
        }
    }

    @Test func putsReadsRangesAndIndexMemory() throws {
        let n = Self.keyCount
        let dir = TemporaryDirectory()
        let backend = try Backend(path: dir.path + "/db")
        let store = try KVStore(backend: backend)
        let put = try Self.time { try Self.fill(backend, store, count: n, valueSize: 256) }
        let overwrite = try Self.time { try Self.fill(backend, store, count: n, valueSize: 256) }
        var g = SeededRandom(seed: 1)
        let gets = 200_000
        var found = 0
        let get = try Self.time {
            for _ in 0..<gets {
                found += try store.range(.single(Self.key(Int.random(in: 0..<n, using: &g))), options: RangeOptions())
                    .kvs.count
            }
        }
        #expect(found == gets)
        let ranges = 2_000
        let range = try Self.time {
            for _ in 0..<ranges {
                let start = Int.random(in: 0..<(n - 100), using: &g)
                let r = KeyRange.interval(from: Self.key(start), to: Self.key(start + 100))
                let got = try store.range(r, options: RangeOptions()).kvs.count
                #expect(got == 100)
            }
        }
        let keysOnly = try Self.time {
            for _ in 0..<ranges {
                let start = Int.random(in: 0..<(n - 100), using: &g)
                let r = KeyRange.interval(from: Self.key(start), to: Self.key(start + 100))
                let got = try store.range(r, options: RangeOptions(keysOnly: true)).kvs.count
                #expect(got == 100)
            }
        }
        let countAll = try Self.time {
            for _ in 0..<20 {
                let got = try store.range(.from(Data()), options: RangeOptions(countOnly: true)).count
                #expect(got == n)
            }
        }
        // Index memory: the heap a reopened store holds once the index is built (the history is two rows per key).
        let before = Self.heapInUse()
        var reopened: KVStore? = try KVStore(backend: try Backend(path: dir.path + "/db"))
        let heap = Self.heapInUse() - before
        #expect(reopened?.keyCount() == n)
        reopened = nil
        // The same after a compaction at the head: one version per key, what a long-running member holds.
        try backend.beginBatch()
        try store.scheduleCompaction(store.revisions.current)
        while try !store.compactStep(budget: 1_000) {}
        try backend.commitBatch()
        let beforeCompacted = Self.heapInUse()
        var compacted: KVStore? = try KVStore(backend: try Backend(path: dir.path + "/db"))
        let heapCompacted = Self.heapInUse() - beforeCompacted
        #expect(compacted?.keyCount() == n)
        compacted = nil
        print(
            String(
                format:
                    "mvcc-bench keys=%d put=%.1fus overwrite=%.1fus get=%.2fus range100=%.1fus range100-keys-only=%.1fus "
                    + "count-all=%.1fms index-heap=%.0fB/key index-heap-compacted=%.0fB/key",
                n, put / Double(n) * 1e6, overwrite / Double(n) * 1e6, get / Double(gets) * 1e6,
                range / Double(ranges) * 1e6, keysOnly / Double(ranges) * 1e6, countAll / 20 * 1e3,
                Double(heap) / Double(n), Double(heapCompacted) / Double(n)))
    }

    /// Start-up (rebuilding the index) over the same number of keys with small and large values.
    @Test func startUpAgainstValueSize() throws {
        let n = max(1_000, Self.keyCount / 10)
        for size in [16, 16 * 1024] {
            let dir = TemporaryDirectory()
            let backend = try Backend(path: dir.path + "/db")
            try Self.fill(backend, try KVStore(backend: backend), count: n, valueSize: size)
            try backend.makeDurable()
            var seconds = Double.infinity
            for _ in 0..<3 {
                let fresh = try Backend(path: dir.path + "/db")
                seconds = min(seconds, try Self.time { _ = try KVStore(backend: fresh) })
            }
            print(String(format: "mvcc-bench start-up keys=%d value=%dB: %.1fms", n, size, seconds * 1e3))
        }
    }
}
