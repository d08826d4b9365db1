import Auth
import Batching
import EtcdProto
import Foundation
import GoSyntax
import Logging
import MVCC
import Raft
import Storage
import Synchronization

/// One Quorum member: the Raft core wired to the write-ahead log, the state machine and the peers.
///
/// A dedicated thread runs the loop of etcd-raft's model: drain requests → `ready()` → send → persist (one
/// write, one fsync: every proposal that arrived meanwhile shares it) → send what needed persisting → apply →
/// `advance()`. Clients wait on completions the loop calls once their entry is applied; nothing on the
/// request path hops through an actor. No NIO or gRPC here: the Server target adapts RPCs to these calls.
public final class MemberNode: @unchecked Sendable {
    public let config: NodeConfig
    public let memberID: UInt64
    public let clusterID: UInt64
    public let backend: Backend
    public let store: KVStore
    public let leases: Leases
    public let alarms: AlarmSet
    /// The cluster version, the versions members reported and the downgrade job.
    public let versions: ClusterVersionState
    public let members: ClusterMembers
    /// Users, roles and tokens (see `AuthState`).
    public let auth: AuthState
    public private(set) var hub: WatchHub!
    public let walStats = Mutex(WriteAheadLog.Stats())
    /// Monotonic nanoseconds, injected for tests.
    public let now: @Sendable () -> Int64

    let logger: Logger
    private var lock: DirectoryLock?
    let transport: any RaftTransport
    let ids: RequestIDGenerator
    /// The wall clock new member ids are made from (etcd's MemberAdd hashes the time in).
    let wallClock: @Sendable () -> Date
    let waiters = Waiters()
    let inbox = ScheduledBatch(InboxWork())
    /// Where the three loops run (see `SerialLoop`): Raft, apply, and watch catch-up.
    let loop: any SerialLoop
    let applyLoop: any SerialLoop
    private let watchLoop: any SerialLoop
    let published = Mutex(NodeStatus())
    let dbSize = Atomic<Int64>(0)
    let dbSizeInUse = Atomic<Int64>(0)
    /// A catch-up pass is queued on the watch loop (so that a burst of wake-ups queues one).
    private let catchUpScheduled = Atomic<Bool>(false)
    private let onFatal: @Sendable (String) -> Void
    public let observer: any NodeObserver
    /// Events counted for the metrics (see `NodeCounters`).
    public let counters = NodeCounters()

    // Owned by the Raft loop's thread.
    /// Raft and the Raft loop's decisions (see `RaftDriver`); the shell below carries them out.
    var driver: RaftDriver
    /// The driver's actions, reused from pass to pass.
    var actionBuffer: [RaftDriver.Action] = []
    let wal: any RaftLog
    /// The commit index the log recorded before this start: `start()` returns once it is applied.
    private var recoveredCommit: UInt64 = 0

    // Owned by the apply loop's thread (see MemberNode+Apply.swift).
    let applyQueue = ApplyQueue()
    let applier: Applier
    var heldReads: [(index: UInt64, waiters: [ReadWaiter])] = []
    var physicalCompactions: [(revision: Int64, id: UInt64, result: ApplyResult)] = []
    var appliedSinceSnapshot: UInt64 = 0
    /// Physical compaction under way: the pacing of its steps.
    var compactionPacer = MaintenancePacer(
        stepBudget: MemberNode.maintenanceStepNanoseconds, share: MemberNode.maintenanceShare)
    /// A Defragment under way (`MemberNode+Defragment.swift`): its pacing, and the callers waiting for its end.
    var defragmentPacer = MaintenancePacer(
        stepBudget: MemberNode.maintenanceStepNanoseconds, share: MemberNode.maintenanceShare)
    var defragmentCallers: [@Sendable (EtcdError?) -> Void] = []
    /// The defragment's read-ahead of the pages its next steps move (real files only).
    var defragmentReadAhead: TailPrefetch?
    /// When the compaction that physical compaction is working through was applied (monotonic nanoseconds).
    var compactionStartedAt: UInt64?
    var lastBackendCommit: Int64 = 0
    var lastSizeCheck: Int64 = 0
    /// Highest log index the state machine has applied (written by the apply loop only).
    let appliedIndex = Atomic<UInt64>(0)

    let onRemoved: @Sendable () -> Void
    /// `onRemoved` was called (it is called once).
    let removalNoticed = Atomic<Bool>(false)
    /// The apply loop has not taken its last pass yet (see `stop`).
    let applyRunning = Atomic<Bool>(false)
    /// When progress notifications were last sent (the watch loop's).
    private var lastProgressNotify: Int64 = 0
    let stopped = Atomic<Bool>(false)

    /// etcd's `maxGapBetweenApplyAndCommitIndex`: while more committed entries than this wait to be applied, new
    /// proposals are refused with "too many requests" (applying is the bottleneck; queueing more only grows memory).
    public static let maxCommitApplyGap: UInt64 = 5000

    /// Linearizable reads registered and not yet released or failed (bounded by `maxPendingReads`).
    let pendingReadCount = Atomic<Int>(0)

    /// See `open` (MemberNode+Open.swift).
    init<D: Disk>(
        config: NodeConfig, disk: D, vfs: DiskVFS?, lock: DirectoryLock?, transport: any RaftTransport, logger: Logger,
        observer: any NodeObserver, now: @escaping @Sendable () -> Int64,
        onFatal: @escaping @Sendable (String) -> Void, onRemoved: @escaping @Sendable () -> Void, loop: any SerialLoop,
        applyLoop: any SerialLoop, watchLoop: any SerialLoop, raftSeed: UInt64,
        wallClock: @escaping @Sendable () -> Date
    ) throws {
        self.config = config
        self.wallClock = wallClock
        self.loop = loop
        self.applyLoop = applyLoop
        self.watchLoop = watchLoop
        self.onRemoved = onRemoved
        self.observer = observer
        self.lock = lock
        self.transport = transport
        self.logger = logger
        self.now = now
        self.onFatal = onFatal
        var walOptions = WriteAheadLog.Options()
        walOptions.fsync = config.fsync && config.testingNodeMutation != .neverSyncsTheLog
        walOptions.segmentSize = config.walSegmentBytes
        walOptions.maxFiles = config.maxWALFiles

        let backend = try Backend(
            path: config.backendPath, vfs: vfs, backgroundCheckpoints: config.backgroundCheckpoints)
        self.backend = backend
        let opened = try Self.openLog(
            config: config, disk: disk, backend: backend, walOptions: walOptions, logger: logger)
        wal = opened.wal
        memberID = opened.memberID
        clusterID = opened.clusterID
        let raftState = opened.state
        for name in (try? disk.list(config.dataDir + "/member/snap")) ?? []
        where ["incoming-", "outgoing-", "snapshot-"].contains(where: name.hasPrefix) {
            try? disk.remove(config.dataDir + "/member/snap/" + name)
        }
        ids = RequestIDGenerator(memberID: memberID, now: wallClock())
        let loadStarted = now()
        store = try KVStore(backend: backend, valueCacheBytes: config.valueCacheBytes)
        // Most of a large member's start-up: an operator waiting for it should see what it took.
        logger.info(
            "restored the key index from the database",
            metadata: [
                "keys": "\(store.keyCount())", "current-revision": "\(store.revisions.current)",
                "compact-revision": "\(store.revisions.compacted)",
                "took": "\(GoDuration.format(.nanoseconds(now() - loadStarted)))",
            ])
        alarms = try AlarmSet(backend: backend)
        versions = try ClusterVersionState(backend: backend)
        members = try ClusterMembers(backend: backend)
        // etcd's minimum lease TTL: one and a half election timeouts, rounded up to whole seconds.
        let minTTL = Int64((Double(config.electionMilliseconds) * 1.5 / 1000).rounded(.up))
        var leaseClock = now
        if config.testingNodeMutation == .leaseClockRunsFast { leaseClock = { [now] in now() * 2 } }
        leases = try Leases(store: store, minTTL: max(1, minTTL), now: leaseClock)
        let tokens: any TokenProvider
        do {
            tokens = try makeTokenProvider(
                authToken: config.authToken, simpleTokenTTL: config.authTokenTTL,
                readFile: { path in Array(try Data(contentsOf: URL(fileURLWithPath: path))) })
        } catch {
            throw EtcdError(.invalidArgument, "--auth-token: \(error)")
        }
        auth = try AuthState(backend: backend, tokens: tokens, bcryptCost: config.bcryptCost)
        applier = Applier(
            store: store, leases: leases, alarms: alarms, members: members, auth: auth, versions: versions,
            observer: observer)

        var raftConfig = RaftConfig(id: memberID, randomSeed: raftSeed)
        raftConfig.testingMutation = config.testingRaftMutation
        raftConfig.heartbeatTick = 1
        raftConfig.electionTick = max(2, config.electionMilliseconds / max(1, config.heartbeatMilliseconds))
        raftConfig.preVote = true
        raftConfig.checkQuorum = true
        raftConfig.maxUncommittedEntriesSize = 1 << 30
        raftConfig.maxLearners = Self.maxLearners
        raftConfig.snapshotCatchUpEntries = config.snapshotCatchUpEntries
        // A follower catching up through a snapshot then needs the entries written while it travelled.
        raftConfig.catchUpRetention =
            config.catchUpRetentionEntries ?? max(5000, 5 * config.snapshotCatchUpEntries)
        let raft = RaftNode(config: raftConfig, state: raftState)
        driver = RaftDriver(
            raft: raft, catchUpEntries: config.snapshotCatchUpEntries,
            heartbeatNanoseconds: Int64(config.heartbeatMilliseconds) * 1_000_000)
        let size = try backend.size()
        dbSize.store(size.total, ordering: .relaxed)
        dbSizeInUse.store(size.inUse, ordering: .relaxed)
        appliedIndex.store(raft.appliedIndex, ordering: .releasing)
        recoveredCommit = raft.commitIndex
        published.withLock { $0.appliedIndex = raft.appliedIndex }

        hub = WatchHub(
            store: store, currentRevision: store.revisions.current,
            header: { [weak self] revision in
                self?.header(revision: revision) ?? Etcdserverpb_ResponseHeader()
            },
            onBehind: { [weak self] in self?.scheduleCatchUp() }, testingMutation: config.testingWatchMutation)
        // A failed COMMIT stops the member wherever it happened, even where the caller only reports the error (an
        // image for a follower, an RPC's commit or defragmentation): the database is behind the key space in memory.
        backend.onFailure = { [weak self] failure in self?.fail("apply loop stopped: \(failure)") }
    }

    // MARK: Lifecycle

    /// Starts the Raft loop, the apply loop and the watch catch-up loop, and returns once the entries the log
    /// holds as committed are applied (see `begin`).
    public func start() {
        let started = now()
        let from = appliedIndex.load(ordering: .acquiring)
        begin()
        // Entries the log holds as committed but the database had not recorded (it commits lazily) are applied
        // again before the member serves: a read right after a restart sees every acknowledged write.
        while appliedIndex.load(ordering: .acquiring) < recoveredCommit && status.failure == nil
            && !stopped.load(ordering: .relaxed)
        {
            usleep(500)
        }
        if recoveredCommit > from {
            logger.info(
                "applied the committed entries the database had not recorded",
                metadata: [
                    "entries": "\(recoveredCommit - from)", "applied-index": "\(recoveredCommit)",
                    "took": "\(GoDuration.format(.nanoseconds(now() - started)))",
                ])
        }
    }

    /// Whether the entries the log held as committed at start-up are applied: until then a read could miss an
    /// acknowledged write. `start()` waits for it; a caller of `begin()` (a simulation) must.
    public var recovered: Bool { appliedIndex.load(ordering: .acquiring) >= recoveredCommit }

    /// Starts the three loops and returns at once.
    public func begin() {
        if config.leaseCheckpointNanoseconds > 0 {
            // A keep-alive of a checkpointed lease clears the checkpoint through the log (etcd's `Renew`).
            leases.clearCheckpoint.withLock { clear in
                clear = { [weak self] id in self?.proposeLeaseCheckpoints([(id, 0)]) }
            }
        }
        // A single voter elects itself at once instead of waiting out an election timeout; done before the loop
        // runs so that no request can arrive to a member that has not yet led.
        if driver.raft.configuration.voters == [memberID] {
            try? driver.raft.campaign()
        } else if config.initialElectionTickAdvance && driver.raft.configuration.voters.contains(memberID) {
            // Two ticks short of an election timeout, as etcd advances them: the randomised timeout still decides
            // who campaigns first.
            for _ in 0..<max(0, driver.raft.config.electionTick - 2) { driver.raft.tick() }
        }
        applyRunning.store(true, ordering: .sequentiallyConsistent)
        applyQueue.attach(loop: applyLoop) { [weak self] in self?.applyPass() }
        // Time-driven work of the apply loop (lazy commits, compaction steps) happens even when nothing is applied.
        applyLoop.schedule(every: .milliseconds(Self.applyTickMilliseconds)) { [self] in applyPass() }
        loop.execute { [self] in
            publishStatus(driver.status)
            // Whatever happened before the loop started (a single member's election) is handled at once.
            run { try drive { driver, actions in driver.onReady(now: now(), roundID: { ids.next() }, into: &actions) } }
        }
        loop.schedule(every: .milliseconds(config.heartbeatMilliseconds)) { [self] in run { try onTick() } }
        lastProgressNotify = now()
        // Watchers that fell behind are caught up when the hub says so, and at least every 100 ms (progress).
        watchLoop.schedule(every: .milliseconds(100)) { [self] in catchUpPass() }
        // A member that applied its own removal and stopped before it told its owner (a disk that failed in between,
        // found by the member simulation, seed 9504812) tells it now: out of the configuration, it sends nothing, so
        // no peer would ever refuse it and say so.
        applyLoop.execute { [self] in
            if members.isRemoved(memberID) { noticeRemoval() }
        }
    }

    /// Stops the loops; pending requests fail with etcd's "server stopped".
    public func stop() {
        guard !stopped.exchange(true, ordering: .sequentiallyConsistent) else { return }
        // Work already running on the Raft loop finishes; work queued after sees `stopped` and does nothing.
        let drained = DispatchSemaphore(value: 0)
        loop.execute { [self] in
            // Whoever still waits for a read hears that the member stopped.
            for waiter in driver.takeAllReads() { waiter.completion(.stopped) }
            drained.signal()
        }
        if !loop.inLoop { _ = drained.wait(timeout: .now() + 10) }
        loop.stop()
        for waiter in inbox.take().reads { waiter.completion(.stopped) }
        // The apply loop's last pass commits SQLite and releases held reads.
        applyQueue.stop()
        while applyRunning.load(ordering: .sequentiallyConsistent) { usleep(1000) }
        applyLoop.stop()
        watchLoop.stop()
        waiters.failAll(with: .stopped)
        backend.closeReaders()
        // Release the data directory: the same process may open it again (tests restart members in place).
        lock = nil
    }

    /// Stops the member where it is, as a killed process stops: its loops end between two jobs, nothing is
    /// committed, flushed or handed over, and what it wrote stays on disk. Then it lets go of its data directory
    /// (the directory lock, SQLite's uncommitted batch), so that the same process may open the directory again:
    /// a crash in a simulation. Not to be called from one of the member's loops.
    public func halt() {
        guard !stopped.exchange(true, ordering: .sequentiallyConsistent) else { return }
        loop.stop()
        applyLoop.stop()
        watchLoop.stop()
        backend.abandonBatch()
        // The loops are stopped, so their state is nobody's: drop what holds requests' callbacks (which hold this
        // member), so that the halted member is freed and its files closed.
        waiters.failAll(with: .stopped)
        for waiter in driver.takeAllReads() + inbox.take().reads { waiter.completion(.stopped) }
        for (_, held) in heldReads { for waiter in held { waiter.completion(.stopped) } }
        heldReads = []
        applyQueue.stop()
        _ = applyQueue.take()
        applyQueue.done()
        lock = nil
    }

    public var status: NodeStatus { published.withLock { $0 } }

    /// Proposals made and not yet answered (committed and applied, or failed).
    public var pendingProposalCount: Int { waiters.count }

    /// Database size as of the last applied batch.
    public var backendSize: Int64 { dbSize.load(ordering: .relaxed) }
    /// Bytes the data occupies in the database (the quota counts these).
    public var backendSizeInUse: Int64 { dbSizeInUse.load(ordering: .relaxed) }

    /// A response header as etcd fills it for this member.
    public func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        var h = Etcdserverpb_ResponseHeader()
        h.clusterID = clusterID
        h.memberID = memberID
        h.revision = revision
        h.raftTerm = status.term
        return h
    }

    // MARK: Requests

    /// Replicates `request` and waits until it is applied here.
    public func propose(_ request: Quorumpb_RaftRequest, deadline: Int64? = nil) async -> ApplyResult {
        await withCheckedContinuation { continuation in
            propose(request, deadline: deadline) { continuation.resume(returning: $0) }
        }
    }

    /// Replicates `request`; `completion` runs once it is applied here (on the Raft loop's thread: keep it
    /// short), or with the reason it failed.
    ///
    /// `deadline` (this member's clock, `now`) is the caller's: a proposal whose deadline passed before the Raft
    /// loop got to it is not proposed at all, and one still waiting for its entry to be applied then fails with
    /// "deadline exceeded" (the entry may still be applied later, as with etcd when a client gives up). Refused at
    /// once with "too many requests" when applying lags committing by more than `maxCommitApplyGap` entries (etcd's
    /// rule) or when `maxPendingProposals`/`maxPendingProposalBytes` proposals already wait.
    public func propose(
        _ request: Quorumpb_RaftRequest, deadline: Int64? = nil,
        completion: @escaping @Sendable (ApplyResult) -> Void
    ) {
        let current = status
        if let failure = current.failure { return completion(.failure(.internal(failure))) }
        if answersNothing { return completion(.failure(.stopped)) }
        if current.commitIndex > appliedIndex.load(ordering: .relaxed) + Self.maxCommitApplyGap {
            observer.proposalFailed()
            return completion(.failure(.tooManyRequests))
        }
        let start = now()
        if let deadline, deadline <= start { return completion(.failure(.deadlineExceeded)) }
        var request = request
        let id = ids.next()
        request.id = id
        request.proposer = memberID
        let data: [UInt8]
        do { data = try request.serializedBytes() } catch { return completion(.failure(.internal("encode: \(error)"))) }
        // etcd's limit applies to the replicated entry, so a request just under the gRPC limit can still be refused.
        if data.count > config.maxRequestBytes { return completion(.failure(.requestTooLarge)) }
        let timeout = start + config.effectiveRequestTimeout
        let ownDeadline = deadline.map { $0 < timeout } ?? false
        guard
            waiters.register(
                id, deadline: ownDeadline ? deadline! : timeout, bytes: data.count,
                limits: (config.maxPendingProposals, config.maxPendingProposalBytes),
                expiry: ownDeadline ? .deadlineExceeded : nil, completion)
        else {
            observer.proposalFailed()
            return completion(.failure(.tooManyRequests))
        }
        post { $0.proposals.append(InboxWork.Proposal(id: id, data: data, deadline: ownDeadline ? deadline : nil)) }
    }

    /// Waits until this member has applied everything committed when the call started (Raft's ReadIndex):
    /// a read served afterwards is linearizable.
    public func readBarrier() async throws(EtcdError) {
        let error = await withCheckedContinuation { continuation in
            readBarrier { continuation.resume(returning: $0) }
        }
        if let error { throw error }
    }

    /// `readBarrier()` for callers that cannot suspend: `completion` runs on the Raft loop's thread with nil
    /// once a read may proceed, or with the reason it may not. With the caller's `deadline` (this member's clock),
    /// a read still waiting when it passes fails with "deadline exceeded". Past `maxPendingReads` waiting reads,
    /// "too many requests" at once.
    public func readBarrier(deadline: Int64? = nil, completion: @escaping @Sendable (EtcdError?) -> Void) {
        if answersNothing { return completion(.stopped) }
        if pendingReadCount.wrappingAdd(1, ordering: .relaxed).newValue > config.maxPendingReads {
            pendingReadCount.wrappingSubtract(1, ordering: .relaxed)
            return completion(.tooManyRequests)
        }
        let start = now()
        if let deadline, deadline <= start {
            pendingReadCount.wrappingSubtract(1, ordering: .relaxed)
            return completion(.deadlineExceeded)
        }
        let timeout = start + config.effectiveRequestTimeout
        let ownDeadline = deadline.map { $0 < timeout } ?? false
        let waiter = ReadWaiter(
            completion: { [self] error in
                pendingReadCount.wrappingSubtract(1, ordering: .relaxed)
                // A read confirmed while the member applied its own removal is not answered: its answer would come
                // from a member that no longer belongs to the cluster (member simulation seed 9308475, a read served
                // by the Raft loop right after the apply loop applied the removal).
                completion(error == nil && answersNothing ? .stopped : error)
            }, deadline: ownDeadline ? deadline! : timeout, expiry: ownDeadline ? .deadlineExceeded : nil)
        post { $0.reads.append(waiter) }
    }

    /// Calls `completion` (nil) once this member has applied `index`, or with the reason it could not in time: a
    /// simple token is known to a member only once it applied the Authenticate entry that assigned it.
    public func waitApplied(_ index: UInt64, completion: @escaping @Sendable (EtcdError?) -> Void) {
        if appliedIndex.load(ordering: .acquiring) >= index { return completion(nil) }
        let waiter = ReadWaiter(completion: completion, deadline: now() + config.effectiveRequestTimeout)
        applyQueue.push(.reads(index: index, waiters: [waiter]))
    }

    /// The index this member has applied through.
    public var applied: UInt64 { appliedIndex.load(ordering: .acquiring) }

    /// This member applied its own removal from the cluster, or a peer said the cluster removed it.
    public var isRemoved: Bool { members.isRemoved(memberID) || removalNoticed.load(ordering: .acquiring) }

    /// A removed member answers no more requests (nor entries applied after its removal): it no longer belongs to
    /// the cluster whose answers it would give, and its owner is stopping it (`onRemoved`), as etcd's server stops.
    var answersNothing: Bool { isRemoved && config.testingNodeMutation != .removedMemberKeepsServing }

    /// Tells the owner, once, that the member was removed (`onRemoved`), whichever way it learned.
    func noticeRemoval() {
        guard config.testingNodeMutation != .removedMemberKeepsServing else { return }
        guard !removalNoticed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        logger.warning("the member has been permanently removed from the cluster")
        onRemoved()
    }

    /// A peer refused this member's messages because the cluster removed it (etcd's peers answer such a member
    /// "410 Gone" and it stops). The usual way a removed follower learns it: the leader stops replicating to a
    /// member as soon as it appends the entry removing it, so that member seldom applies its own removal.
    public func removedByPeer() { noticeRemoval() }

    /// etcd's lease checkpoints (`--experimental-enable-lease-checkpoint`): on the leader, records the remaining
    /// TTL of every lease through the log (in batches of 1000, as etcd's `maxLeaseCheckpointBatchSize`), so that
    /// a new leader continues from it. Called every `leaseCheckpointNanoseconds`; does nothing on a follower.
    public func checkpointLeases() {
        guard status.isLeader else { return }
        proposeLeaseCheckpoints(leases.pendingCheckpoints())
    }

    func proposeLeaseCheckpoints(_ checkpoints: [(id: Int64, remaining: Int64)]) {
        var start = 0
        while start < checkpoints.count {
            let batch = checkpoints[start..<min(checkpoints.count, start + 1000)]
            start += batch.count
            var request = Quorumpb_RaftRequest()
            var checkpoint = Etcdserverpb_LeaseCheckpointRequest()
            checkpoint.checkpoints = batch.map { item in
                var one = Etcdserverpb_LeaseCheckpoint()
                one.id = item.id
                one.remainingTtl = item.remaining
                return one
            }
            request.leaseCheckpoint = checkpoint
            propose(request) { _ in }
        }
    }

    /// A lease grant request; chooses the id if the client did not (as etcd, before replication).
    public func leaseGrantRequest(ttl: Int64, id: Int64) -> Quorumpb_RaftRequest {
        var request = Quorumpb_RaftRequest()
        var grant = Etcdserverpb_LeaseGrantRequest()
        grant.ttl = ttl
        grant.id = id
        while grant.id == 0 { grant.id = Int64(bitPattern: ids.next() & ((1 << 63) - 1)) }
        request.leaseGrant = grant
        return request
    }

    /// Announces this member's name and client URLs to the cluster.
    public func publishAttributes() async -> ApplyResult {
        await withCheckedContinuation { continuation in
            publishAttributes { continuation.resume(returning: $0) }
        }
    }

    /// `publishAttributes` for callers that cannot suspend: `completion` runs on one of the member's loops.
    public func publishAttributes(completion: @escaping @Sendable (ApplyResult) -> Void) {
        var attributes = Quorumpb_MemberAttributes()
        attributes.memberID = memberID
        attributes.name = config.name
        attributes.clientUrls = config.advertiseClientURLs
        attributes.serverVersion = Version.etcdServer
        var request = Quorumpb_RaftRequest()
        request.publish = attributes
        propose(request) { [self] result in
            if case .success = result { published.withLock { $0.published = true } }
            completion(result)
        }
    }

    /// Commits what the apply loop has applied so far to SQLite, for readers of the database file itself (a
    /// snapshot copy); key-space reads never need it.
    public func commitBackend() async throws(EtcdError) {
        let error: EtcdError? = await withCheckedContinuation { continuation in
            applyQueue.push(
                .perform { node in
                    do {
                        try node.commitBackend()
                        continuation.resume(returning: nil)
                    } catch {
                        continuation.resume(returning: .internal("commit: \(error)"))
                    }
                })
        }
        if let error { throw error }
    }

    /// Hands leadership to `target` and waits until it has taken over (etcd's MoveLeader).
    public func moveLeader(to target: UInt64) async throws(EtcdError) {
        guard let member = members.member(target), !member.isLearner else { throw .badLeaderTransferee }
        guard status.isLeader else { throw .notLeader }
        if target == memberID { return }
        perform { node in node.driver.raft.transferLeadership(to: target) }
        let deadline = now() + config.effectiveRequestTimeout
        while now() < deadline {
            if status.leader == target { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
        throw .timeoutDueToLeaderFail
    }

    /// A snapshot message from the leader, whose database image the transport already wrote to `imagePath`.
    public func receiveSnapshot(_ message: Message, imagePath: String) {
        perform { node in
            node.run {
                try node.drive { driver, actions in
                    driver.onSnapshotReceived(message, imagePath: imagePath, into: &actions)
                }
            }
        }
    }

    /// The outcome of sending a snapshot (Raft keeps the follower waiting until it hears).
    public func reportSnapshot(to peer: UInt64, succeeded: Bool) {
        perform { node in node.driver.onSnapshotReported(to: peer, succeeded: succeeded) }
    }

    public func reportUnreachable(_ peer: UInt64) {
        perform { node in node.driver.raft.reportUnreachable(peer) }
    }

    /// Before a graceful stop, a leader hands over to the most up-to-date voter so the cluster does not wait
    /// out an election timeout (etcd does the same).
    public func transferLeadershipBeforeStopping() async {
        guard status.isLeader else { return }
        let target: UInt64? = await withCheckedContinuation { continuation in
            perform { node in
                let voters = node.driver.raft.configuration.voters.filter { $0 != node.memberID }
                let progress = node.driver.raft.status.progress
                let best = voters.max { (progress[$0]?.match ?? 0) < (progress[$1]?.match ?? 0) }
                continuation.resume(returning: best)
            }
        }
        guard let target else { return }
        logger.info("transferring leadership before stopping", metadata: ["transferee": "\(Identity.hex(target))"])
        perform { node in node.driver.raft.transferLeadership(to: target) }
        let deadline = now() + Int64(config.electionMilliseconds) * 2_000_000
        while now() < deadline && status.leader == memberID {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Raft's view of each member's replication (leader only; empty elsewhere).
    public func replicationProgress() async -> [UInt64: ProgressStatus] {
        await withCheckedContinuation { continuation in
            perform { node in continuation.resume(returning: node.driver.raft.status.progress) }
        }
    }

    /// Steps a message received from a peer.
    public func receive(_ message: Message) {
        receive([message])
    }

    /// Steps a batch of messages received from a peer (one wake-up of the loop for all of them).
    public func receive(_ messages: [Message]) {
        post { $0.messages.append(contentsOf: messages) }
    }

    /// Runs `body` on the Raft loop (for rare operations such as leader transfer).
    func perform(_ body: @escaping @Sendable (MemberNode) -> Void) {
        post { $0.actions.append(body) }
    }

    /// Queues work for the Raft loop; the first work queued since the loop last looked schedules one pass that
    /// takes everything (so a burst of proposals shares one Ready and one fsync).
    private func post(_ add: (inout InboxWork) -> Void) {
        if inbox.add(add) { loop.execute { [self] in processInbox() } }
    }

    // MARK: Watch catch-up

    /// Asks the watch loop for a catch-up pass, unless one is queued.
    private func scheduleCatchUp() {
        guard !catchUpScheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        watchLoop.execute { [self] in catchUpPass() }
    }

    /// Moves watchers that fell behind forward by a bounded step, and sends progress notifications when due; asks
    /// for another pass while some are still behind (the loop takes other work in between).
    private func catchUpPass() {
        catchUpScheduled.store(false, ordering: .releasing)
        guard !stopped.load(ordering: .relaxed) else { return }
        var more = false
        do { more = try hub.catchUp() } catch { logger.warning("watch catch-up failed: \(error)") }
        let interval = config.watchProgressNotifyNanoseconds
        if interval > 0 && now() - lastProgressNotify >= interval {
            lastProgressNotify = now()
            hub.notifyProgress()
        }
        if more { scheduleCatchUp() }
    }

    /// Removes a snapshot image, on whichever disk the member lives (POSIX, or a simulated one through its VFS).
    func removeFile(_ path: String) {
        if let vfs = backend.vfs { try? vfs.removeFile(path) } else { try? FileSystem.remove(path) }
    }

    // MARK: Failure

    /// Stops the member for good on the first failure; a later one (the same fault reported again where the error
    /// surfaces, say) is only logged.
    func fail(_ message: String) {
        logger.critical("\(message)")
        let first = published.withLock { s -> Bool in
            guard s.failure == nil else { return false }
            s.failure = message
            return true
        }
        guard first else { return }
        waiters.failAll(with: .internal(message))
        onFatal(message)
    }
}

/// Requests queued for the Raft loop, taken all at once by its next pass.
struct InboxWork: Sendable {
    struct Proposal: Sendable {
        var id: UInt64
        var data: [UInt8]
        /// The caller's deadline (this member's clock), when it is earlier than the request timeout.
        var deadline: Int64?
    }

    var proposals: [Proposal] = []
    var messages: [Message] = []
    var reads: [ReadWaiter] = []
    var actions: [@Sendable (MemberNode) -> Void] = []
}
