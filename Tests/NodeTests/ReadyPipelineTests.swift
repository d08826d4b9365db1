import Raft
import Testing

@testable import Node

/// A follower member's Raft loop, Ready by Ready, with a real `RaftNode` and no I/O: what it must do in which
/// order, and that a snapshot being restored on the apply loop holds back the next Ready without holding back Raft.
@Suite struct ReadyPipelineTests {
    /// Member 1 of a founding three (entries 1–3 are the founding configuration), its first Ready handled.
    static func follower() -> (RaftNode, ReadyPipeline) {
        var raft = RaftNode(config: RaftConfig(id: 1, randomSeed: 7), state: RaftNode.bootstrapState(peers: [1, 2, 3]))
        var pipeline = ReadyPipeline()
        while pipeline.next(&raft) != nil { pipeline.finished(&raft) }
        return (raft, pipeline)
    }

    static func snapshotMessage(index: UInt64, term: UInt64) -> Message {
        Message(
            kind: .snapshot, from: 2, to: 1, term: term,
            snapshot: Snapshot(
                metadata: SnapshotMetadata(index: index, term: term, confState: ConfState(voters: [1, 2, 3]))))
    }

    static func nextSteps(_ pipeline: inout ReadyPipeline, _ raft: inout RaftNode) -> [ReadyPipeline.Step]? {
        pipeline.next(&raft)
    }

    static func kinds(_ steps: [ReadyPipeline.Step]) -> [String] {
        steps.map { step in
            switch step {
            case .softState: "softState"
            case .send: "send"
            case .restoreSnapshot: "restoreSnapshot"
            case .recordSnapshot: "recordSnapshot"
            case .persist: "persist"
            case .sendAfterPersist: "sendAfterPersist"
            case .apply: "apply"
            case .readStates: "readStates"
            case .droppedReads: "droppedReads"
            }
        }
    }

    @Test func aLeadersAppendIsPersistedBeforeItIsAcknowledgedAndAppliedAfter() throws {
        var (raft, pipeline) = Self.follower()
        try raft.step(
            Message(
                kind: .append, from: 2, to: 1, term: 2, logTerm: 1, index: 3,
                entries: [Entry(term: 2, index: 4, data: [1])], commit: 4))
        let steps = try #require(Self.nextSteps(&pipeline, &raft))
        let order = Self.kinds(steps).filter { $0 != "softState" }
        #expect(order == ["persist", "sendAfterPersist", "apply"])
        guard
            case .persist(let entries, let hardState, let sync) = steps.first(where: { Self.kinds([$0]) == ["persist"] }
            )
        else { return }
        #expect(entries.map(\.index) == [4] && sync && hardState?.term == 2)
        #expect(pipeline.stage == .handling)
        // Nothing more until this one is finished, whatever Raft learns meanwhile.
        #expect(pipeline.next(&raft) == nil)
        pipeline.finished(&raft)
        #expect(pipeline.stage == .idle)
    }

    @Test func aSnapshotBeingRestoredHoldsBackTheNextReadyButNotRaft() throws {
        var (raft, pipeline) = Self.follower()
        try raft.step(Self.snapshotMessage(index: 100, term: 2))
        let first = try #require(Self.nextSteps(&pipeline, &raft))
        // The restore is the last step: the acknowledgement of the snapshot must wait until it is in place.
        #expect(Self.kinds(first).last == "restoreSnapshot")
        #expect(!Self.kinds(first).contains("sendAfterPersist"))
        #expect(pipeline.stage == .restoringSnapshot(index: 100))

        // While the apply loop restores, the loop keeps stepping and ticking Raft: the leader's next append and
        // heartbeats are taken in, and Raft hands out nothing until the restore is reported.
        try raft.step(
            Message(
                kind: .append, from: 2, to: 1, term: 2, logTerm: 2, index: 100,
                entries: [Entry(term: 2, index: 101, data: [9])], commit: 101))
        for _ in 0..<3 {
            raft.tick()
            try raft.step(Message(kind: .heartbeat, from: 2, to: 1, term: 2, commit: 101))
        }
        #expect(pipeline.next(&raft) == nil)
        #expect(raft.role == .follower && raft.leaderID == 2)

        // Restored: the marker goes into the log before the hard state and the acknowledgement leave.
        let rest = pipeline.snapshotRestored()
        #expect(Self.kinds(rest).first == "recordSnapshot")
        #expect(Self.kinds(rest).contains("sendAfterPersist"))
        guard case .recordSnapshot(let meta) = rest.first else { return }
        #expect(meta.index == 100 && meta.term == 2)
        pipeline.finished(&raft)

        // What arrived during the restore comes out in the next Ready: entry 101 persisted, acknowledged, applied.
        let next = try #require(Self.nextSteps(&pipeline, &raft))
        var persisted: [UInt64] = []
        var applied: [UInt64] = []
        var acknowledged = false
        for step in next {
            switch step {
            case .persist(let entries, _, _): persisted += entries.map(\.index)
            case .apply(let entries): applied += entries.map(\.index)
            case .sendAfterPersist(let messages):
                acknowledged = messages.contains { $0.kind == .appendResponse && $0.index == 101 && !$0.reject }
            default: break
            }
        }
        #expect(persisted == [101] && applied == [101] && acknowledged)
        pipeline.finished(&raft)
        #expect(raft.appliedIndex == 101)
    }

    @Test func aVoteCastDuringARestoreLeavesOnlyOnceItIsDurable() throws {
        var (raft, pipeline) = Self.follower()
        try raft.step(Self.snapshotMessage(index: 50, term: 2))
        #expect(Self.nextSteps(&pipeline, &raft) != nil)
        // Member 3 campaigns in term 5 while the snapshot is restored (a leader transfer, so that this member's
        // recent contact with the leader does not make it ignore the request).
        try raft.step(
            Message(
                kind: .requestVote, from: 3, to: 1, term: 5, logTerm: 2, index: 60,
                context: Message.transferContext))
        #expect(pipeline.next(&raft) == nil)
        _ = pipeline.snapshotRestored()
        pipeline.finished(&raft)
        let next = try #require(Self.nextSteps(&pipeline, &raft))
        var persistedTermFive = false
        for step in next {
            switch step {
            case .persist(_, let hardState, let sync):
                persistedTermFive = hardState?.term == 5 && hardState?.vote == 3 && sync
            case .sendAfterPersist(let messages):
                #expect(persistedTermFive, "the vote left before it was durable")
                #expect(messages.contains { $0.kind == .requestVoteResponse && $0.to == 3 && !$0.reject })
            case .send(let messages):
                #expect(!messages.contains { $0.kind == .requestVoteResponse }, "a vote must wait for its persistence")
            default: break
            }
        }
        #expect(persistedTermFive)
    }
}
