import EtcdProto
import Foundation
import Raft
import Storage

/// The Raft loop: one serial loop owns the driver (`RaftDriver`: Raft and its read, snapshot and heartbeat
/// bookkeeping) and the write-ahead log. Each pass takes everything queued (proposals, peer messages, reads,
/// actions), lets the driver decide, and carries out the driver's actions in order: persist, send, hand committed
/// entries to the apply loop (MemberNode+Apply.swift), install or send snapshots, publish the status.
extension MemberNode {
    /// The driver (Raft and the read and snapshot bookkeeping) and the log belong to the Raft loop, except while
    /// `start()` prepares them before the loop runs: checked in debug builds.
    @inline(__always)
    private func assertOnRaftLoop(_ function: StaticString = #function) {
        assert(loop.inLoop, "\(function) ran off the Raft loop")
    }

    /// One pass of the Raft loop over everything queued: proposals, peer messages, actions, reads, then Ready.
    func processInbox() {
        assertOnRaftLoop()
        let work = inbox.take()
        guard !stopped.load(ordering: .relaxed), status.failure == nil else {
            for waiter in work.reads { waiter.completion(.stopped) }
            return
        }
        run {
            let t = work.proposals.contains { $0.deadline != nil } ? now() : 0
            try drive { driver, actions in driver.onInbox(work, now: t, into: &actions) }
            for action in work.actions { action(self) }
            try drive { driver, actions in driver.onReady(now: now(), roundID: { ids.next() }, into: &actions) }
        }
    }

    /// Runs loop work unless the member stopped or failed; a failure of the log or the state machine is fatal.
    func run(_ body: () throws -> Void) {
        guard !stopped.load(ordering: .relaxed), status.failure == nil else { return }
        do {
            try body()
        } catch {
            fail("raft loop stopped: \(error)")
        }
    }

    func onTick() throws {
        assertOnRaftLoop()
        let t = now()
        waiters.expire(now: t, with: .timeout)
        try drive { driver, actions in
            driver.onTick(now: t, roundID: { ids.next() }, revocations: expiredLeaseRevocations, into: &actions)
        }
    }

    /// Lets the driver decide (`RaftDriver`), then carries out its actions in order. The actions array is reused
    /// from pass to pass (taken out meanwhile, so that a nested pass gets one of its own).
    func drive(_ decide: (inout RaftDriver, inout [RaftDriver.Action]) -> Void) throws {
        assertOnRaftLoop()
        var actions = actionBuffer
        actionBuffer = []
        decide(&driver, &actions)
        defer {
            actions.removeAll(keepingCapacity: true)
            actionBuffer = actions
        }
        for action in actions { guard try carryOut(action) else { return } }
    }

    /// Carries out one action of the driver; false when the member must stop.
    private func carryOut(_ action: RaftDriver.Action) throws -> Bool {
        switch action {
        case .softState(let soft, let previousLeader, let term):
            onSoftState(soft, previousLeader: previousLeader, term: term)
        case .send(let outgoing):
            transport.send(outgoing)
        case .lateHeartbeat(let peer, let late):
            counters.heartbeatSendFailures.add(1, ordering: .relaxed)
            logger.warning(
                "leader failed to send out heartbeat on time; leader is overloaded likely from slow disk",
                metadata: [
                    "to": "\(Identity.hex(peer))",
                    "heartbeat-interval": "\(config.heartbeatMilliseconds)ms",
                    "expected-duration": "\(2 * config.heartbeatMilliseconds)ms",
                    "exceeded-duration": "\(Double(late) / 1e6)ms",
                ])
        case .writeSnapshotImage(let message):
            applyQueue.push(.perform { node in node.sendSnapshot(message) })
        case .sendSnapshot(let message, let image):
            logger.info(
                "sending database snapshot",
                metadata: [
                    "to": "\(Identity.hex(message.to))", "index": "\(message.snapshot?.metadata.index ?? 0)",
                    "bytes": "\(image.size)",
                ])
            transport.sendSnapshot(message, image: image)
        case .restoreSnapshot(let snapshot, let image):
            restoreSnapshot(snapshot.metadata, from: image)
        case .recordSnapshot(let meta, let replacingLog):
            let start = monotonicNanoseconds()
            try wal.saveSnapshot(
                WALSnapshot(index: meta.index, term: meta.term, confState: ConfStateCodec.encode(meta.confState)),
                replacingLog: replacingLog)
            try wal.releaseSegments(through: meta.index)
            observer.snapshotSynced(nanoseconds: wal.stats.lastSyncNanoseconds)
            if !replacingLog {
                observer.snapshotSaved(nanoseconds: monotonicNanoseconds() - start)
                logger.info("saved snapshot", metadata: ["snapshot-index": "\(meta.index)"])
            }
        case .persist(let entries, let hardState, let sync):
            try persist(entries: entries, hardState: hardState, sync: sync)
        case .apply(let entries, let configurations):
            try handOver(entries, configurations: configurations)
        case .serveReads(let index, let waiting):
            if appliedIndex.load(ordering: .acquiring) >= index
                || config.testingNodeMutation == .servesReadsBeforeApplying
            {
                for waiter in waiting { waiter.completion(nil) }
            } else {
                // Released by the apply loop once it has applied the read's index.
                applyQueue.push(.reads(index: index, waiters: waiting))
            }
        case .expireReads(let expired, let error):
            for waiter in expired { waiter.completion(waiter.expiry ?? error) }
            counters.readIndexFailures.add(expired.count, ordering: .relaxed)
        case .slowReadIndexes(let count):
            counters.slowReadIndexes.add(count, ordering: .relaxed)
        case .failProposal(let id, let error):
            observer.proposalFailed()
            waiters.resume(id, with: .failure(error))
        case .publishStatus(let raftStatus):
            publishStatus(raftStatus)
        case .removeFile(let path):
            removeFile(path)
        case .releaseFreedMemory(let bytes):
            // A simulated member shares its process with the others and the simulator: nothing to hand back.
            if backend.vfs == nil {
                logger.debug("releasing freed memory", metadata: ["dropped-log-bytes": "\(bytes)"])
                Allocator.releaseFreedPagesInBackground()
            }
        case .fail(let message):
            fail(message)
            return false
        }
        return true
    }

    private func persist(entries: [Entry], hardState: HardState?, sync: Bool) throws {
        try wal.append(sync: sync) { encoder in
            for e in entries {
                encoder.appendEntry(index: e.index, term: e.term, kind: e.kind.rawValue, data: e.data)
            }
            if let hs = hardState {
                encoder.appendHardState(WALHardState(term: hs.term, vote: hs.vote, commit: hs.commit))
            }
        }
        if sync {
            let stats = wal.stats
            walStats.withLock { $0 = stats }
            observer.walSynced(nanoseconds: stats.lastSyncNanoseconds, entries: entries.count)
            if stats.lastSyncNanoseconds > Self.slowSyncNanoseconds {
                // etcd's warning, at etcd's threshold: the Raft loop (heartbeats included) waited for the disk.
                logger.warning(
                    "slow fdatasync",
                    metadata: [
                        "took": "\(Double(stats.lastSyncNanoseconds) / 1e6)ms",
                        "expected-duration": "\(Double(Self.slowSyncNanoseconds) / 1e6)ms",
                    ])
            }
        }
    }

    /// A log sync longer than this is logged (etcd's `warnSyncDuration`, 1 s).
    static let slowSyncNanoseconds: UInt64 = 1_000_000_000

    /// Hands committed entries to the apply loop.
    private func handOver(_ entries: [Entry], configurations: [UInt64: ConfState]) throws {
        // A lone client's write would otherwise wait for the apply loop to wake: a few entries arriving at an idle
        // apply loop are applied right here. Anything more goes to the apply loop, which overlaps the next fsync.
        if entries.count <= Self.inlineApplyLimit && applyQueue.claimIfIdle() {
            defer { applyQueue.done() }
            try applyItems([.entries(entries, configurations: configurations)])
            return
        }
        applyQueue.waitForRoom(timeout: 0.05, hardLimit: ApplyQueue.maxPendingEntries * 4)
        applyQueue.push(.entries(entries, configurations: configurations))
    }

    /// The largest committed batch the Raft loop applies itself when the apply loop is idle.
    static let inlineApplyLimit = 2

    /// Replaces the state machine with a snapshot received from the leader. The database goes first (on the
    /// apply loop, after everything queued before it), then the log's marker (`recordSnapshot`, once the apply
    /// loop reports back): a crash in between leaves a database ahead of the log, which the next start detects and
    /// treats as the snapshot (`Recovery`). The Raft loop goes on meanwhile (`ReadyPipeline`).
    private func restoreSnapshot(_ meta: SnapshotMetadata, from image: String) {
        applyQueue.push(
            .perform { node in
                let outcome = Result { try node.restoreStateMachine(from: image, meta) }
                node.perform { node in node.onSnapshotRestored(outcome) }
            })
    }

    /// The apply loop restored the state machine from the leader's snapshot: the Ready that carried it goes on.
    private func onSnapshotRestored(_ outcome: Result<Void, any Error>) {
        run {
            try outcome.get()
            try drive { driver, actions in driver.onSnapshotRestored(now: now(), into: &actions) }
        }
    }

    /// Sends a database image the apply loop wrote at `index`, with that index's snapshot metadata.
    func sendSnapshotImage(_ message: Message, index: UInt64, image: SnapshotImage) {
        run {
            try drive { driver, actions in
                driver.onSnapshotImageWritten(message, index: index, image: image, into: &actions)
            }
        }
    }

    /// The apply loop made the state machine durable through `applied`: record a snapshot there and let Raft
    /// and the log drop what precedes it.
    func compactLog(through applied: UInt64) {
        do {
            try drive { driver, actions in driver.onApplyCompacted(through: applied, into: &actions) }
        } catch {
            fail("saving a snapshot failed: \(error)")
        }
    }

    private func onSoftState(_ soft: SoftState, previousLeader previous: UInt64, term: UInt64) {
        if soft.role == .leader {
            leases.promote()
        } else {
            leases.demote()
        }
        published.withLock { s in
            if soft.leader != previous && soft.leader != 0 { s.leaderChanges += 1 }
            s.leader = soft.leader
            s.isLeader = soft.role == .leader
        }
        if soft.leader != previous {
            logger.info(
                soft.leader == 0 ? "raft lost leader" : "raft elected leader",
                metadata: ["leader": "\(Identity.hex(soft.leader))", "term": "\(term)"])
        }
    }

    func publishStatus(_ raftStatus: RaftDriver.Status) {
        published.withLock { p in
            p.term = raftStatus.term
            p.commitIndex = raftStatus.commitIndex
            p.lastIndex = raftStatus.lastIndex
            p.lastTerm = raftStatus.lastTerm
            p.isLearner = raftStatus.isLearner
        }
    }

    /// A leader's proposals revoking the leases that expired (the driver asks for them on its lease check).
    private func expiredLeaseRevocations() -> [[UInt8]] {
        leases.takeExpired(retryAfterNanoseconds: 3_000_000_000).compactMap { id in
            counters.leaseExpirations.add(1, ordering: .relaxed)
            var request = Quorumpb_RaftRequest()
            request.proposer = memberID
            // The member revokes as etcd's `WithRoot`: whoever attached the keys, an expired lease goes.
            request.internal = true
            var revoke = Etcdserverpb_LeaseRevokeRequest()
            revoke.id = id
            request.leaseRevoke = revoke
            return try? request.serializedBytes() as [UInt8]
        }
    }
}
