import EtcdProto
import Foundation
import Synchronization
import Testing

@testable import Node

/// What a member queues for clients is bounded, and a caller's deadline is honoured: past a bound a request gets
/// etcd's "too many requests" at once; a write whose deadline passed before the Raft loop got to it is never
/// proposed.
@Suite struct BoundedQueueTests {
    /// Holds the apply loop until `release()`: entries commit (a lone member) but are not applied.
    final class ApplyGate: Sendable {
        private let held = DispatchSemaphore(value: 0)
        private let entered = DispatchSemaphore(value: 0)

        init(_ node: MemberNode) {
            node.applyQueue.push(
                .perform { [held, entered] _ in
                    entered.signal()
                    held.wait()
                })
            entered.wait()
        }

        func release() { held.signal() }
    }

    /// Holds the Raft loop until `release()`: proposals wait in its inbox.
    final class RaftGate: Sendable {
        private let held = DispatchSemaphore(value: 0)
        private let entered = DispatchSemaphore(value: 0)

        init(_ node: MemberNode) {
            node.perform { [held, entered] _ in
                entered.signal()
                held.wait()
            }
            entered.wait()
        }

        func release() { held.signal() }
    }

    static func put(_ key: String) -> Quorumpb_RaftRequest {
        var r = Quorumpb_RaftRequest()
        r.put.key = Data(key.utf8)
        r.put.value = Data("v".utf8)
        return r
    }

    /// Counts completions by outcome.
    final class Outcomes: Sendable {
        let succeeded = Atomic<Int>(0)
        let failed = Mutex<[EtcdError]>([])
        func record(_ result: ApplyResult) {
            switch result {
            case .success: succeeded.add(1, ordering: .relaxed)
            case .failure(let error): failed.withLock { $0.append(error) }
            }
        }
        var total: Int { succeeded.load(ordering: .relaxed) + failed.withLock { $0.count } }
    }

    @Test func proposalsPastTheCommitApplyGapGetTooManyRequests() async throws {
        let f = try NodeFixture()
        try await f.waitUntil { f.node.status.isLeader }
        let gate = ApplyGate(f.node)
        let outcomes = Outcomes()
        let sent = Int(MemberNode.maxCommitApplyGap) + 10
        for i in 0..<sent { f.node.propose(Self.put("k\(i)")) { outcomes.record($0) } }
        // etcd's rule: once more than 5000 committed entries wait to be applied, a new proposal is refused.
        try await f.waitUntil {
            f.node.status.commitIndex > f.node.applied + MemberNode.maxCommitApplyGap
        }
        #expect(await f.node.propose(Self.put("refused")).failure == .tooManyRequests)
        #expect(EtcdError.tooManyRequests.message == "etcdserver: too many requests")
        #expect(EtcdError.tooManyRequests.code == .resourceExhausted)
        gate.release()
        try await f.waitUntil { outcomes.total == sent }
        #expect(outcomes.succeeded.load(ordering: .relaxed) == sent)
        // Once applying caught up, proposals are accepted again.
        _ = try await f.put("after", "1")
        #expect(try f.get("refused") == nil)
    }

    @Test func pendingProposalsAreBoundedByCountAndBytes() async throws {
        let f = try NodeFixture {
            $0.maxPendingProposals = 10
            $0.maxPendingProposalBytes = 1 << 20
        }
        try await f.waitUntil { f.node.status.isLeader }
        let gate = ApplyGate(f.node)
        let outcomes = Outcomes()
        for i in 0..<10 { f.node.propose(Self.put("k\(i)")) { outcomes.record($0) } }
        #expect(await f.node.propose(Self.put("eleventh")).failure == .tooManyRequests)
        gate.release()
        try await f.waitUntil { outcomes.total == 10 }
        #expect(outcomes.succeeded.load(ordering: .relaxed) == 10)

        // By bytes: two proposals of 600 KB do not fit in 1 MiB together.
        let gate2 = ApplyGate(f.node)
        var big = Self.put("big")
        big.put.value = Data(repeating: 7, count: 600_000)
        let first = Outcomes()
        f.node.propose(big) { first.record($0) }
        #expect(await f.node.propose(big).failure == .tooManyRequests)
        gate2.release()
        try await f.waitUntil { first.total == 1 }
        #expect(first.succeeded.load(ordering: .relaxed) == 1)
    }

    @Test func aProposalWhoseDeadlinePassedBeforeTheRaftLoopGotToItIsNeverProposed() async throws {
        let f = try NodeFixture()
        try await f.waitUntil { f.node.status.isLeader }
        // A write of its own commits behind the new leader's empty entry, so nothing of the election is still
        // in flight when the log is measured.
        _ = try await f.put("warm", "0")
        let commitBefore = f.node.status.commitIndex
        let gate = RaftGate(f.node)
        let outcome = Outcomes()
        f.node.propose(Self.put("late"), deadline: f.clock.now + 1_000_000_000) { outcome.record($0) }
        f.clock.advance(seconds: 2)
        gate.release()
        try await f.waitUntil { outcome.total == 1 }
        #expect(outcome.failed.withLock { $0 } == [.deadlineExceeded])
        // A later write is applied; the late one never was, and took no log entry.
        _ = try await f.put("next", "1")
        #expect(try f.get("late") == nil)
        #expect(f.node.status.commitIndex == commitBefore + 1)
        // Already past on arrival: refused without queueing.
        #expect(await f.node.propose(Self.put("past"), deadline: f.clock.now).failure == .deadlineExceeded)
        #expect(EtcdError.deadlineExceeded.code == .deadlineExceeded)
    }

    @Test func aProposalWaitingForApplyFailsWhenItsDeadlinePasses() async throws {
        let f = try NodeFixture()
        try await f.waitUntil { f.node.status.isLeader }
        let gate = ApplyGate(f.node)
        let outcome = Outcomes()
        f.node.propose(Self.put("slow"), deadline: f.clock.now + 1_000_000_000) { outcome.record($0) }
        try await f.waitUntil { f.node.status.commitIndex > f.node.applied }
        // The member's own request timeout is far away (7 s); the caller's deadline is what passes.
        f.clock.advance(seconds: 1.5)
        try await f.waitUntil { outcome.total == 1 }
        #expect(outcome.failed.withLock { $0 } == [.deadlineExceeded])
        gate.release()
    }

    @Test func linearizableReadsAreBoundedAndHonourTheirDeadline() async throws {
        let f = try NodeFixture { $0.maxPendingReads = 3 }
        try await f.waitUntil { f.node.status.isLeader }
        let gate = RaftGate(f.node)
        let results = Mutex<[EtcdError?]>([])
        for _ in 0..<3 {
            f.node.readBarrier(deadline: f.clock.now + 1_000_000_000) { error in results.withLock { $0.append(error) } }
        }
        let refused = Mutex<EtcdError??>(nil)
        f.node.readBarrier { error in refused.withLock { $0 = .some(error) } }
        #expect(refused.withLock { $0 } == .some(.tooManyRequests))
        f.clock.advance(seconds: 2)
        gate.release()
        try await f.waitUntil { results.withLock { $0.count } == 3 }
        // Released or expired, every waiter is accounted for: reads are accepted again.
        try await f.node.readBarrier()
        #expect(f.node.pendingReadCount.load(ordering: .relaxed) == 0)
    }
}
