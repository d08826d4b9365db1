import EtcdProto
import Foundation
import MVCC
import Raft
import Storage

/// The apply loop: committed entries into the state machine, in log order, on a thread of its own (see
/// `ApplyQueue` for why). It alone writes the backend; it completes proposals and linearizable reads.
extension MemberNode {
    /// The apply loop's state (the backend's writes, `heldReads`, compaction and snapshot bookkeeping) belongs to
    /// whoever holds the state machine (`ApplyQueue`): checked in debug builds.
    @inline(__always)
    func assertOnApplyLoop(_ function: StaticString = #function) {
        assert(applyQueue.ownedByCaller, "\(function) ran without holding the state machine (apply loop)")
    }

    /// How often the apply loop passes even when nothing was queued: lazy SQLite commits, compaction steps and
    /// the size refresh are due by time.
    static let applyTickMilliseconds = 100

    /// One pass of the apply loop: everything queued, then the time-driven work. The pass that sees the queue
    /// stopped is the last: it commits SQLite (so a graceful stop leaves nothing to replay) and fails held reads.
    func applyPass() {
        guard applyRunning.load(ordering: .acquiring) else { return }
        // nil: the Raft loop is applying a batch itself, and asks for a pass when done.
        guard let (items, stopped) = applyQueue.take() else { return }
        defer { applyQueue.done() }
        if stopped {
            try? commitBackend()
            endApplyLoop()
            return
        }
        do {
            try applyItems(items)
            try housekeeping()
        } catch {
            fail("apply loop stopped: \(error)")
            endApplyLoop()
        }
    }

    /// The apply loop's last pass: whoever waits for maintenance or for a read hears that the member stopped.
    private func endApplyLoop() {
        endMaintenanceForStop()
        for (_, waiters) in heldReads { for waiter in waiters { waiter.completion(.stopped) } }
        heldReads = []
        applyRunning.store(false, ordering: .sequentiallyConsistent)
    }

    /// Applies everything taken at once: consecutive entry batches share one SQLite transaction. Runs on the apply
    /// loop, or on the Raft loop when it claimed the idle state machine (`ApplyQueue.claimIfIdle`).
    func applyItems(_ items: [ApplyQueue.Item]) throws {
        assertOnApplyLoop()
        var entries: [Entry] = []
        var configurations: [UInt64: ConfState] = [:]
        func flush() throws {
            guard !entries.isEmpty else { return }
            try apply(entries, configurations: configurations)
            entries.removeAll()
            configurations.removeAll()
        }
        for item in items {
            switch item {
            case .entries(let batch, let confs):
                entries += batch
                configurations.merge(confs) { $1 }
            case .reads(let index, let waiters):
                heldReads.append((index, waiters))
            case .perform(let body):
                try flush()
                body(self)
            }
        }
        try flush()
        releaseReads()
    }

    /// Periodic duties between batches: committing SQLite, physical compaction in steps, the database size for
    /// the quota, the deadlines of reads waiting for the applied index.
    ///
    /// SQLite commits lazily, every `backendCommitInterval`: Raft's log already made the entries durable (after a
    /// crash the uncommitted tail is applied again from `consistent_index` on), and one commit for many batches
    /// writes each page of the history table once instead of once per batch.
    private func housekeeping() throws {
        assertOnApplyLoop()
        let t = now()
        if backend.writer.isInTransaction && t - lastBackendCommit >= Self.backendCommitInterval {
            try timedDuty("commit") { try commitBackend() }
        }
        try compactionStepIfDue()
        timedDuty("defragment step") { defragmentStepIfDue() }
        if t - lastSizeCheck >= 100_000_000 {
            lastSizeCheck = t
            timedDuty("size check") { refreshSize() }
            heldReads = heldReads.map { ($0.index, ReadWaiter.expire($0.waiters, now: t, with: .timeout)) }
            heldReads.removeAll { $0.waiters.isEmpty }
        }
    }

    /// How long applied batches may wait in SQLite's open transaction.
    static let backendCommitInterval: Int64 = 25_000_000

    /// Runs one of the apply loop's own duties (not a request's apply), and warns when it held the loop longer than
    /// `--warning-apply-duration`: every request waiting to be applied waited that long too, and the warning names
    /// which duty it was (a commit that checkpointed, a compaction or defragment step, a snapshot).
    func timedDuty<T>(_ duty: String, _ body: () throws -> T) rethrows -> T {
        let start = monotonicNanoseconds()
        let result = try body()
        let took = Int64(monotonicNanoseconds() - start)
        if took > config.warningApplyNanoseconds {
            logger.warning(
                "apply loop duty took too long",
                metadata: [
                    "duty": "\(duty)", "took": "\(Double(took) / 1e6)ms",
                    "expected-duration": "\(Double(config.warningApplyNanoseconds) / 1e6)ms",
                ])
        }
        return result
    }

    func commitBackend() throws {
        assertOnApplyLoop()
        let start = monotonicNanoseconds()
        try backend.commitBatch()
        lastBackendCommit = now()
        observer.backendCommitted(nanoseconds: monotonicNanoseconds() - start)
    }

    /// Re-reads the database's size: its files (what `endpoint status` reports as the size) and the space its data
    /// occupies (what the quota is measured against, as etcd measures it: not the journal or free pages).
    func refreshSize() {
        guard let size = try? backend.size() else { return }
        dbSize.store(size.total, ordering: .relaxed)
        dbSizeInUse.store(size.inUse, ordering: .relaxed)
    }

    private func releaseReads() {
        assertOnApplyLoop()
        guard !heldReads.isEmpty else { return }
        let applied = appliedIndex.load(ordering: .acquiring)
        let removed = answersNothing
        heldReads.removeAll { held in
            guard held.index <= applied else { return false }
            for waiter in held.waiters { waiter.completion(removed ? .stopped : nil) }
            return true
        }
    }

    private func apply(_ entries: [Entry], configurations: [UInt64: ConfState]) throws {
        assertOnApplyLoop()
        var results: [(UInt64, ApplyResult)] = []
        var removed = false
        try backend.beginBatch()
        do {
            for entry in entries {
                switch entry.kind {
                case .confChange:
                    if try applyConfChange(entry, configuration: configurations[entry.index], results: &results) {
                        removed = true
                    }
                case .normal:
                    guard !entry.data.isEmpty else { continue }
                    let request: Quorumpb_RaftRequest
                    do {
                        request = try Quorumpb_RaftRequest(serializedBytes: entry.data)
                    } catch {
                        // Only a corrupted log could hold undecodable bytes; skipping keeps members in step.
                        logger.error("skipping undecodable log entry", metadata: ["index": "\(entry.index)"])
                        continue
                    }
                    let started = monotonicNanoseconds()
                    let result = try applier.apply(request, index: entry.index)
                    let took = Int64(monotonicNanoseconds() - started)
                    if took > config.warningApplyNanoseconds {
                        logger.warning(
                            "apply request took too long",
                            metadata: [
                                "took": "\(Double(took) / 1e6)ms",
                                "expected-duration": "\(Double(config.warningApplyNanoseconds) / 1e6)ms",
                                "index": "\(entry.index)", "request": "\(Self.kind(of: request))",
                            ])
                    }
                    observer.applied(Self.kind(of: request))
                    let succeeded: Bool
                    if case .failure = result { succeeded = false } else { succeeded = true }
                    observer.applyFinished(
                        operation: Self.operationName(of: request), nanoseconds: took, succeeded: succeeded,
                        slow: took > config.warningApplyNanoseconds)
                    if case .compaction = request.request, succeeded, compactionStartedAt == nil {
                        compactionStartedAt = started
                    }
                    if case .compaction = request.request, request.compaction.physical,
                        request.proposer == memberID
                    {
                        physicalCompactions.append((request.compaction.revision, request.id, result))
                        waiters.liftDeadline(request.id)
                    } else if request.proposer == memberID && request.id != 0 {
                        // An entry after this member's removal is applied (the state stays whole) but not vouched
                        // for: the member is stopping, as etcd's does, and the client learns nothing.
                        results.append((request.id, answersNothing ? .failure(.stopped) : result))
                    }
                }
            }
            let last = entries[entries.count - 1]
            try backend.setMetaInt("consistent_index", Int64(last.index))
            try backend.setMetaInt("consistent_term", Int64(last.term))
        } catch {
            backend.rollbackBatch()
            throw error
        }
        let last = entries[entries.count - 1].index
        appliedSinceSnapshot += UInt64(entries.count)
        let (events, pending) = applier.takeEvents()
        hub.publish(
            events, revision: store.revisions.current,
            completingPreviousValues: pending.isEmpty ? nil : { [store] in store.fill(pending, into: &$0) })
        appliedIndex.store(last, ordering: .releasing)
        published.withLock { $0.appliedIndex = last }
        waiters.resume(results)
        if appliedSinceSnapshot >= config.snapshotCount { try timedDuty("snapshot") { try takeSnapshot() } }
        if removed { noticeRemoval() }
    }

    /// The request's name as etcd labels `etcd_server_apply_duration_seconds{op}`.
    static func operationName(of request: Quorumpb_RaftRequest) -> String {
        switch request.request {
        case .put: return "Put"
        case .deleteRange: return "DeleteRange"
        case .txn: return "Txn"
        case .compaction: return "Compaction"
        case .leaseGrant: return "LeaseGrant"
        case .leaseRevoke: return "LeaseRevoke"
        case .leaseCheckpoint: return "LeaseCheckpoint"
        case .alarm: return "Alarm"
        case .publish: return "ClusterMemberAttrSet"
        case .clusterVersion: return "ClusterVersionSet"
        case .authEnable: return "AuthEnable"
        case .authDisable: return "AuthDisable"
        case .authAuthenticate: return "Authenticate"
        case .authUserAdd: return "AuthUserAdd"
        case .authUserDelete: return "AuthUserDelete"
        case .authUserChangePassword: return "AuthUserChangePassword"
        case .authUserGrantRole: return "AuthUserGrantRole"
        case .authUserRevokeRole: return "AuthUserRevokeRole"
        case .authRoleAdd: return "AuthRoleAdd"
        case .authRoleDelete: return "AuthRoleDelete"
        case .authRoleGrantPermission: return "AuthRoleGrantPermission"
        case .authRoleRevokePermission: return "AuthRoleRevokePermission"
        default: return "Other"
        }
    }

    private static func kind(of request: Quorumpb_RaftRequest) -> AppliedKind {
        switch request.request {
        case .put: return .put
        case .deleteRange: return .deleteRange
        case .txn: return .txn
        case .compaction: return .compaction
        case .leaseGrant: return .leaseGrant
        case .leaseRevoke: return .leaseRevoke
        default: return .other
        }
    }

    /// Applies a committed membership change to the member table (Raft already uses it since it was appended;
    /// the Raft loop passed the configuration it left). Returns whether it removed this member.
    private func applyConfChange(
        _ entry: Entry, configuration: ConfState?, results: inout [(UInt64, ApplyResult)]
    ) throws -> Bool {
        guard let change = try? ConfChange(serialized: entry.data), let conf = configuration else { return false }
        try backend.setMetaData("conf_state", Data(ConfStateCodec.encode(conf)))
        let context = change.context.isEmpty ? nil : try? Quorumpb_ConfChangeContext(serializedBytes: change.context)
        var removedSelf = false
        switch change.kind {
        case .addVoter, .addLearner:
            if var member = members.member(change.node) ?? context.map({ MemberInfo($0.member) }) {
                member.isLearner = change.kind == .addLearner
                try members.upsert(member, backend: backend)
            }
        case .promoteLearner:
            if var member = members.member(change.node) {
                member.isLearner = false
                try members.upsert(member, backend: backend)
            }
        case .removeNode:
            try members.remove(change.node, backend: backend)
            removedSelf = change.node == memberID
        }
        logger.info(
            "applied a membership change",
            metadata: [
                "change": "\(change.kind)", "member-id": "\(Identity.hex(change.node))",
                "voters": "\(conf.voters.map(Identity.hex))", "learners": "\(conf.learners.map(Identity.hex))",
            ])
        if let context, context.proposer == memberID, context.requestID != 0 {
            results.append((context.requestID, .success(.members(members.all))))
        }
        return removedSelf
    }

    /// Physical compaction's next step, if one is due: it starts with the first pass that sees a compaction applied,
    /// and goes on paced like a defragment (`MaintenancePacer`), in steps of at most `compactionBatchLimit` rows and
    /// about its pacer's `stepBudget`.
    private func compactionStepIfDue() throws {
        guard store.compactionPending || compactionPacer.isRunning else { return }
        let t = maintenanceClock()
        if compactionPacer.onRequest(now: t) || compactionPacer.isDue(now: t) {
            try timedDuty("compaction step") { try compactStep() }
        }
    }

    /// What one maintenance step (defragment, physical compaction) may hold the apply loop for: what a request may
    /// wait because of it.
    static let maintenanceStepNanoseconds: UInt64 = 4_000_000
    /// The share of the apply loop's time maintenance steps take while requests are waiting (`MaintenancePacer`).
    static let maintenanceShare = 0.3

    /// The clock maintenance is paced and its steps are timed by: the member's (`now`, the simulator's virtual time,
    /// where a step then takes no time and so runs to its row or page limit, the same on every replay).
    func maintenanceClock() -> UInt64 { UInt64(max(0, now())) }

    private func compactStep() throws {
        assertOnApplyLoop()
        guard compactionPacer.isRunning else { return }
        let pending = store.compactionPending
        let start = maintenanceClock()
        let wallStart = monotonicNanoseconds()
        try backend.beginBatch()
        try store.compactStep(
            budget: max(1, config.compactionBatchLimit), nanoseconds: compactionPacer.stepBudget,
            clock: maintenanceClock)
        try backend.commitBatch()
        let end = maintenanceClock()
        if pending {
            // The step held the apply loop, so writes waited for it: etcd's compaction pause.
            let wallEnd = monotonicNanoseconds()
            observer.compactionStepped(nanoseconds: wallEnd - wallStart)
            if !store.compactionPending {
                observer.compactionFinished(nanoseconds: wallEnd - min(wallEnd, compactionStartedAt ?? wallStart))
                compactionStartedAt = nil
            }
        }
        let finished = store.revisions.compactionFinished
        physicalCompactions.removeAll { pending in
            guard pending.revision <= finished || !store.compactionPending else { return false }
            waiters.resume(pending.id, with: pending.result)
            return true
        }
        let action = compactionPacer.onStep(
            took: end - start, workLeft: store.compactionPending, othersWaiting: !applyQueue.isEmpty, now: end)
        switch action {
        case .stepNow:
            applyQueue.push(
                .perform { node in
                    do {
                        try node.timedDuty("compaction step") { try node.compactStep() }
                    } catch {
                        node.fail("apply loop stopped: \(error)")
                    }
                })
        case .stepLater: break
        case .finish: _ = compactionPacer.onFinished()
        }
    }

    /// Makes the state machine durable, then lets the Raft loop record the snapshot and truncate its log.
    private func takeSnapshot() throws {
        assertOnApplyLoop()
        let applied = appliedIndex.load(ordering: .acquiring)
        try backend.makeDurable()
        appliedSinceSnapshot = 0
        perform { node in node.compactLog(through: applied) }
    }

    /// A follower needs a snapshot: write the database as it stands at the applied index (this thread is the only
    /// writer, so the image matches it exactly) and send it with the snapshot metadata rewritten to that index, as
    /// etcd merges its snapshot with the live backend. The Raft loop fills in the term and configuration.
    func sendSnapshot(_ message: Message) {
        assertOnApplyLoop()
        let applied = appliedIndex.load(ordering: .acquiring)
        // A name of its own: an image is streamed while the next may already be written.
        let path =
            config.dataDir
            + "/member/snap/outgoing-\(Identity.hex(message.to))-\(applied)-\(UInt32.random(in: 0...UInt32.max)).db"
        do {
            try backend.writeImage(to: path)
        } catch {
            // A failed COMMIT on the way has stopped the member (`Backend.onFailure`); this image fails either way.
            logger.warning("writing a snapshot for a follower failed: \(error)")
            reportSnapshot(to: message.to, succeeded: false)
            return
        }
        let size = (backend.vfs.map { $0.fileSize(path) } ?? FileSystem.fileSize(path)) ?? 0
        perform { node in node.sendSnapshotImage(message, index: applied, image: SnapshotImage(path: path, size: size))
        }
    }

    /// Replaces the state machine with a database image received from the leader (see `restoreSnapshot`).
    func restoreStateMachine(from image: String, _ meta: SnapshotMetadata) throws {
        assertOnApplyLoop()
        counters.snapshotsApplying.add(1, ordering: .relaxed)
        defer { counters.snapshotsApplying.subtract(1, ordering: .relaxed) }
        try backend.replace(with: image)
        try backend.beginBatch()
        try backend.setMetaInt("consistent_index", Int64(meta.index))
        try backend.setMetaInt("consistent_term", Int64(meta.term))
        try backend.setMetaData("conf_state", Data(ConfStateCodec.encode(meta.confState)))
        try backend.makeDurable()
        try store.reload()
        try leases.reload(store: store)
        try alarms.reload(backend: backend)
        try versions.reload(backend: backend)
        try members.reload(backend: backend)
        try auth.reload(backend: backend)
        appliedSinceSnapshot = 0
        compactionStartedAt = nil
        hub.resync(revision: store.revisions.current)
        refreshSize()
        appliedIndex.store(meta.index, ordering: .releasing)
        published.withLock { $0.appliedIndex = meta.index }
        releaseReads()
        logger.info(
            "installed database snapshot from the leader",
            metadata: ["index": "\(meta.index)", "revision": "\(store.revisions.current)"])
    }
}
