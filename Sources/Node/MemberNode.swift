import Auth
import Batching
import EtcdProto
import Foundation
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
    private let ids: RequestIDGenerator
    /// The wall clock new member ids are made from (etcd's MemberAdd hashes the time in).
    private let wallClock: @Sendable () -> Date
    let waiters = Waiters()
    private let inbox = ScheduledBatch(InboxWork())
    /// Where the three loops run (see `SerialLoop`): Raft, apply, and watch catch-up.
    private let loop: any SerialLoop
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
    private var raft: RaftNode
    /// Where the Ready in hand is (a snapshot restore spans several passes of the loop).
    private var pipeline = ReadyPipeline()
    private let wal: any RaftLog
    private var reads = ReadIndexRounds<ReadWaiter>()
    /// When this member, as leader, last handed each follower a heartbeat (to tell the late ones).
    private var lateHeartbeats: LateHeartbeats
    /// Database images received from the leader, by snapshot index, until Raft hands the snapshot out.
    private var pendingSnapshotImages: [UInt64: String] = [:]
    /// Followers a database snapshot is being written or sent to (Raft loop only). Raft may ask again before the
    /// first attempt reported back; a second transfer to the same follower would only compete with the first.
    private var snapshotsInFlight: Set<UInt64> = []
    private var lastLeaseCheck: Int64 = 0
    /// The commit index the log recorded before this start: `start()` returns once it is applied.
    private var recoveredCommit: UInt64 = 0

    // Owned by the apply loop's thread (see MemberNode+Apply.swift).
    let applyQueue = ApplyQueue()
    let applier: Applier
    var heldReads: [(index: UInt64, waiters: [ReadWaiter])] = []
    var physicalCompactions: [(revision: Int64, id: UInt64, result: ApplyResult)] = []
    var appliedSinceSnapshot: UInt64 = 0
    var lastCompactionStep: Int64 = 0
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

    // MARK: Opening

    /// Opens the member's data directory, creating and bootstrapping it on first start.
    public static func open(
        config: NodeConfig, transport: any RaftTransport = NoPeers(), logger: Logger,
        observer: any NodeObserver = NoObserver(),
        now: @escaping @Sendable () -> Int64 = { Int64(monotonicNanoseconds()) },
        onFatal: @escaping @Sendable (String) -> Void = { fatalError($0) },
        onRemoved: @escaping @Sendable () -> Void = {}, loop: (any SerialLoop)? = nil,
        applyLoop: (any SerialLoop)? = nil, watchLoop: (any SerialLoop)? = nil, raftSeed: UInt64? = nil,
        wallClock: @escaping @Sendable () -> Date = { Date() }
    ) throws -> MemberNode {
        try FileSystem.makeDirectory(config.dataDir + "/member/snap")
        let lock = try DirectoryLock(directory: config.dataDir)
        return try MemberNode(
            config: config, disk: PosixDisk(), vfs: nil, lock: lock, transport: transport, logger: logger,
            observer: observer, now: now, onFatal: onFatal, onRemoved: onRemoved,
            loop: loop ?? ThreadLoop(name: "quorum-raft"), applyLoop: applyLoop ?? ThreadLoop(name: "quorum-apply"),
            watchLoop: watchLoop ?? ThreadLoop(name: "quorum-watch"),
            raftSeed: raftSeed ?? UInt64.random(in: 1...UInt64.max), wallClock: wallClock)
    }

    /// Opens a member whose log and database live on `disk` (SQLite through `vfs`, a VFS over the same disk): a
    /// simulation's member on a simulated disk. Everything else is as `open`, every loop and clock given. The member
    /// sends no database snapshots from such a disk yet (`Backend.replace` and image files are POSIX-only), so a
    /// simulation keeps the whole log (`snapshotCount`).
    public static func open<D: Disk>(
        config: NodeConfig, disk: D, vfs: DiskVFS, transport: any RaftTransport, logger: Logger,
        now: @escaping @Sendable () -> Int64, onFatal: @escaping @Sendable (String) -> Void,
        onRemoved: @escaping @Sendable () -> Void = {}, loop: any SerialLoop, applyLoop: any SerialLoop,
        watchLoop: any SerialLoop, raftSeed: UInt64, wallClock: @escaping @Sendable () -> Date
    ) throws -> MemberNode {
        try disk.makeDirectory(config.dataDir + "/member/snap")
        return try MemberNode(
            config: config, disk: disk, vfs: vfs, lock: nil, transport: transport, logger: logger,
            observer: NoObserver(), now: now, onFatal: onFatal, onRemoved: onRemoved, loop: loop, applyLoop: applyLoop,
            watchLoop: watchLoop, raftSeed: raftSeed, wallClock: wallClock)
    }

    private init<D: Disk>(
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

        let backend = try Backend(path: config.backendPath, vfs: vfs)
        self.backend = backend
        let raftState: PersistentState
        let isNew = !WriteAheadLogOn<D>.exists(in: config.walDirectory, disk: disk)
        if isNew, let join = config.join {
            // Joining a running cluster: the members told us who we are; the leader sends the state.
            var metadata = Quorumpb_NodeMetadata()
            metadata.memberID = join.memberID
            metadata.clusterID = join.clusterID
            metadata.name = config.name
            let members = try ClusterMembers(backend: backend)
            try backend.beginBatch()
            for m in join.members { try members.upsert(m, backend: backend) }
            try backend.setMetaInt("consistent_index", 0)
            try backend.makeDurable()
            wal = try WriteAheadLogOn<D>.create(
                in: config.walDirectory, disk: disk, metadata: try metadata.serializedBytes(), options: walOptions)
            memberID = join.memberID
            clusterID = join.clusterID
            raftState = PersistentState()
            logger.info(
                "joining an existing cluster",
                metadata: [
                    "local-member-id": "\(Identity.hex(memberID))", "cluster-id": "\(Identity.hex(clusterID))",
                    "members": "\(join.members.count)",
                ])
        } else if isNew {
            guard config.initialClusterState == .new else {
                throw EtcdError(
                    .failedPrecondition,
                    "a member with --initial-cluster-state=existing must learn the cluster from its peers first")
            }
            let initial = config.initialCluster.map { member in
                MemberInfo(
                    id: Identity.memberID(peerURLs: member.peerURLs, token: config.initialClusterToken),
                    name: "", peerURLs: member.peerURLs, clientURLs: [], isLearner: false)
            }
            guard let me = config.initialCluster.first(where: { $0.name == config.name }) else {
                throw EtcdError(
                    .invalidArgument,
                    "couldn't find local name \"\(config.name)\" in the initial cluster configuration")
            }
            let myID = Identity.memberID(peerURLs: me.peerURLs, token: config.initialClusterToken)
            let clusterID = Identity.clusterID(memberIDs: initial.map(\.id))
            var metadata = Quorumpb_NodeMetadata()
            metadata.memberID = myID
            metadata.clusterID = clusterID
            metadata.name = config.name
            // The database learns the founding members before the log exists, so a crash between the two
            // leaves a database that the next start simply rewrites.
            let members = try ClusterMembers(backend: backend)
            try backend.beginBatch()
            for m in initial { try members.upsert(m, backend: backend) }
            try backend.setMetaInt("consistent_index", 0)
            try backend.makeDurable()
            // The log is born with the founding configuration in it (see `RaftNode.bootstrapState`): there is no
            // moment at which it exists without it.
            let founding = RaftNode.bootstrapState(peers: initial.map(\.id))
            wal = try WriteAheadLogOn<D>.create(
                in: config.walDirectory, disk: disk, metadata: try metadata.serializedBytes(),
                entries: founding.entries.map {
                    WALEntry(index: $0.index, term: $0.term, kind: $0.kind.rawValue, data: $0.data)
                },
                hardState: WALHardState(
                    term: founding.hardState.term, vote: founding.hardState.vote, commit: founding.hardState.commit),
                options: walOptions)
            memberID = myID
            self.clusterID = clusterID
            raftState = founding
            logger.info(
                "bootstrapping a new cluster",
                metadata: [
                    "local-member-id": "\(Identity.hex(myID))", "cluster-id": "\(Identity.hex(clusterID))",
                    "initial-cluster-size": "\(initial.count)",
                ])
        } else {
            let (log, recovery) = try WriteAheadLogOn<D>.open(in: config.walDirectory, disk: disk, options: walOptions)
            wal = log
            if let repaired = recovery.repairedTail {
                logger.warning("repaired torn write-ahead log tail", metadata: ["position": "\(repaired)"])
            }
            let metadata = try Quorumpb_NodeMetadata(serializedBytes: recovery.metadata)
            memberID = metadata.memberID
            clusterID = metadata.clusterID
            let disk = Recovery.Disk(
                hardState: recovery.hardState, snapshot: recovery.snapshot, entries: recovery.entries,
                appliedIndex: UInt64(try backend.metaInt("consistent_index") ?? 0),
                appliedTerm: try backend.metaInt("consistent_term").map { UInt64($0) },
                appliedConf: try backend.metaData("conf_state").flatMap { ConfStateCodec.decode(Array($0)) })
            let force =
                config.forceNewCluster
                ? Recovery.ForceNewCluster(
                    memberID: memberID,
                    members: Dictionary(
                        uniqueKeysWithValues: try ClusterMembers(backend: backend).all.map { ($0.id, $0) }))
                : nil
            let plan: Recovery.Plan
            do {
                plan = try Recovery.plan(disk, forceNewCluster: force)
            } catch {
                throw EtcdError(.failedPrecondition, "cannot restart from \(config.dataDir): \(error)")
            }
            for action in plan.actions {
                switch action {
                case .saveSnapshotMarker(let marker):
                    try wal.saveSnapshot(marker, replacingLog: false)
                case .append(let entries, let hs):
                    try wal.append(sync: true) { encoder in
                        for e in entries {
                            encoder.appendEntry(index: e.index, term: e.term, kind: e.kind.rawValue, data: e.data)
                        }
                        encoder.appendHardState(WALHardState(term: hs.term, vote: hs.vote, commit: hs.commit))
                    }
                    logger.warning(
                        "forcing a new one-member cluster: the other members are removed through the log",
                        metadata: [
                            "local-member-id": "\(Identity.hex(memberID))",
                            "removed-members": "\(plan.removedMembers.map(Identity.hex))",
                            "kept-through-index": "\(plan.recoveredThrough)",
                            "previous-commit-index": "\(recovery.hardState.commit)",
                        ])
                }
            }
            raftState = plan.state
            let hardState = plan.state.hardState
            let applied = plan.state.applied
            let entries = plan.state.entries
            logger.info(
                "restarting member",
                metadata: [
                    "local-member-id": "\(Identity.hex(memberID))", "cluster-id": "\(Identity.hex(clusterID))",
                    "commit-index": "\(hardState.commit)", "applied-index": "\(applied)",
                    "wal-entries": "\(entries.count)",
                ])
        }
        for name in (try? disk.list(config.dataDir + "/member/snap")) ?? []
        where ["incoming-", "outgoing-", "snapshot-"].contains(where: name.hasPrefix) {
            try? disk.remove(config.dataDir + "/member/snap/" + name)
        }
        ids = RequestIDGenerator(memberID: memberID, now: wallClock())
        store = try KVStore(backend: backend, valueCacheBytes: config.valueCacheBytes)
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
        raftConfig.snapshotCatchUpEntries = config.snapshotCatchUpEntries
        // A follower catching up through a snapshot then needs the entries written while it travelled.
        raftConfig.catchUpRetention =
            config.catchUpRetentionEntries ?? max(5000, 5 * config.snapshotCatchUpEntries)
        lateHeartbeats = LateHeartbeats(heartbeatNanoseconds: Int64(config.heartbeatMilliseconds) * 1_000_000)
        raft = RaftNode(config: raftConfig, state: raftState)
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
        begin()
        // Entries the log holds as committed but the database had not recorded (it commits lazily) are applied
        // again before the member serves: a read right after a restart sees every acknowledged write.
        while appliedIndex.load(ordering: .acquiring) < recoveredCommit && status.failure == nil
            && !stopped.load(ordering: .relaxed)
        {
            usleep(500)
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
        if raft.configuration.voters == [memberID] {
            try? raft.campaign()
        } else if config.initialElectionTickAdvance && raft.configuration.voters.contains(memberID) {
            // Two ticks short of an election timeout, as etcd advances them: the randomised timeout still decides
            // who campaigns first.
            for _ in 0..<max(0, raft.config.electionTick - 2) { raft.tick() }
        }
        applyRunning.store(true, ordering: .sequentiallyConsistent)
        applyQueue.attach(loop: applyLoop) { [weak self] in self?.applyPass() }
        // Time-driven work of the apply loop (lazy commits, compaction steps) happens even when nothing is applied.
        applyLoop.schedule(every: .milliseconds(Self.applyTickMilliseconds)) { [self] in applyPass() }
        loop.execute { [self] in
            publishStatus()
            // Whatever happened before the loop started (a single member's election) is handled at once.
            run { try drainReadies() }
        }
        loop.schedule(every: .milliseconds(config.heartbeatMilliseconds)) { [self] in
            run {
                raft.tick()
                onTick()
                requestReadIndexIfNeeded()
                try drainReadies()
            }
        }
        lastProgressNotify = now()
        // Watchers that fell behind are caught up when the hub says so, and at least every 100 ms (progress).
        watchLoop.schedule(every: .milliseconds(100)) { [self] in catchUpPass() }
    }

    /// Stops the loops; pending requests fail with etcd's "server stopped".
    public func stop() {
        guard !stopped.exchange(true, ordering: .sequentiallyConsistent) else { return }
        // Work already running on the Raft loop finishes; work queued after sees `stopped` and does nothing.
        let drained = DispatchSemaphore(value: 0)
        loop.execute { [self] in
            // Whoever still waits for a read hears that the member stopped.
            for waiter in reads.takeAll() { waiter.completion(.stopped) }
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
        for waiter in reads.takeAll() + inbox.take().reads { waiter.completion(.stopped) }
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
                completion(error)
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
        perform { node in node.raft.transferLeadership(to: target) }
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
            guard let index = message.snapshot?.metadata.index else { return }
            // The same snapshot may arrive twice (the leader retried): keep the newest image, drop the other.
            if let previous = node.pendingSnapshotImages[index], previous != imagePath {
                node.removeFile(previous)
            }
            node.pendingSnapshotImages[index] = imagePath
            try? node.raft.step(message)
        }
    }

    /// The outcome of sending a snapshot (Raft keeps the follower waiting until it hears).
    public func reportSnapshot(to peer: UInt64, succeeded: Bool) {
        perform { node in
            node.snapshotsInFlight.remove(peer)
            node.raft.reportSnapshot(peer, succeeded: succeeded)
        }
    }

    public func reportUnreachable(_ peer: UInt64) {
        perform { node in node.raft.reportUnreachable(peer) }
    }

    // MARK: Membership

    /// Proposes a membership change; `completion` runs once it is applied here, with the members afterwards.
    func proposeMembershipChange(
        kind: ConfChangeKind, member: MemberInfo,
        completion: @escaping @Sendable (Result<[MemberInfo], EtcdError>) -> Void
    ) {
        let id = ids.next()
        var context = Quorumpb_ConfChangeContext()
        context.member = member.proto
        context.requestID = id
        context.proposer = memberID
        let change: ConfChange
        do {
            change = ConfChange(kind: kind, node: member.id, context: try context.serializedBytes())
        } catch {
            return completion(.failure(.internal("encode: \(error)")))
        }
        let deadline = now() + config.effectiveRequestTimeout
        waiters.register(id, deadline: deadline) { result in
            completion(
                result.flatMap { response in
                    if case .members(let list) = response { return .success(list) }
                    return .failure(.internal("unexpected apply result"))
                })
        }
        perform { node in
            do {
                try node.raft.proposeConfChange(change)
            } catch {
                // etcd lets such a change time out; saying why is kinder.
                let reason: EtcdError =
                    node.raft.leaderID == 0 ? .noLeader : EtcdError(.unavailable, "etcdserver: \(error)")
                node.waiters.resume(id, with: .failure(reason))
            }
        }
    }

    /// etcd's `--max-learners` default: a cluster holds at most one learner.
    public static let maxLearners = 1

    /// etcd's MemberAdd: a new id from the peer URLs, the token and the time; refused if it would break quorum or
    /// exceed `maxLearners` (etcd checks the learners when it applies the change; checking before proposing can
    /// let two concurrent adds through, which Raft's one-pending-change rule makes rare).
    public func addMember(peerURLs: [String], isLearner: Bool) async -> Result<(MemberInfo, [MemberInfo]), EtcdError> {
        await withCheckedContinuation { continuation in
            addMember(peerURLs: peerURLs, isLearner: isLearner) { continuation.resume(returning: $0) }
        }
    }

    /// `addMember` for callers that cannot suspend (the simulation): `completion` runs on one of the member's loops.
    public func addMember(
        peerURLs: [String], isLearner: Bool,
        completion: @escaping @Sendable (Result<(MemberInfo, [MemberInfo]), EtcdError>) -> Void
    ) {
        let existing = members.all
        if existing.contains(where: { !Set($0.peerURLs).isDisjoint(with: peerURLs) }) {
            return completion(.failure(.peerURLExists))
        }
        if !isLearner && config.strictReconfigCheck && !readyToAddVoter(existing) {
            return completion(.failure(.memberNotEnoughStarted))
        }
        if isLearner && existing.filter(\.isLearner).count >= Self.maxLearners {
            return completion(.failure(.tooManyLearners))
        }
        // The member's wall clock (a simulation's is virtual, so that the new id replays with its seed).
        var id = Identity.memberID(peerURLs: peerURLs, token: config.initialClusterToken, time: wallClock())
        while members.member(id) != nil || members.isRemoved(id) { id &+= 1 }
        let member = MemberInfo(id: id, name: "", peerURLs: peerURLs, clientURLs: [], isLearner: isLearner)
        proposeMembershipChange(kind: isLearner ? .addLearner : .addVoter, member: member) { result in
            completion(result.map { (member, $0) })
        }
    }

    public func removeMember(_ id: UInt64) async -> Result<[MemberInfo], EtcdError> {
        await withCheckedContinuation { continuation in
            removeMember(id) { continuation.resume(returning: $0) }
        }
    }

    /// `removeMember` for callers that cannot suspend: `completion` runs on one of the member's loops.
    public func removeMember(_ id: UInt64, completion: @escaping @Sendable (Result<[MemberInfo], EtcdError>) -> Void) {
        guard let member = members.member(id) else { return completion(.failure(.memberNotFound)) }
        if !member.isLearner && config.strictReconfigCheck && !readyToRemoveVoter(id) {
            return completion(.failure(.memberNotEnoughStarted))
        }
        proposeMembershipChange(kind: .removeNode, member: member, completion: completion)
    }

    /// Promotes a learner once it has caught up (leader only: only the leader knows how far it got).
    public func promoteMember(_ id: UInt64) async -> Result<[MemberInfo], EtcdError> {
        await withCheckedContinuation { continuation in
            promoteMember(id) { continuation.resume(returning: $0) }
        }
    }

    /// `promoteMember` for callers that cannot suspend: `completion` runs on one of the member's loops.
    public func promoteMember(_ id: UInt64, completion: @escaping @Sendable (Result<[MemberInfo], EtcdError>) -> Void) {
        guard let member = members.member(id) else { return completion(.failure(.memberNotFound)) }
        guard member.isLearner else { return completion(.failure(.memberNotLearner)) }
        guard status.isLeader else { return completion(.failure(.notLeader)) }
        perform { node in
            let progress = node.raft.status.progress
            let leaderMatch = progress[node.memberID]?.match ?? node.raft.lastIndex
            let learnerMatch = progress[id]?.match ?? 0
            // etcd's rule: a learner is ready once it holds 90% of what the leader holds.
            guard leaderMatch > 0 && Double(learnerMatch) >= 0.9 * Double(leaderMatch) else {
                return completion(.failure(.learnerNotReady))
            }
            node.proposeMembershipChange(kind: .promoteLearner, member: member) { promoted in
                if case .success = promoted { node.counters.learnerPromotions.add(1, ordering: .relaxed) }
                completion(promoted)
            }
        }
    }

    /// Changes a member's peer URLs (a normal replicated request: the voting configuration is unchanged).
    public func updateMember(_ id: UInt64, peerURLs: [String]) async -> Result<[MemberInfo], EtcdError> {
        guard members.member(id) != nil else { return .failure(.memberNotFound) }
        if members.all.contains(where: { $0.id != id && !Set($0.peerURLs).isDisjoint(with: peerURLs) }) {
            return .failure(.peerURLExists)
        }
        var request = Quorumpb_RaftRequest()
        request.memberUpdate.id = id
        request.memberUpdate.peerUrls = peerURLs
        return await propose(request).map { _ in self.members.all }
    }

    /// A started member has published its name (etcd's notion of "started").
    private func readyToAddVoter(_ all: [MemberInfo]) -> Bool {
        let voters = all.filter { !$0.isLearner }
        let started = voters.filter { !$0.name.isEmpty }.count
        let after = voters.count + 1
        if started == 1 && after == 2 { return true }  // growing a one-member cluster, as etcd allows
        return started >= after / 2 + 1
    }

    private func readyToRemoveVoter(_ id: UInt64) -> Bool {
        let voters = members.all.filter { !$0.isLearner && $0.id != id }
        let started = voters.filter { !$0.name.isEmpty }.count
        return started >= voters.count / 2 + 1
    }

    /// Before a graceful stop, a leader hands over to the most up-to-date voter so the cluster does not wait
    /// out an election timeout (etcd does the same).
    public func transferLeadershipBeforeStopping() async {
        guard status.isLeader else { return }
        let target: UInt64? = await withCheckedContinuation { continuation in
            perform { node in
                let voters = node.raft.configuration.voters.filter { $0 != node.memberID }
                let progress = node.raft.status.progress
                let best = voters.max { (progress[$0]?.match ?? 0) < (progress[$1]?.match ?? 0) }
                continuation.resume(returning: best)
            }
        }
        guard let target else { return }
        logger.info("transferring leadership before stopping", metadata: ["transferee": "\(Identity.hex(target))"])
        perform { node in node.raft.transferLeadership(to: target) }
        let deadline = now() + Int64(config.electionMilliseconds) * 2_000_000
        while now() < deadline && status.leader == memberID {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Raft's view of each member's replication (leader only; empty elsewhere).
    public func replicationProgress() async -> [UInt64: ProgressStatus] {
        await withCheckedContinuation { continuation in
            perform { node in continuation.resume(returning: node.raft.status.progress) }
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

    // MARK: The Raft loop

    /// `raft`, the log and the read and snapshot bookkeeping belong to the Raft loop (`RaftLoop`), except while
    /// `start()` prepares them before the loop runs: checked in debug builds.
    @inline(__always)
    private func assertOnRaftLoop(_ function: StaticString = #function) {
        assert(loop.inLoop, "\(function) ran off the Raft loop")
    }

    /// One pass of the Raft loop over everything queued: proposals, peer messages, actions, reads, then Ready.
    private func processInbox() {
        assertOnRaftLoop()
        let work = inbox.take()
        guard !stopped.load(ordering: .relaxed), status.failure == nil else {
            for waiter in work.reads { waiter.completion(.stopped) }
            return
        }
        run {
            let started = work.proposals.contains { $0.deadline != nil } ? now() : 0
            for proposal in work.proposals {
                let id = proposal.id
                if let deadline = proposal.deadline, deadline <= started {
                    // The caller gave up before this loop got to it: never replicated, never applied.
                    observer.proposalFailed()
                    waiters.resume(id, with: .failure(.deadlineExceeded))
                    continue
                }
                do {
                    try raft.propose(proposal.data)
                } catch {
                    observer.proposalFailed()
                    waiters.resume(id, with: .failure(status.hasLeader ? .leaderChanged : .noLeader))
                }
            }
            for message in work.messages { try? raft.step(message) }
            for action in work.actions { action(self) }
            reads.add(work.reads)
            requestReadIndexIfNeeded()
            try drainReadies()
        }
    }

    /// Runs loop work unless the member stopped or failed; a failure of the log or the state machine is fatal.
    private func run(_ body: () throws -> Void) {
        guard !stopped.load(ordering: .relaxed), status.failure == nil else { return }
        do {
            try body()
        } catch {
            fail("raft loop stopped: \(error)")
        }
    }

    private func onTick() {
        assertOnRaftLoop()
        let t = now()
        waiters.expire(now: t, with: .timeout)
        expireReads(now: t)
        if t - lastLeaseCheck >= 500_000_000 {
            lastLeaseCheck = t
            if raft.role == .leader { proposeExpiredLeaseRevocations() }
        }
    }

    /// Works through Raft's Readies until it has none, or one waits for a snapshot to be restored.
    private func drainReadies() throws {
        assertOnRaftLoop()
        while let steps = pipeline.next(&raft) {
            guard try carryOut(steps) else { return }
            pipeline.finished(&raft)
            publishStatus()
        }
        trimLog()
        discardStaleSnapshotImages()
    }

    /// Carries out a Ready's steps in order; false when the last one started a snapshot restore, whose end
    /// (`onSnapshotRestored`) carries on with the rest.
    private func carryOut(_ steps: [ReadyPipeline.Step]) throws -> Bool {
        for step in steps {
            switch step {
            case .softState(let soft):
                onSoftState(soft)
            case .send(var outgoing):
                // The database image must match an applied index exactly, so the apply loop writes it.
                outgoing.removeAll { message in
                    guard message.kind == .snapshot else { return false }
                    if snapshotsInFlight.insert(message.to).inserted {
                        applyQueue.push(.perform { node in node.sendSnapshot(message) })
                    }
                    return true
                }
                if !outgoing.isEmpty {
                    noteHeartbeats(outgoing)
                    transport.send(outgoing)
                }
            case .restoreSnapshot(let snapshot):
                try restoreSnapshot(snapshot)
                return false
            case .recordSnapshot(let meta):
                // Raft installs a leader's snapshot only over a log that diverged from it, and drops that log.
                try wal.saveSnapshot(
                    WALSnapshot(index: meta.index, term: meta.term, confState: ConfStateCodec.encode(meta.confState)),
                    replacingLog: true)
                observer.snapshotSynced(nanoseconds: wal.stats.lastSyncNanoseconds)
                try wal.releaseSegments(through: meta.index)
            case .persist(let entries, let hardState, let sync):
                try persist(entries: entries, hardState: hardState, sync: sync)
            case .sendAfterPersist(let outgoing):
                noteHeartbeats(outgoing)
                transport.send(outgoing)
            case .apply(let entries):
                try handOver(entries)
            case .readStates(let states):
                serveReads(states)
            case .droppedReads(let contexts):
                for context in contexts { reads.onDropped(context) }
            }
        }
        return true
    }

    /// Reads Raft confirmed: served now if applied far enough, else by the apply loop once it is.
    private func serveReads(_ states: [ReadState]) {
        for state in states {
            let (waiting, slow) = reads.onConfirmed(state.context, now: now())
            if slow { counters.slowReadIndexes.add(1, ordering: .relaxed) }
            guard !waiting.isEmpty else { continue }
            if appliedIndex.load(ordering: .acquiring) >= state.index
                || config.testingNodeMutation == .servesReadsBeforeApplying
            {
                for waiter in waiting { waiter.completion(nil) }
            } else {
                // Released by the apply loop once it has applied the read's index.
                applyQueue.push(.reads(index: state.index, waiters: waiting))
            }
        }
    }

    /// Keeps the log in memory to what followers may still ask for: applied entries beyond the catch-up window
    /// are dropped from memory (the write-ahead log keeps them until the next snapshot; a follower that needs
    /// older ones gets a database snapshot, as after a compaction). Without it, memory held every entry since the
    /// last snapshot: up to `--snapshot-count` of them.
    private func trimLog() {
        assertOnRaftLoop()
        let applied = raft.appliedIndex
        guard applied >= raft.firstIndex + config.snapshotCatchUpEntries + Self.logTrimSlack else { return }
        raft.compact(through: applied, snapshotData: [])
    }

    /// How many entries beyond the catch-up window accumulate before the log is trimmed (amortises the trim).
    static let logTrimSlack: UInt64 = 1024

    private func persist(entries: [Entry], hardState: HardState?, sync: Bool) throws {
        assertOnRaftLoop()
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
        }
    }

    /// Hands committed entries to the apply loop. Raft learns here that a configuration entry was applied
    /// (its configuration travels with the entries, for the member table), since only this thread may touch it.
    private func handOver(_ entries: [Entry]) throws {
        assertOnRaftLoop()
        var configurations: [UInt64: ConfState] = [:]
        for entry in entries where entry.kind == .confChange {
            guard let change = try? ConfChange(serialized: entry.data) else { continue }
            configurations[entry.index] = raft.applyConfChange(change)
        }
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
    private func restoreSnapshot(_ snapshot: Snapshot) throws {
        assertOnRaftLoop()
        let meta = snapshot.metadata
        guard let image = pendingSnapshotImages.removeValue(forKey: meta.index) else {
            throw EtcdError.internal("snapshot at index \(meta.index) arrived without its database image")
        }
        applyQueue.push(
            .perform { node in
                let outcome = Result { try node.restoreStateMachine(from: image, meta) }
                node.perform { node in node.onSnapshotRestored(outcome) }
            })
    }

    /// The apply loop restored the state machine from the leader's snapshot: the Ready that carried it goes on.
    private func onSnapshotRestored(_ outcome: Result<Void, any Error>) {
        assertOnRaftLoop()
        run {
            try outcome.get()
            if try carryOut(pipeline.snapshotRestored()) {
                pipeline.finished(&raft)
                publishStatus()
            }
            try drainReadies()
        }
    }

    private func discardStaleSnapshotImages() {
        assertOnRaftLoop()
        guard !pendingSnapshotImages.isEmpty else { return }
        let applied = raft.appliedIndex
        for (index, path) in pendingSnapshotImages where index <= applied {
            removeFile(path)
            pendingSnapshotImages[index] = nil
        }
    }

    /// Sends a database image the apply loop wrote at `index`, with that index's snapshot metadata.
    func sendSnapshotImage(_ message: Message, index: UInt64, image: SnapshotImage) {
        assertOnRaftLoop()
        guard let term = raft.term(at: index) else {
            removeFile(image.path)
            snapshotsInFlight.remove(message.to)
            raft.reportSnapshot(message.to, succeeded: false)
            return
        }
        var message = message
        message.snapshot = Snapshot(
            metadata: SnapshotMetadata(index: index, term: term, confState: raft.confState(at: index)))
        logger.info(
            "sending database snapshot",
            metadata: ["to": "\(Identity.hex(message.to))", "index": "\(index)", "bytes": "\(image.size)"])
        transport.sendSnapshot(message, image: image)
    }

    /// The apply loop made the state machine durable through `applied`: record a snapshot there and let Raft
    /// and the log drop what precedes it.
    func compactLog(through applied: UInt64) {
        assertOnRaftLoop()
        // While a leader's snapshot is restored the log is about to start past `applied`; the next compaction
        // after it does the work.
        guard pipeline.stage == .idle else { return }
        let start = monotonicNanoseconds()
        guard let term = raft.term(at: applied) else { return }
        do {
            let conf = raft.confState(at: applied)
            try wal.saveSnapshot(
                WALSnapshot(index: applied, term: term, confState: ConfStateCodec.encode(conf)), replacingLog: false)
            raft.compact(through: applied, snapshotData: [])
            try wal.releaseSegments(through: applied)
        } catch {
            fail("saving a snapshot failed: \(error)")
            return
        }
        observer.snapshotSynced(nanoseconds: wal.stats.lastSyncNanoseconds)
        observer.snapshotSaved(nanoseconds: monotonicNanoseconds() - start)
        logger.info("saved snapshot", metadata: ["snapshot-index": "\(applied)"])
    }

    private func onSoftState(_ soft: SoftState) {
        assertOnRaftLoop()
        let previous = status.leader
        // Heartbeats are timed within one term of leadership.
        lateHeartbeats.reset()
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
                metadata: ["leader": "\(Identity.hex(soft.leader))", "term": "\(raft.currentTerm)"])
        }
    }

    private func publishStatus() {
        assertOnRaftLoop()
        // Cheap accessors only: `raft.status` builds per-peer progress, too much for every iteration.
        let term = raft.currentTerm
        let commit = raft.commitIndex
        let lastIndex = raft.lastIndex
        let lastTerm = raft.term(at: lastIndex) ?? 0
        let isLearner = raft.configuration.learners.contains(memberID)
        published.withLock { p in
            p.term = term
            p.commitIndex = commit
            p.lastIndex = lastIndex
            p.lastTerm = lastTerm
            p.isLearner = isLearner
        }
    }

    private func proposeExpiredLeaseRevocations() {
        assertOnRaftLoop()
        for id in leases.takeExpired(retryAfterNanoseconds: 3_000_000_000) {
            counters.leaseExpirations.add(1, ordering: .relaxed)
            var request = Quorumpb_RaftRequest()
            request.proposer = memberID
            // The member revokes as etcd's `WithRoot`: whoever attached the keys, an expired lease goes.
            request.internal = true
            var revoke = Etcdserverpb_LeaseRevokeRequest()
            revoke.id = id
            request.leaseRevoke = revoke
            if let data = try? request.serializedBytes() as [UInt8] { try? raft.propose(data) }
        }
    }

    // MARK: Linearizable reads (Raft side)

    private func requestReadIndexIfNeeded() {
        assertOnRaftLoop()
        if raft.leaderID == 0 && raft.role != .leader { return }
        if let context = reads.startRound(now: now(), id: ids.next()) { raft.readIndex(context: context) }
    }

    /// Fails the reads whose deadline passed: no leader to confirm them, or none in time.
    private func expireReads(now t: Int64) {
        assertOnRaftLoop()
        let (expired, givenUp) = reads.expire(now: t, deadline: \.deadline)
        let error: EtcdError = status.hasLeader ? .timeout : .noLeader
        for waiter in expired { waiter.completion(waiter.expiry ?? error) }
        if !expired.isEmpty { counters.readIndexFailures.add(expired.count, ordering: .relaxed) }
        if givenUp > 0 { counters.slowReadIndexes.add(givenUp, ordering: .relaxed) }
    }

    /// etcd's heartbeat time detector (`LateHeartbeats`), counted in `etcd_server_heartbeat_send_failures_total`.
    private func noteHeartbeats(_ messages: [Message]) {
        assertOnRaftLoop()
        var t: Int64?
        for message in messages where message.kind == .heartbeat {
            let sent = t ?? now()
            t = sent
            guard let late = lateHeartbeats.onSent(to: message.to, now: sent) else { continue }
            counters.heartbeatSendFailures.add(1, ordering: .relaxed)
            logger.warning(
                "leader failed to send out heartbeat on time; leader is overloaded likely from slow disk",
                metadata: [
                    "to": "\(Identity.hex(message.to))",
                    "heartbeat-interval": "\(config.heartbeatMilliseconds)ms",
                    "expected-duration": "\(2 * config.heartbeatMilliseconds)ms",
                    "exceeded-duration": "\(Double(late) / 1e6)ms",
                ])
        }
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
