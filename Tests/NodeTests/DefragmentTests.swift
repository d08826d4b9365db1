import EtcdProto
import Foundation
import Storage
import Synchronization
import TestSupport
import Testing

@testable import MVCC
@testable import Node

/// Defragment returns free pages in steps interleaved with the apply loop's batches: writes go on while it runs.
@Suite(.serialized) struct DefragmentTests {
    /// What writers running beside a defragment did: each put's end and latency (monotonic nanoseconds).
    final class WriteLog: Sendable {
        let writes = Mutex<[(end: UInt64, nanoseconds: UInt64)]>([])
        let stop = Atomic<Bool>(false)
    }

    static let value = String(repeating: "d", count: 65_536)

    /// Puts `count` keys of 64 KiB, 16 proposals at a time.
    static func fill(_ f: NodeFixture, prefix: String, count: Int) async throws {
        let node: MemberNode = f.node
        for start in stride(from: 0, to: count, by: 16) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in start..<min(start + 16, count) {
                    var put = Quorumpb_RaftRequest()
                    put.put.key = Data("\(prefix)\(i)".utf8)
                    put.put.value = Data((Self.value + "\(i)").utf8)
                    group.addTask { _ = try await node.propose(put).get() }
                }
                for try await _ in group {}
            }
        }
    }

    /// A pragma's value as the member's readers see it (the writer belongs to the apply loop).
    static func pragma(_ f: NodeFixture, _ name: String) throws -> Int64 {
        try f.node.backend.read { try $0.scalar("PRAGMA \(name)") } ?? -1
    }

    /// Deletes every key under `prefix` and compacts (physically) at the newest revision.
    static func deleteAndCompact(_ f: NodeFixture, prefix: String) async throws {
        var delete = Quorumpb_RaftRequest()
        delete.deleteRange.key = Data(prefix.utf8)
        delete.deleteRange.rangeEnd = Data((prefix.dropLast() + "0").utf8)  // prefixes end in "/"
        _ = try await f.node.propose(delete).get()
        var compact = Quorumpb_RaftRequest()
        compact.compaction.revision = f.node.store.revisions.current
        compact.compaction.physical = true
        _ = try await f.node.propose(compact).get()
    }

    /// Every key and value, read back from the database file by a member started on it again.
    static func contentAfterRestart(_ f: NodeFixture, revision: Int64) async throws -> (UInt32, [Data: Data]) {
        try f.restart()
        try await f.waitUntil { f.node.status.isLeader }
        let kvs = try f.node.store.range(.from(Data()), options: RangeOptions()).kvs
        return (
            try f.node.store.hashKV(revision: revision).hash,
            Dictionary(uniqueKeysWithValues: kvs.map { ($0.key, $0.value) })
        )
    }

    /// A member that begins to stop answers a defragment under way with "server stopped" at once, instead of holding
    /// the stop until the defragment ends; what it freed stays freed, and the next one finishes the work.
    @Test func aStoppingMemberEndsADefragmentUnderWayAndItsCallerHearsSo() async throws {
        let f = try NodeFixture(clock: ManualClock(followingRealTime: true))
        try await f.waitUntil { f.node.status.isLeader }
        try await Self.fill(f, prefix: "free/", count: 384)
        try await Self.fill(f, prefix: "keep/", count: 192)
        try await Self.deleteAndCompact(f, prefix: "free/")
        let freeBefore = try Self.pragma(f, "freelist_count")
        #expect(freeBefore > 4 * Int64(MemberNode.defragmentMaxStepPages), "more than one step's pages")
        // The defragment starts (its first step runs once the free list is read ahead); right after that step, on the
        // apply loop before the next one, the member begins to stop.
        @Sendable func stopAfterTheFirstStep(_ node: MemberNode) {
            if node.defragmentPacer.steps > 0 {
                node.endMaintenanceForStop()
            } else {
                node.applyQueue.push(.perform { stopAfterTheFirstStep($0) })
            }
        }
        let outcome: EtcdError? = await withCheckedContinuation { continuation in
            f.node.applyQueue.push(
                .perform { node in
                    node.joinDefragment { continuation.resume(returning: $0) }
                    stopAfterTheFirstStep(node)
                })
        }
        #expect(outcome == .stopped)
        let running = await withCheckedContinuation { continuation in
            f.node.applyQueue.push(.perform { continuation.resume(returning: $0.defragmentPacer.isRunning) })
        }
        #expect(!running, "the queued step found the run over")
        let freeAfter = try Self.pragma(f, "freelist_count")
        #expect(freeAfter > 0 && freeAfter < freeBefore, "\(freeBefore) -> \(freeAfter)")
        try await f.node.defragment()
        #expect(try Self.pragma(f, "freelist_count") == 0)
    }

    @Test func writesCompleteWhileADefragmentRunsAndNothingIsLost() async throws {
        // Steps are paced and timed by the member's clock: here it follows real time, as a member's does. (On a
        // frozen clock every step runs to its page limit, and a loaded machine may finish the few steps before the
        // first put is through Raft.)
        let f = try NodeFixture(clock: ManualClock(followingRealTime: true))
        try await f.waitUntil { f.node.status.isLeader }
        #expect(try Self.pragma(f, "auto_vacuum") == 2)
        // 24 MiB to free first in the file, 12 MiB kept after it: the kept pages have to move down.
        try await Self.fill(f, prefix: "free/", count: 384)
        try await Self.fill(f, prefix: "keep/", count: 192)
        try await Self.deleteAndCompact(f, prefix: "free/")
        let before = try f.node.backend.size()
        #expect(before.total - before.inUse > 20_000_000, "\(before)")
        let revision = f.node.store.revisions.current
        let hash = try f.node.store.hashKV(revision: revision).hash
        let keysBefore = try f.node.store.range(.from(Data()), options: RangeOptions()).kvs

        // Writers put all along, a few requests always in flight, so that the apply loop has work queued whenever
        // Raft commits some: what a member under load sees. (One writer that starts after the defragment may, on a
        // loaded machine, see its first put through Raft only after the last step.)
        let log = WriteLog()
        let node: MemberNode = f.node
        let writers = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<4 {
                    group.addTask {
                        var i = 0
                        while !log.stop.load(ordering: .relaxed) && i < 2_500 {
                            var put = Quorumpb_RaftRequest()
                            put.put.key = Data("during/\(w)/\(i)".utf8)
                            put.put.value = Data("\(i)".utf8)
                            let start = monotonicNanoseconds()
                            _ = try await node.propose(put).get()
                            let end = monotonicNanoseconds()
                            log.writes.withLock { $0.append((end, end - start)) }
                            i += 1
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        try await f.waitUntil { log.writes.withLock { $0.count } >= 8 }
        let began = monotonicNanoseconds()
        try await node.defragment()
        let done = monotonicNanoseconds()
        // The writers go on past the end, so that a put the last step held is measured too.
        try await f.waitUntil { log.writes.withLock { w in w.filter { $0.end > done }.count } >= 4 }
        log.stop.store(true, ordering: .relaxed)
        try await writers.value
        let latencies = log.writes.withLock { $0 }
        let completedDuring = latencies.filter { $0.end > began && $0.end < done }.count
        let longest = latencies.filter { $0.end > began }.map(\.nanoseconds).max() ?? 0
        // Read on the apply loop, which owns it: the run's statistics stay until the next run starts.
        let pacer = await withCheckedContinuation { continuation in
            node.applyQueue.push(.perform { continuation.resume(returning: $0.defragmentPacer) })
        }
        // A defragment that held the apply loop throughout (a full VACUUM) runs one step and gives way to nothing.
        // Counted on the apply loop, not by the clock: a put that the last step held completes about when the
        // defragment's answer does, on either side of it.
        #expect(pacer.steps > 1 && pacer.yields >= 1, "\(pacer)")
        #expect(longest < 2_000_000_000, "a put waited \(longest / 1_000_000) ms")
        print(
            """
            defragment: \((done - began) / 1_000_000) ms, \(pacer.steps) steps, gave way \(pacer.yields) times; \
            \(completedDuring) puts completed meanwhile, the longest took \(longest / 1_000_000) ms
            """)
        let after = try f.node.backend.size()
        #expect(after.inUse < before.total / 2, "\(before) -> \(after)")
        #expect(try Self.pragma(f, "freelist_count") == 0)
        // Nothing was lost: the same hash at the revision before, every key there, and the puts made meanwhile.
        let (hashAfter, content) = try await Self.contentAfterRestart(f, revision: revision)
        #expect(hashAfter == hash)
        for kv in keysBefore { #expect(content[kv.key] == kv.value) }
        #expect(content.count == keysBefore.count + latencies.count)
        // Idle, a defragment leaves the files exactly the size of the pages in use, as `endpoint status` reports.
        try await f.node.defragment()
        #expect(f.node.backendSize == f.node.backendSizeInUse)
        #expect(Int64(FileSystem.fileSize(f.config.backendPath) ?? 0) == f.node.backendSizeInUse)
    }

    @Test func aDatabaseFromBeforeIncrementalVacuumIsConvertedOnItsFirstDefragment() async throws {
        let f = try NodeFixture()
        try await f.waitUntil { f.node.status.isLeader }
        try await Self.fill(f, prefix: "free/", count: 64)
        try await Self.fill(f, prefix: "keep/", count: 16)
        f.node.stop()
        f.node = nil
        // Rebuilt as Quorum created databases before: auto_vacuum NONE.
        do {
            let db = try SQLiteConnection(path: f.config.backendPath)
            try db.execute("PRAGMA auto_vacuum=NONE; VACUUM;")
            #expect(try db.scalar("PRAGMA auto_vacuum") == 0)
        }
        try f.start()
        try await f.waitUntil { f.node.status.isLeader }
        #expect(try Self.pragma(f, "auto_vacuum") == 0)
        try await Self.deleteAndCompact(f, prefix: "free/")
        let revision = f.node.store.revisions.current
        let hash = try f.node.store.hashKV(revision: revision).hash
        let keysBefore = try f.node.store.range(.from(Data()), options: RangeOptions()).kvs
        try await f.node.defragment()
        #expect(try Self.pragma(f, "auto_vacuum") == 2)
        #expect(f.node.backendSize == f.node.backendSizeInUse)
        #expect(f.node.backendSize < 64 * 65_536)
        let (hashAfter, content) = try await Self.contentAfterRestart(f, revision: revision)
        #expect(hashAfter == hash && content.count == keysBefore.count)
        for kv in keysBefore { #expect(content[kv.key] == kv.value) }
        // The next defragment goes in steps.
        try await Self.deleteAndCompact(f, prefix: "keep/")
        #expect(try Self.pragma(f, "freelist_count") > 0)
        try await f.node.defragment()
        #expect(try Self.pragma(f, "freelist_count") == 0 && f.node.backendSize == f.node.backendSizeInUse)
    }

    /// Defragments sent while one runs join it (one run, every caller answered once no free page is left), and a
    /// physical compaction can run beside it: both are paced steps on the apply loop.
    @Test func concurrentDefragmentsJoinOneRunAndACompactionGoesOnBesideThem() async throws {
        let f = try NodeFixture()
        try await f.waitUntil { f.node.status.isLeader }
        try await Self.fill(f, prefix: "free/", count: 256)
        try await Self.fill(f, prefix: "keep/", count: 64)
        try await Self.deleteAndCompact(f, prefix: "free/")
        #expect(try Self.pragma(f, "freelist_count") > 1_000)
        let node: MemberNode = f.node
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { try await node.defragment() } }
            group.addTask {
                // More history to remove while the defragment runs: the keys rewritten, then compacted physically.
                for i in 0..<32 {
                    var put = Quorumpb_RaftRequest()
                    put.put.key = Data("keep/\(i)".utf8)
                    put.put.value = Data("again".utf8)
                    _ = try await node.propose(put).get()
                }
                var compact = Quorumpb_RaftRequest()
                compact.compaction.revision = node.store.revisions.current
                compact.compaction.physical = true
                _ = try await node.propose(compact).get()
            }
            try await group.waitForAll()
        }
        #expect(!node.store.compactionPending)
        // The last answered run ended with no free page; the compaction may have freed more after it: one more
        // defragment (alone) leaves none.
        try await node.defragment()
        #expect(try Self.pragma(f, "freelist_count") == 0 && node.backendSize == node.backendSizeInUse)
        let keep = KeyRange.interval(from: Data("keep/".utf8), to: KeyRange.prefixEnd(Data("keep/".utf8)))
        #expect(try node.store.range(keep, options: RangeOptions()).kvs.count == 64)
    }
}
