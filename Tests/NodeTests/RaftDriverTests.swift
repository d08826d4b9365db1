import Raft
import Testing

@testable import Node

/// The member's Raft loop as stories, with a real `RaftNode` and no threads, files or network: what the driver
/// asks the member to do, in which order, when requests arrive, time passes and the apply loop reports back.
/// Peers are played by hand: their answers are messages stepped in through `onInbox`.
@Suite struct RaftDriverTests {
    typealias Action = RaftDriver.Action

    /// Member 1 of a founding three (entries 1–3 are the founding configuration), its first Readies handled.
    static func follower() -> RaftDriver {
        let raft = RaftNode(config: RaftConfig(id: 1, randomSeed: 7), state: RaftNode.bootstrapState(peers: [1, 2, 3]))
        var driver = RaftDriver(raft: raft, catchUpEntries: 1000, heartbeatNanoseconds: 100_000_000)
        _ = ready(&driver)
        return driver
    }

    /// Member 1 of a founding three, elected, its first entry of the term replicated to both others and committed.
    static func leader() throws -> RaftDriver {
        var driver = follower()
        try driver.raft.campaign()
        var actions = ready(&driver)
        while driver.raft.role != .leader || driver.raft.commitIndex < driver.raft.lastIndex {
            let answers = answers(to: actions, from: [2, 3])
            try #require(!answers.isEmpty, "the election stalled")
            actions = inbox(&driver, InboxWork(messages: answers))
        }
        return driver
    }

    static func ready(_ driver: inout RaftDriver, now: Int64 = 0) -> [Action] {
        var actions: [Action] = []
        driver.onReady(now: now, roundID: { 1 }, into: &actions)
        return actions
    }

    /// A pass of the loop over `work`: the inbox, then the Readies.
    static func inbox(_ driver: inout RaftDriver, _ work: InboxWork, now: Int64 = 0, roundID: UInt64 = 1) -> [Action] {
        var actions: [Action] = []
        driver.onInbox(work, now: now, into: &actions)
        driver.onReady(now: now, roundID: { roundID }, into: &actions)
        return actions
    }

    static func tick(_ driver: inout RaftDriver, now: Int64, roundID: UInt64 = 1) -> [Action] {
        var actions: [Action] = []
        driver.onTick(now: now, roundID: { roundID }, revocations: { [] }, into: &actions)
        return actions
    }

    static func sent(_ actions: [Action]) -> [Message] {
        actions.flatMap { action -> [Message] in
            if case .send(let messages) = action { return messages }
            return []
        }
    }

    /// What peers `from` answer to the messages sent them: votes granted, appends accepted, heartbeats echoed.
    static func answers(to actions: [Action], from peers: Set<UInt64>) -> [Message] {
        sent(actions).compactMap { m in
            guard peers.contains(m.to) else { return nil }
            switch m.kind {
            case .requestPreVote: return Message(kind: .requestPreVoteResponse, from: m.to, to: m.from, term: m.term)
            case .requestVote: return Message(kind: .requestVoteResponse, from: m.to, to: m.from, term: m.term)
            case .append:
                return Message(
                    kind: .appendResponse, from: m.to, to: m.from, term: m.term,
                    index: m.index + UInt64(m.entries.count))
            case .heartbeat:
                return Message(kind: .heartbeatResponse, from: m.to, to: m.from, term: m.term, context: m.context)
            default: return nil
            }
        }
    }

    static func kind(_ action: Action) -> String {
        switch action {
        case .softState: "softState"
        case .send: "send"
        case .lateHeartbeat: "lateHeartbeat"
        case .writeSnapshotImage: "writeSnapshotImage"
        case .sendSnapshot: "sendSnapshot"
        case .restoreSnapshot: "restoreSnapshot"
        case .recordSnapshot: "recordSnapshot"
        case .persist: "persist"
        case .apply: "apply"
        case .serveReads: "serveReads"
        case .expireReads: "expireReads"
        case .slowReadIndexes: "slowReadIndexes"
        case .failProposal: "failProposal"
        case .publishStatus: "publishStatus"
        case .removeFile: "removeFile"
        case .releaseFreedMemory: "releaseFreedMemory"
        case .fail: "fail"
        }
    }

    static func kinds(_ actions: [Action]) -> [String] { actions.map(kind) }

    static func applied(_ actions: [Action]) -> [Entry] {
        actions.flatMap { action -> [Entry] in
            if case .apply(let entries, _) = action { return entries }
            return []
        }
    }

    static func served(_ actions: [Action]) -> [(index: UInt64, deadlines: [Int64])] {
        actions.compactMap { action in
            if case .serveReads(let index, let waiters) = action { return (index, waiters.map(\.deadline)) }
            return nil
        }
    }

    static func read(deadline: Int64) -> ReadWaiter { ReadWaiter(completion: { _ in }, deadline: deadline) }

    static func snapshotMessage(index: UInt64, term: UInt64) -> Message {
        Message(
            kind: .snapshot, from: 2, to: 1, term: term,
            snapshot: Snapshot(
                metadata: SnapshotMetadata(index: index, term: term, confState: ConfState(voters: [1, 2, 3]))))
    }

    // MARK: Writes

    @Test func aLeadersProposalLeavesWhileItIsPersistedAndIsAppliedOnceAFollowerHasIt() throws {
        var driver = try Self.leader()
        let first = Self.inbox(&driver, InboxWork(proposals: [.init(id: 7, data: [42])]))
        // The appends travel while the leader writes its own copy (one fsync paid in parallel), nothing applied yet.
        let order = Self.kinds(first).filter { $0 == "send" || $0 == "persist" || $0 == "apply" }
        #expect(order == ["send", "persist"])
        let appended = Self.sent(first).filter { $0.kind == .append && $0.entries.contains { $0.data == [42] } }
        #expect(Set(appended.map(\.to)) == [2, 3])
        guard case .persist(let entries, _, let sync) = first.first(where: { Self.kind($0) == "persist" }) else {
            Issue.record("nothing persisted")
            return
        }
        #expect(entries.map(\.data) == [[42]] && sync)
        #expect(Self.applied(first).isEmpty)

        // Member 2 has it: committed, so the commit index is made durable before the entry is applied.
        let second = Self.inbox(&driver, InboxWork(messages: Self.answers(to: first, from: [2])))
        #expect(Self.applied(second).map(\.data) == [[42]])
        let persist = try #require(Self.kinds(second).firstIndex(of: "persist"))
        let apply = try #require(Self.kinds(second).firstIndex(of: "apply"))
        #expect(persist < apply)
        #expect(Self.kinds(second).last == "publishStatus")
        guard case .publishStatus(let status) = second.last else { return }
        #expect(status.commitIndex == entries[0].index)
    }

    @Test func aProposalWhoseCallerGaveUpIsNeverProposedAndOneWithoutLeaderFailsWithNoLeader() {
        var driver = Self.follower()
        let lastIndex = driver.raft.lastIndex
        let actions = Self.inbox(
            &driver, InboxWork(proposals: [.init(id: 1, data: [1], deadline: 50), .init(id: 2, data: [2])]), now: 100)
        let failed = actions.compactMap { action -> String? in
            guard case .failProposal(let id, let error) = action else { return nil }
            return "\(id): \(error == .deadlineExceeded ? "deadline" : error == .noLeader ? "no leader" : "\(error)")"
        }
        #expect(failed == ["1: deadline", "2: no leader"])
        #expect(driver.raft.lastIndex == lastIndex)
    }

    // MARK: Snapshots

    @Test func aSnapshotBeingRestoredParksItsReadyAndWhatFollowsWaitsForTheRestore() throws {
        var driver = Self.follower()
        var actions: [Action] = []
        driver.onSnapshotReceived(Self.snapshotMessage(index: 100, term: 2), imagePath: "/snap/in-100", into: &actions)
        #expect(actions.isEmpty)
        let first = Self.ready(&driver)
        // The restore is the last action: the acknowledgement of the snapshot must wait until it is in place.
        guard case .restoreSnapshot(let snapshot, let image) = first.last else {
            Issue.record("no restore: \(Self.kinds(first))")
            return
        }
        #expect(snapshot.metadata.index == 100 && image == "/snap/in-100")
        #expect(!Self.kinds(first).contains("persist") && Self.sent(first).isEmpty)

        // Meanwhile the leader's next entry arrives and time passes: Raft takes them in, nothing is written,
        // acknowledged or applied, and a compaction of the apply loop's waits for the next one.
        let append = Message(
            kind: .append, from: 2, to: 1, term: 2, logTerm: 2, index: 100,
            entries: [Entry(term: 2, index: 101, data: [9])], commit: 101)
        var meanwhile = Self.inbox(&driver, InboxWork(messages: [append]))
        for t in 1...3 { meanwhile += Self.tick(&driver, now: Int64(t) * 100_000_000) }
        driver.onApplyCompacted(through: 3, into: &meanwhile)
        #expect(meanwhile.allSatisfy { Self.kind($0) == "publishStatus" }, "\(Self.kinds(meanwhile))")
        #expect(driver.pipeline.stage == .restoringSnapshot(index: 100))

        // Restored: the log's marker first, then the snapshot's Ready goes on, then what arrived meanwhile.
        var rest: [Action] = []
        driver.onSnapshotRestored(now: 400_000_000, into: &rest)
        guard case .recordSnapshot(let meta, let replacingLog) = rest.first else {
            Issue.record("no marker first: \(Self.kinds(rest))")
            return
        }
        #expect(meta.index == 100 && replacingLog)
        #expect(Self.applied(rest).map(\.index) == [101])
        let acknowledged = Self.sent(rest).contains { $0.kind == .appendResponse && $0.index == 101 && !$0.reject }
        #expect(acknowledged)
        #expect(driver.pipeline.stage == .idle && driver.raft.appliedIndex == 101)
    }

    @Test func aSnapshotWithoutItsImageStopsTheMember() {
        var driver = Self.follower()
        // Stepped straight in, as if the transport had not written its image: nothing to restore from.
        let actions = Self.inbox(&driver, InboxWork(messages: [Self.snapshotMessage(index: 100, term: 2)]))
        guard case .fail(let message) = actions.last else {
            Issue.record("the member went on: \(Self.kinds(actions))")
            return
        }
        #expect(message.contains("index 100") && !Self.kinds(actions).contains("restoreSnapshot"))
    }

    @Test func theSameSnapshotArrivingTwiceKeepsTheNewerImageAndDropsTheOther() {
        var driver = Self.follower()
        var actions: [Action] = []
        driver.onSnapshotReceived(Self.snapshotMessage(index: 100, term: 2), imagePath: "/snap/a", into: &actions)
        driver.onSnapshotReceived(Self.snapshotMessage(index: 100, term: 2), imagePath: "/snap/b", into: &actions)
        guard actions.count == 1, case .removeFile(let path) = actions[0] else {
            Issue.record("\(Self.kinds(actions))")
            return
        }
        #expect(path == "/snap/a" && driver.pendingSnapshotImages == [100: "/snap/b"])
    }

    @Test func aCompactionIsRecordedInTheLogWithTheTermAndConfigurationOfItsIndex() throws {
        var driver = try Self.leader()
        let applied = driver.raft.appliedIndex
        var actions: [Action] = []
        driver.onApplyCompacted(through: applied, into: &actions)
        guard actions.count == 1, case .recordSnapshot(let meta, let replacingLog) = actions[0] else {
            Issue.record("\(Self.kinds(actions))")
            return
        }
        #expect(meta.index == applied && meta.term == driver.raft.currentTerm && !replacingLog)
        #expect(meta.confState.voters == [1, 2, 3])
        #expect(driver.raft.latestSnapshot?.metadata.index == applied, "Raft keeps the snapshot for lagging followers")
    }

    // MARK: Memory

    /// Member 1 of three restarted with `count` applied entries of `size` bytes after its founding entries in its
    /// log (what start-up replays from the write-ahead log since the last snapshot).
    static func restarted(entries count: Int, size: Int) -> RaftDriver {
        var state = RaftNode.bootstrapState(peers: [1, 2, 3])
        let value = [UInt8](repeating: 7, count: size)
        for i in 0..<count { state.entries.append(Entry(term: 1, index: UInt64(4 + i), data: value)) }
        state.hardState.commit = UInt64(3 + count)
        state.applied = state.hardState.commit
        var config = RaftConfig(id: 1, randomSeed: 7)
        config.snapshotCatchUpEntries = 1000
        return RaftDriver(
            raft: RaftNode(config: config, state: state), catchUpEntries: 1000, heartbeatNanoseconds: 100_000_000)
    }

    static func released(_ actions: [Action]) -> [Int] {
        actions.compactMap { action in
            if case .releaseFreedMemory(let bytes) = action { return bytes }
            return nil
        }
    }

    @Test func theLogReplayedAtStartUpIsDroppedAtTheFirstReadyAndItsMemoryReleased() {
        // 4,000 entries of 32 KiB: the first Ready keeps the catch-up window (1,000 entries below the applied
        // index) and drops the rest, the founding entries and 3,000 of 32 KiB (94 MiB).
        var driver = Self.restarted(entries: 4000, size: 32 << 10)
        let actions = Self.ready(&driver)
        #expect(driver.raft.firstIndex == driver.raft.appliedIndex - 1000 + 1)
        #expect(Self.released(actions) == [3000 * (32 << 10) + Self.foundingBytes])
    }

    @Test func trimsOfSmallEntriesReleaseNothingTheNextEntriesReuseTheirMemory() {
        var driver = Self.restarted(entries: 3000, size: 100)
        let actions = Self.ready(&driver)
        #expect(driver.raft.firstIndex == driver.raft.appliedIndex - 1000 + 1, "the log was trimmed")
        #expect(Self.released(actions).isEmpty)
    }

    /// The bytes of the three founding configuration entries.
    static var foundingBytes: Int {
        RaftNode.bootstrapState(peers: [1, 2, 3]).entries.reduce(0) { $0 + $1.data.count }
    }

    // MARK: Linearizable reads

    @Test func aReadAskedOfANewLeaderIsServedAtItsFirstEntryAfterThatEntryIsHandedOver() throws {
        var driver = Self.follower()
        try driver.raft.campaign()
        var actions = Self.ready(&driver)
        while driver.raft.role != .leader {
            let answers = Self.answers(to: actions, from: [2])
            try #require(!answers.isEmpty, "the election stalled")
            actions = Self.inbox(&driver, InboxWork(messages: answers))
        }
        // Elected, its first entry not yet committed: Raft holds the read until it is, then confirms it.
        let firstEntryOfTerm = driver.raft.lastIndex
        #expect(driver.raft.commitIndex < firstEntryOfTerm)
        actions += Self.inbox(&driver, InboxWork(reads: [Self.read(deadline: 1_000)]), roundID: 77)
        #expect(Self.served(actions).isEmpty)
        var handedOver: [UInt64] = []
        for _ in 0..<5 {
            let answers = Self.answers(to: actions, from: [2])
            try #require(!answers.isEmpty, "stalled: \(Self.kinds(actions))")
            actions = Self.inbox(&driver, InboxWork(messages: answers))
            guard let serve = Self.kinds(actions).firstIndex(of: "serveReads") else {
                handedOver += Self.applied(actions).map(\.index)
                continue
            }
            handedOver += Self.applied(Array(actions[..<serve])).map(\.index)
            let served = Self.served(actions)
            #expect(served.count == 1 && served.first?.index == firstEntryOfTerm && served.first?.deadlines == [1_000])
            #expect(handedOver.contains(firstEntryOfTerm), "the entry the read waits for is handed over first")
            #expect(driver.reads.waiting == 0)
            return
        }
        Issue.record("the read was never served")
    }

    @Test func aLateAnswerToAnEarlierRoundServesNobody() throws {
        var driver = Self.follower()
        // Member 2 leads term 2.
        _ = Self.inbox(&driver, InboxWork(messages: [Message(kind: .heartbeat, from: 2, to: 1, term: 2, commit: 3)]))
        let asked = Self.inbox(&driver, InboxWork(reads: [Self.read(deadline: 100)]), now: 0, roundID: 1)
        let first = try #require(Self.sent(asked).first { $0.kind == .readIndex })
        // Its read's deadline passes: it fails with a timeout (there is a leader), and its round is given up.
        let expiry = Self.tick(&driver, now: 150)
        let expired = expiry.compactMap { action -> (Int, EtcdError)? in
            if case .expireReads(let waiters, let error) = action { return (waiters.count, error) }
            return nil
        }
        #expect(expired.count == 1 && expired.first?.0 == 1 && expired.first?.1 == .timeout)
        #expect(Self.kinds(expiry).contains("slowReadIndexes"))

        // A second read travels in a round of its own; the leader's answer to the first round then arrives.
        let again = Self.inbox(&driver, InboxWork(reads: [Self.read(deadline: 1_000)]), now: 200, roundID: 2)
        let second = try #require(Self.sent(again).first { $0.kind == .readIndex })
        #expect(second.context != first.context)
        let late = Message(kind: .readIndexResponse, from: 2, to: 1, term: 2, index: 3, context: first.context)
        #expect(Self.served(Self.inbox(&driver, InboxWork(messages: [late]), now: 300)).isEmpty)
        #expect(driver.reads.waiting == 1)

        // Its own answer serves it.
        let answer = Message(kind: .readIndexResponse, from: 2, to: 1, term: 2, index: 3, context: second.context)
        let served = Self.served(Self.inbox(&driver, InboxWork(messages: [answer]), now: 400))
        #expect(served.count == 1 && served.first?.index == 3 && served.first?.deadlines == [1_000])
    }

    @Test func readsWaitingWithoutALeaderFailWithNoLeaderWhenTheirDeadlinePasses() {
        var driver = Self.follower()
        let asked = Self.inbox(&driver, InboxWork(reads: [Self.read(deadline: 100), Self.read(deadline: 500)]))
        #expect(Self.sent(asked).isEmpty, "no leader to ask")
        let expiry = Self.tick(&driver, now: 200)
        let expired = expiry.compactMap { action -> ([Int64], EtcdError)? in
            if case .expireReads(let waiters, let error) = action { return (waiters.map(\.deadline), error) }
            return nil
        }
        #expect(expired.count == 1 && expired.first?.0 == [100] && expired.first?.1 == .noLeader)
        #expect(!Self.kinds(expiry).contains("slowReadIndexes"), "no round was asked, none given up")
        #expect(driver.reads.waiting == 1)
    }

    // MARK: Heartbeats and leases

    @Test func aHeartbeatHandedOutLongAfterThePreviousOneIsLate() throws {
        var driver = try Self.leader()
        // Heartbeats go out on ticks; the first ones start the clock.
        var actions = Self.tick(&driver, now: 1_000_000_000)
        #expect(!Self.kinds(actions).contains("lateHeartbeat"))
        #expect(Self.sent(actions).contains { $0.kind == .heartbeat })
        actions = Self.tick(&driver, now: 1_150_000_000)
        #expect(!Self.kinds(actions).contains("lateHeartbeat"), "within two heartbeat intervals")
        // The loop was held for a second (a slow disk): 850 ms past the 200 ms limit.
        actions = Self.tick(&driver, now: 2_200_000_000)
        let late = actions.compactMap { action -> Int64? in
            if case .lateHeartbeat(_, let late) = action { return late }
            return nil
        }
        #expect(late.count == 2 && late.allSatisfy { $0 == 850_000_000 })
    }

    @Test func aLeaderRevokesExpiredLeasesEveryHalfSecondAndAFollowerNever() throws {
        var asked = 0
        func revocations() -> [[UInt8]] {
            asked += 1
            return [[1, 2, 3]]
        }
        var actions: [Action] = []
        var follower = Self.follower()
        follower.onTick(now: 1_000_000_000, roundID: { 1 }, revocations: revocations, into: &actions)
        #expect(asked == 0)

        var leader = try Self.leader()
        let lastIndex = leader.raft.lastIndex
        for t: Int64 in [1_000_000_000, 1_200_000_000, 1_500_000_000] {
            leader.onTick(now: t, roundID: { 1 }, revocations: revocations, into: &actions)
        }
        #expect(asked == 2)
        #expect(leader.raft.lastIndex == lastIndex + 2, "each revocation is proposed")
    }
}
