import EtcdProto
import Foundation
import Logging
import MVCC
import Node
import Raft
import Storage

/// Real members (`MemberNode`: the production Raft loop, write-ahead log, SQLite key space and apply loop) in one
/// process, driven by one `SimScheduler` from a seed: the network delays, drops, duplicates and partitions; clients
/// put, read linearizably and compare-and-swap through any member; the history must be linearizable and the members
/// must end with the same data.
///
/// Members crash and restart (`MemberNode.halt`: a killed process, what it wrote stays) and watchers follow the
/// clients' writes. What it does not simulate yet: the disk (members write real files in a temporary directory,
/// without fsync, so a crash is never a power cut: that needs the member on `Disk` and `DiskVFS`), leases.
public final class MemberSimulation: @unchecked Sendable {
    // @unchecked: confined to the scheduler's thread.
    public struct Options: Sendable {
        public var members = 3
        public var clients = 4
        /// Keys the clients share (few, so that operations contend).
        public var keys: UInt64 = 4
        /// Client operations in all, at most.
        public var operations = 200
        /// Virtual time the run may take before it counts as stuck.
        public var timeLimit: SimTime = .ms(120_000)
        public var network = NetworkFaults()
        /// Isolate a random member now and then, and heal.
        public var partitions = true
        /// Print a readable line for every fault, member start, client operation and watch response.
        public var trace = false
        /// Crash a member now and then (a killed process: what it wrote stays) and restart it from its files.
        public var crashes = true
        /// Members on simulated disks (`SimFileSystem`, SQLite through `DiskVFS`): a crash is then a power cut that
        /// loses, keeps or tears what was not synced. Off: real files in a temporary directory (a crash keeps them).
        public var simulatedDisks = false
        /// With simulated disks: the chance that a write, an fsync or a directory fsync fails (EIO, ENOSPC). A member
        /// that hits one must stop (never go on with data it cannot trust); the simulator then restarts it, as a
        /// supervisor would, and every check still holds.
        public var diskFaultRate = 0.0
        /// With simulated disks: the chance that an fsync is slow (50 ms to 1.5 s of virtual time), blocking the
        /// member's loop that called it (its Raft loop for the log, its apply loop for SQLite) meanwhile.
        public var slowSyncRate = 0.0
        /// Compact the key space now and then (to a revision 10-50 behind the newest), while watchers read
        /// history and clients read serializably at revisions a compaction may take.
        public var compactions = true
        /// Clients that grant leases, attach keys, keep them alive, revoke them or let them expire.
        public var leaseClients = 2
        /// Watchers of the whole key space (one from the first revision, the others moving between members).
        public var watchers = 4
        /// Most a client waits between two operations (so that the run spans several faults).
        public var thinkMilliseconds: Int64 = 200
        /// A Raft safety rule switched off in every member, to show the checks catch it.
        public var mutation: SafetyMutation?
        /// A rule of the member itself switched off, likewise.
        public var nodeMutation: NodeMutation?
        /// A rule of the watch hub switched off, likewise.
        public var watchMutation: WatchMutation?
        /// Change the membership now and then through the members' own API (`SimMembership`): add a learner that
        /// joins and catches up, promote it, remove a voter (the leader too), keeping three to five voters.
        public var membershipChanges = false
        public init() {}
    }

    public struct Report: Sendable, CustomStringConvertible {
        public var seed: UInt64
        public var operations: Int
        public var acknowledged: Int
        public var unknown: Int
        public var violations: [String]
        public var virtualMilliseconds: Int64
        public var events: Int
        public var messagesDelivered: Int
        public var crashes: Int
        public var snapshots: Int
        /// Slow fsyncs (`Options.slowSyncRate`).
        public var stalls: Int
        /// Membership changes the cluster applied (adds, promotions, removals).
        public var membershipChanges = 0
        public var ok: Bool { violations.isEmpty }
        public var description: String {
            "seed \(seed): \(operations) operations (\(acknowledged) acknowledged, \(unknown) unknown), "
                + "\(virtualMilliseconds) ms simulated, \(events) events, \(messagesDelivered) messages, "
                + "\(crashes) crashes, \(snapshots) snapshots" + (stalls > 0 ? ", \(stalls) slow fsyncs" : "")
                + (membershipChanges > 0 ? ", \(membershipChanges) membership changes" : "")
                + (violations.isEmpty ? "" : "; VIOLATIONS: " + violations.joined(separator: "; "))
        }
    }

    struct Member {
        var id: UInt64 = 0
        var name: String
        var dataDir: String
        var node: MemberNode?
        var loops: [SimLoop] = []
        /// Its disk and the SQLite VFS over it, with `Options.simulatedDisks`.
        var disk: SimFileSystem?
        var vfs: DiskVFS?
        /// Where it stands in the cluster's membership (`SimMembership`).
        var standing = Standing.founder
        /// It called `onRemoved`: it noticed it was removed.
        var noticedRemoval = false

        enum Standing {
            /// Listed in `--initial-cluster`.
            case founder
            /// Added through MemberAdd; `join` is what it starts with (`--initial-cluster-state existing`), nil
            /// until the cluster confirmed the add (or the add's outcome is unknown and it has not shown up yet).
            case added(join: NodeConfig.JoinInfo?)
            /// Removed from the cluster, stopped and freed: never started again.
            case removed
        }

        /// Part of the cluster as far as the simulation knows: started once, or to be started, and not removed.
        var isMember: Bool {
            switch standing {
            case .founder: true
            case .added(let join): join != nil
            case .removed: false
            }
        }
    }

    public let seed: UInt64
    public let options: Options
    public let scheduler: SimScheduler
    let peers: SimPeers
    var members: [Member] = []
    let root: String
    var history: [HistoryEntry] = []
    var issued = 0
    var outstanding = 0
    var failures: [String] = []
    /// Each client's next value: unique across the run, so a read names the write it saw.
    var nextValue: [Int64]
    lazy var watchers = SimWatchers(simulation: self)
    lazy var leases = SimLeases(simulation: self)
    var inFlight: [UInt64: InFlight] = [:]
    var nextToken: UInt64 = 0
    /// A serializable read as its client saw it: after the run, the key must have had that value at that revision.
    struct SerializableRead {
        var member: Int
        var key: UInt64
        var value: Int64?
        var revision: Int64
    }
    var serializableReads: [SerializableRead] = []
    var crashes = 0
    /// Every member halted by a crash: all must be freed by the end of the run.
    var haltedNodes: [WeakNode] = []
    final class WeakNode { weak var node: MemberNode? }
    lazy var membership = SimMembership(simulation: self)
    /// Term → the member seen leading it (sampled): two leaders in one term is a violation.
    var leaderOfTerm: [UInt64: UInt64] = [:]

    public init(seed: UInt64, options: Options = Options()) throws {
        self.seed = seed
        self.options = options
        scheduler = SimScheduler(seed: seed)
        peers = SimPeers(scheduler: scheduler, network: FaultyNetwork(faults: options.network))
        var template = Array("/tmp/quorum-membersim-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        root = String(cString: made)
        nextValue = (0..<options.clients).map { Int64($0 + 1) * 1_000_000 }
        let names = (1...options.members).map { "m\($0)" }
        members = names.map { Member(name: $0, dataDir: root + "/" + $0) }
    }

    /// A simulation made but never run (a test that stops early) still leaves no directory behind.
    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// Stops every member's loops and drops every pending event, so that the members are freed (their files
    /// closed), then removes the run's directory. A run holds real files: a sweep of thousands of seeds must not
    /// keep them.
    func tearDown() {
        let refs =
            members.map { m in
                let r = WeakNode()
                r.node = m.node
                return r
            } + haltedNodes
        for i in members.indices {
            // Halting drops the callbacks a member still holds (a member that failed may hold some).
            members[i].node?.halt()
            members[i].loops.forEach { $0.stop() }
            members[i].loops = []
            peers.detach(members[i].id)
            members[i].node = nil
        }
        watchers.release()
        leases.finished = true
        scheduler.clear()
        if refs.contains(where: { $0.node != nil }) {
            failures.append("members outlived the run (a reference cycle keeps their files open)")
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Runs the whole scenario and checks it.
    public func run() -> Report {
        // SQLite's own PRNG (WAL salts) is process-wide: seeded for the run, so that a seed replays.
        if options.simulatedDisks { DiskVFS.seedSQLiteRandomness(UInt32(truncatingIfNeeded: seed) | 1) }
        defer { if options.simulatedDisks { DiskVFS.seedSQLiteRandomness(0) } }
        for i in members.indices { startMember(i) }
        for c in 0..<options.clients {
            scheduler.after(.ms(Int64(500 + c * 37))) { [self] in nextOperation(client: c) }
        }
        if options.partitions { scheduleFault() }
        if options.crashes { scheduleCrash() }
        if options.compactions { scheduleCompaction() }
        if options.membershipChanges { membership.start() }
        watchLeaders(last: "")
        watchers.start(count: options.watchers)
        leases.start(clients: options.leaseClients)
        let finished = scheduler.run(until: options.timeLimit) { [self] in
            issued >= options.operations && outstanding == 0
        }
        if !finished { failures.append("the run did not finish within its step bound") }
        if issued < options.operations || outstanding > 0 {
            failures.append(
                "stuck: \(issued) of \(options.operations) operations issued, \(outstanding) unanswered at "
                    + "\(scheduler.now / 1000) ms")
        }
        settleAndCompare()
        if options.membershipChanges { failures += membership.check() }
        checkLeases()
        checkWatchers()
        checkSerializableReads()
        // Many operations of unknown outcome on one key (crashes, timeouts) can exhaust the usual search budget; such
        // a history is searched again with a far larger one before it counts as a failure.
        var verdict = LinearizabilityChecker().check(history)
        if case .inconclusive = verdict { verdict = LinearizabilityChecker(maxSteps: 200_000_000).check(history) }
        switch verdict {
        case .linearizable: break
        case .violation(let key): failures.append("the history of key \(key) is not linearizable")
        case .inconclusive(let key): failures.append("the linearizability search gave up on key \(key)")
        }
        let stalls = members.compactMap(\.disk).map(\.stats.stalls).reduce(0, +)
        tearDown()
        return Report(
            seed: seed, operations: history.count, acknowledged: history.filter { $0.output != .unknown }.count,
            unknown: history.filter { $0.output == .unknown }.count, violations: failures,
            virtualMilliseconds: scheduler.now / 1000, events: scheduler.steps, messagesDelivered: peers.delivered,
            crashes: crashes, snapshots: peers.snapshots, stalls: stalls, membershipChanges: membership.applied)
    }

    /// A line of the trace (`Options.trace`), stamped with the virtual time.
    func trace(_ line: @autoclosure () -> String) {
        guard options.trace else { return }
        let ms = scheduler.now / 1000
        print("[\(ms / 1000).\(String(format: "%03d", ms % 1000))] \(line())")
    }

    /// Every 5 ms: who leads in which term. Two members leading one term is a violation (Raft's election safety;
    /// a membership change that let two majorities form would show here). With the trace on, a line whenever it
    /// changes.
    func watchLeaders(last: String) {
        var leading: [String] = []
        for m in members {
            guard let status = m.node?.status, status.isLeader else { continue }
            leading.append("\(m.name) (term \(status.term))")
            guard let first = leaderOfTerm[status.term] else {
                leaderOfTerm[status.term] = m.id
                continue
            }
            let violation =
                "\(members.first { $0.id == first }?.name ?? "?") and \(m.name) both led term \(status.term)"
            if first != m.id && !failures.contains(violation) { failures.append(violation) }
        }
        let now = leading.joined(separator: ", ")
        if options.trace && now != last {
            let logs = members.map { m in
                m.node.map { n in
                    let s = n.status
                    return "\(m.name) log \(s.lastIndex)@\(s.lastTerm) commit \(s.commitIndex)"
                } ?? "\(m.name) down"
            }
            trace("leaders: \(now.isEmpty ? "none" : now) [\(logs.joined(separator: "; "))]")
        }
        guard issued < options.operations || outstanding > 0 else { return }
        scheduler.after(.ms(5)) { [self] in watchLeaders(last: now) }
    }

    // MARK: Members

    func startMember(_ i: Int) {
        var config = NodeConfig()
        config.name = members[i].name
        config.dataDir = members[i].dataDir
        config.initialCluster = members.prefix(options.members).map { ($0.name, [Self.peerURL($0.name)]) }
        if case .added(let join) = members[i].standing {
            // A member added through MemberAdd starts as etcd's does with `--initial-cluster-state existing`: it
            // learned its id and the members from the cluster (`ClusterJoin` in a real server).
            config.initialClusterState = .existing
            config.join = join
        }
        config.advertisePeerURLs = [Self.peerURL(members[i].name)]
        config.advertiseClientURLs = ["http://\(members[i].name):2379"]
        config.fsync = false
        config.backgroundCheckpoints = false
        config.testingRaftMutation = options.mutation
        config.testingNodeMutation = options.nodeMutation
        config.testingWatchMutation = options.watchMutation
        // Small enough that a member down for a few seconds comes back to a leader that compacted past it: it is
        // caught up by a database snapshot (written, sent, installed, on either kind of disk).
        config.snapshotCount = 60
        config.snapshotCatchUpEntries = 20
        config.catchUpRetentionEntries = 20
        if options.simulatedDisks { config.fsync = true }
        // Small log segments: a sweep runs thousands of members, each preallocating its first segment.
        config.walSegmentBytes = 256 << 10
        // The members' own logs are noise in a sweep (a stopped member says so in the trace).
        let logger = Logger(label: "sim.\(members[i].name)", factory: { _ in SwiftLogNoOpLogHandler() })
        let scheduler = self.scheduler
        let name = members[i].name
        let loops = ["raft", "apply", "watch"].map { SimLoop("\(name).\($0)", on: scheduler) }
        let outbox = peers.outbox()
        let diskFaults = options.simulatedDisks && options.diskFaultRate > 0
        let onFatal: @Sendable (String) -> Void = { [weak self] message in
            guard let self else { return }
            guard diskFaults else { return failures.append("\(name) failed: \(message)") }
            // A member that stopped on a disk error is restarted by its supervisor (outside its own loops).
            trace("\(name) stopped: \(message)")
            let incarnation = members[i].node.map(ObjectIdentifier.init)
            scheduler.after(.ms(1)) { [self] in
                guard let node = members[i].node, ObjectIdentifier(node) == incarnation else { return }
                crash(i)
                scheduler.after(.ms(scheduler.random.int(in: 100...1000))) { [self] in restart(i) }
            }
        }
        // A member that applied its own removal tells its owner, who stops it (a real server exits).
        let onRemoved: @Sendable () -> Void = { [weak self] in
            guard let self else { return }
            members[i].noticedRemoval = true
            let incarnation = members[i].node.map(ObjectIdentifier.init)
            // Stopped from outside its loops (this runs on its apply loop).
            scheduler.after(0) { [self] in
                guard let node = members[i].node, ObjectIdentifier(node) == incarnation else { return }
                trace("\(name) noticed its removal")
                membership.free(i)
            }
        }
        let wallClock: @Sendable () -> Date = {
            Date(timeIntervalSince1970: 1_800_000_000 + Double(scheduler.now) / 1e6)
        }
        do {
            let node: MemberNode
            if options.simulatedDisks {
                if members[i].disk == nil {
                    let rate = options.diskFaultRate
                    let disk = SimFileSystem(
                        seed: scheduler.random.next(),
                        faults: SimDiskFaults(
                            writeError: rate, syncError: rate, directorySyncError: rate,
                            slowSync: options.slowSyncRate))
                    disk.onStall = { [weak self] time in
                        self?.scheduler.block(time)
                        self?.trace("\(name): an fsync stalls for \(time / 1000) ms")
                    }
                    try disk.makeDirectory("/tmp")
                    members[i].disk = disk
                    members[i].vfs = DiskVFS(
                        disk: disk, temporaryDirectory: "/tmp", seed: scheduler.random.next(),
                        now: { 1_800_000_000_000 + scheduler.now / 1000 })
                }
                node = try MemberNode.open(
                    config: config, disk: members[i].disk!, vfs: members[i].vfs!, transport: outbox, logger: logger,
                    now: { scheduler.nanoseconds }, onFatal: onFatal, onRemoved: onRemoved, loop: loops[0],
                    applyLoop: loops[1], watchLoop: loops[2], raftSeed: scheduler.random.next(), wallClock: wallClock)
            } else {
                node = try MemberNode.open(
                    config: config, transport: outbox, logger: logger, now: { scheduler.nanoseconds },
                    onFatal: onFatal, onRemoved: onRemoved, loop: loops[0], applyLoop: loops[1], watchLoop: loops[2],
                    raftSeed: scheduler.random.next(), wallClock: wallClock)
            }
            members[i].id = node.memberID
            outbox.from = node.memberID
            members[i].node = node
            members[i].loops = loops
            peers.attach(node, dataDir: config.dataDir, disk: members[i].disk)
            node.begin()
            if options.membershipChanges { membership.publish(i, node) }
            trace(
                "\(name) started (revision \(node.store.revisions.current), applied \(node.applied), log "
                    + "\(node.status.lastIndex)@\(node.status.lastTerm), commit \(node.status.commitIndex))")
        } catch {
            if diskFaults && Self.isDiskError(error) {
                // The disk failed under the restart itself: the supervisor tries again.
                trace("\(name) did not open: \(error)")
                loops.forEach { $0.stop() }
                scheduler.after(.ms(scheduler.random.int(in: 100...1000))) { [self] in restart(i) }
                return
            }
            failures.append("\(name) did not open: \(error)")
        }
    }

    /// Starts a member that is down again, unless it was removed meanwhile.
    func restart(_ i: Int) {
        if members[i].node == nil && members[i].isMember { startMember(i) }
    }

    /// A member's advertised peer URL (what MemberAdd is given, and what names it in the member table).
    static func peerURL(_ name: String) -> String { "http://\(name):2380" }

    /// An error the simulated disk injected (EIO, ENOSPC), as opposed to a member refusing what it found.
    static func isDiskError(_ error: any Error) -> Bool {
        switch error {
        case let e as FileError: return e.errno == EIO || e.errno == ENOSPC
        case is WALFailed: return true
        case let e as BackendFailed: return isDiskError(e.underlying)
        case let e as SQLiteError: return [10, 13].contains(e.code & 0xff)  // SQLITE_IOERR, SQLITE_FULL
        default: return false
        }
    }

    /// Isolates a member for a while, now and then.
    func scheduleFault() {
        scheduler.after(.ms(scheduler.random.int(in: 500...2000))) { [self] in
            guard issued < options.operations else { return }
            // The leader most of the time: the member whose isolation tests the most (stale reads, lost writes).
            let current = members.filter { $0.isMember && $0.id != 0 }
            let leader = current.first { $0.node?.status.isLeader == true }?.id
            let victim = leader.flatMap { scheduler.random.chance(0.7) ? $0 : nil } ?? scheduler.random.pick(current).id
            let others = current.map(\.id).filter { $0 != victim }
            peers.network.partition([[victim], others])
            trace("partition: \(members.first { $0.id == victim }?.name ?? "?") isolated")
            scheduler.after(.ms(scheduler.random.int(in: 1000...4000))) { [self] in
                peers.network.heal()
                trace("partition healed")
                scheduleFault()
            }
        }
    }

    /// After the clients are done: heal, let the members catch up, and compare what they hold.
    func settleAndCompare() {
        peers.network.heal()
        // The faults end with the clients' work: what follows checks that the cluster recovers and agrees (and a
        // member still failing now and then would keep handing leases a fresh TTL through new leaders).
        for m in members { m.disk?.faults = SimDiskFaults() }
        let deadline = scheduler.now + .ms(20_000)
        // A change whose answer was lost is read back as the cluster settles (`SimMembership.reconcile`).
        scheduler.run(until: deadline) { [self] in
            if options.membershipChanges { membership.reconcile() }
            return converged
        }
        guard converged else {
            let applied = members.filter(\.isMember).map { "\($0.name)=\($0.node?.applied ?? 0)" }
                .joined(separator: " ")
            failures.append("members did not converge after healing (applied: \(applied))")
            return
        }
        var hashes: Set<String> = []
        for m in members where m.isMember {
            guard let node = m.node, let h = try? node.store.hashKV(revision: 0) else { continue }
            hashes.insert("\(h.hash)@\(h.revision)")
        }
        if hashes.count > 1 { failures.append("members hold different data: \(hashes.sorted())") }
    }

    /// Lease safety from what the clients saw, then liveness: once every lease has had its time, the keys of those
    /// revoked or left to expire are gone (checked on a member that caught up).
    func checkLeases() {
        guard options.leaseClients > 0 else { return }
        failures += leases.check()
        scheduler.run(until: scheduler.now + .ms(leases.longestTTL * 1000 + 3000))
        scheduler.run(until: scheduler.now + .ms(20_000)) { [self] in converged }
        guard converged, let node = members.compactMap(\.node).first else { return }
        failures += leases.checkLiveness(on: node)
    }

    /// Lets the watchers drain (slow ones are caught up from history), then checks what they received.
    func checkWatchers() {
        guard options.watchers > 0, let last = members.compactMap({ $0.node?.store.revisions.current }).max() else {
            return
        }
        scheduler.run(until: scheduler.now + .ms(20_000)) { [self] in
            watchers.watchers.allSatisfy { $0.next - 1 >= last }
        }
        let compacted = members.compactMap { $0.node?.store.revisions.compacted }.max() ?? 0
        failures += watchers.check(lastRevision: last, compacted: compacted, history: history)
    }

    /// Every current member runs and has applied what was committed, and one of them leads.
    var converged: Bool {
        let current = members.filter(\.isMember)
        let nodes = current.compactMap(\.node)
        guard nodes.count == current.count, let first = nodes.first else { return false }
        let commit = nodes.map(\.status.commitIndex).max() ?? 0
        return nodes.allSatisfy { $0.applied == commit && $0.applied == first.applied }
            && nodes.contains { $0.status.isLeader }
    }

    // MARK: Clients

    /// An operation waiting for its member's answer. Completions find it by token and ignore it once gone: a crash
    /// of its member answers it as `.unknown` (the write may or may not have happened) and its node is dropped.
    struct InFlight {
        var client: Int
        var op: KVOperation
        var call: SimTime
        var member: Int
    }

    func nextOperation(client: Int) {
        guard issued < options.operations else { return }
        let serving = members.indices.filter(servesClients)
        guard !serving.isEmpty else {
            scheduler.after(.ms(50)) { [self] in nextOperation(client: client) }
            return
        }
        issued += 1
        outstanding += 1
        let key = UInt64(scheduler.random.int(0..<Int(options.keys)))
        let m = scheduler.random.pick(serving)
        let node = members[m].node!
        nextToken += 1
        let token = nextToken
        func track(_ op: KVOperation) {
            inFlight[token] = InFlight(client: client, op: op, call: scheduler.now, member: m)
        }
        switch scheduler.random.int(0..<10) {
        case 0..<3:
            nextValue[client] += 1
            let value = nextValue[client]
            var put = Etcdserverpb_PutRequest()
            put.key = Self.key(key)
            put.value = Data(String(value).utf8)
            var request = Quorumpb_RaftRequest()
            request.put = put
            track(.put(key: key, value: value))
            node.propose(request) { [self] result in
                let output: KVOutput = if case .success(.put) = result { .ok } else { .unknown }
                finish(token, output)
            }
        case 3:
            track(.delete(key: key))
            var delete = Etcdserverpb_DeleteRangeRequest()
            delete.key = Self.key(key)
            var request = Quorumpb_RaftRequest()
            request.deleteRange = delete
            node.propose(request) { [self] result in
                let output: KVOutput =
                    if case .success(.deleteRange(let response)) = result { .deleted(response.deleted) } else {
                        .unknown
                    }
                finish(token, output)
            }
        case 4:
            // A serializable read: this member's applied state, however far behind; checked after the run against
            // the revision it names (`checkSerializableReads`), not for linearizability.
            do {
                let (kv, revision) = try Self.readWithRevision(Self.key(key), on: node)
                serializableReads.append(
                    SerializableRead(
                        member: m, key: key, value: kv.flatMap { Int64(String(decoding: $0.value, as: UTF8.self)) },
                        revision: revision))
                trace("client \(client) on \(members[m].name): serializable get(key: \(key)) at \(revision)")
            } catch {
                failures.append("a serializable read failed: \(error)")
            }
            outstanding -= 1
            scheduler.after(.ms(scheduler.random.int(in: 0...options.thinkMilliseconds))) { [self] in
                nextOperation(client: client)
            }
        case 5..<7:
            track(.get(key: key))
            node.readBarrier { [self] error in
                guard let node = members[m].node, inFlight[token] != nil else { return }
                if error != nil {
                    // A read that failed had no effect: it is left out of the history.
                    finish(token, nil)
                    return
                }
                do {
                    let value = try Self.read(Self.key(key), on: node).flatMap {
                        Int64(String(decoding: $0.value, as: UTF8.self))
                    }
                    finish(token, .value(value))
                } catch {
                    failures.append("a read after its barrier failed: \(error)")
                    finish(token, nil)
                }
            }
        default:
            // Compare-and-swap against a value this client may have seen (or a fresh one: fails unless absent).
            let expected = nextValue[client]
            nextValue[client] += 1
            let value = nextValue[client]
            var txn = Etcdserverpb_TxnRequest()
            var compare = Etcdserverpb_Compare()
            compare.key = Self.key(key)
            compare.target = .value
            compare.result = .equal
            compare.value = Data(String(expected).utf8)
            txn.compare = [compare]
            var op = Etcdserverpb_RequestOp()
            var put = Etcdserverpb_PutRequest()
            put.key = Self.key(key)
            put.value = Data(String(value).utf8)
            op.requestPut = put
            txn.success = [op]
            var request = Quorumpb_RaftRequest()
            request.txn = txn
            track(.cas(key: key, expected: expected, new: value))
            node.propose(request) { [self] result in
                let output: KVOutput =
                    if case .success(.txn(let response)) = result { response.succeeded ? .ok : .casFailed } else {
                        .unknown
                    }
                finish(token, output)
            }
        }
    }

    /// Whether clients may send requests to member `i`: it runs, it recovered (a real member answers no request
    /// before) and it is no learner (etcd's learners refuse linearizable reads, writes and watches).
    func servesClients(_ i: Int) -> Bool {
        guard let node = members[i].node else { return false }
        return node.recovered && !node.status.isLearner
    }

    /// Records what the client saw (nil: nothing to record, the operation had no effect) and lets it think a little
    /// before its next operation. An operation already answered (its member crashed) is ignored.
    func finish(_ token: UInt64, _ output: KVOutput?) {
        guard let op = inFlight.removeValue(forKey: token) else { return }
        // After the member told its owner it was removed (entries before its removal are answered with the batch
        // that applies it, a moment before).
        if let output, output != .unknown, members[op.member].noticedRemoval {
            failures.append("\(members[op.member].name) answered \(op.op) -> \(output) after applying its removal")
        }
        trace("client \(op.client) on \(members[op.member].name): \(op.op) -> \(output.map { "\($0)" } ?? "failed")")
        if let output {
            history.append(
                HistoryEntry(
                    client: UInt64(op.client), op: op.op, output: output, call: op.call,
                    ret: output == .unknown ? .max : scheduler.now))
        }
        outstanding -= 1
        scheduler.after(.ms(scheduler.random.int(in: 0...options.thinkMilliseconds))) { [self] in
            nextOperation(client: op.client)
        }
    }

    /// Now and then a client compacts the key space to a revision 10-50 behind the newest, through any member that
    /// serves, as `etcdctl compact` does; a compaction already passed is refused, which is fine.
    func scheduleCompaction() {
        scheduler.after(.ms(scheduler.random.int(in: 2_000...6_000))) { [self] in
            guard issued < options.operations else { return }
            let serving = members.indices.filter { members[$0].node?.recovered == true }
            if let m = serving.isEmpty ? nil : scheduler.random.pick(serving), let node = members[m].node {
                let revisions = node.store.revisions
                let target = revisions.current - Int64(scheduler.random.int(in: 10...50))
                if target > revisions.compacted {
                    var compaction = Etcdserverpb_CompactionRequest()
                    compaction.revision = target
                    var request = Quorumpb_RaftRequest()
                    request.compaction = compaction
                    trace("compaction to revision \(target) through \(members[m].name)")
                    node.propose(request) { [self] result in
                        trace("compaction to revision \(target): \(result)")
                    }
                }
            }
            scheduleCompaction()
        }
    }

    /// Every serializable read saw the key as it was at the revision its answer names: by what the watchers saw
    /// (every revision, checked against each other), or else on a member that caught up, unless a compaction took
    /// that revision.
    func checkSerializableReads() {
        guard let node = members.compactMap(\.node).first else { return }
        var unverifiable = 0
        for read in serializableReads {
            let key = Self.key(read.key)
            let expected: Int64?
            if options.watchers > 0, let seen = watchers.value(of: key, at: read.revision) {
                expected = seen.flatMap { Int64(String(decoding: $0, as: UTF8.self)) }
            } else if read.revision > node.store.revisions.compacted,
                let (kv, _) = try? Self.readWithRevision(key, at: read.revision, on: node)
            {
                expected = kv.flatMap { Int64(String(decoding: $0.value, as: UTF8.self)) }
            } else {
                unverifiable += 1
                continue
            }
            if read.revision > node.store.revisions.current || expected != read.value {
                failures.append(
                    "a serializable read on \(members[read.member].name) of key \(read.key) at revision "
                        + "\(read.revision) saw \(read.value.map(String.init) ?? "nothing"), the cluster's history has "
                        + "\(expected.map(String.init) ?? "nothing")")
                return
            }
        }
        trace("serializable reads: \(serializableReads.count), \(unverifiable) at compacted revisions")
    }

    // MARK: Crashes

    /// Now and then a member crashes (its loops stop where they are, nothing is flushed, its files stay as they
    /// are: a killed process) and restarts from its files a moment later. Its clients' pending operations are
    /// answered as unknown.
    func scheduleCrash() {
        scheduler.after(.ms(scheduler.random.int(in: 2000...6000))) { [self] in
            guard issued < options.operations else { return }
            let current = members.indices.filter { members[$0].isMember }
            let running = current.filter { members[$0].node != nil }
            // One member down at a time; the leader half of the time.
            guard running.count == current.count else { return scheduleCrash() }
            if options.simulatedDisks && scheduler.random.chance(0.25) {
                // The whole cluster loses power at once: only what each member synced survives anywhere.
                trace("power failure of every member")
                for i in running { crash(i) }
                var left = running.count
                for i in running {
                    scheduler.after(.ms(scheduler.random.int(in: 100...2000))) { [self] in
                        restart(i)
                        crashes += 1
                        left -= 1
                        if left == 0 { scheduleCrash() }
                    }
                }
                return
            }
            let leader = running.first { members[$0].node?.status.isLeader == true }
            let victim = leader.flatMap { scheduler.random.chance(0.5) ? $0 : nil } ?? scheduler.random.pick(running)
            crash(victim)
            scheduler.after(.ms(scheduler.random.int(in: 200...3000))) { [self] in
                restart(victim)
                crashes += 1
                scheduleCrash()
            }
        }
    }

    /// Kills member `i` (`losingPower`: with a simulated disk, a power cut too) and answers its clients' pending
    /// operations as unknown.
    func crash(_ i: Int, losingPower: Bool = true) {
        trace("\(members[i].name) crashed (revision \(members[i].node?.store.revisions.current ?? 0))")
        let halted = WeakNode()
        halted.node = members[i].node
        haltedNodes.append(halted)
        members[i].node?.halt()
        if losingPower, let disk = members[i].disk {
            // The power goes out: what was not synced is lost, kept or torn.
            disk.crash(rng: &scheduler.random)
            members[i].vfs?.restart()
        }
        members[i].loops.forEach { $0.stop() }
        members[i].loops = []
        peers.detach(members[i].id)
        watchers.memberCrashed(i)
        members[i].node = nil
        for (token, op) in inFlight.sorted(by: { $0.key < $1.key }) where op.member == i { finish(token, .unknown) }
    }

    /// A key as a member serves a Range of it (after the caller's read barrier, for a linearizable read).
    static func read(_ key: Data, on node: MemberNode) throws -> Mvccpb_KeyValue? {
        try readWithRevision(key, on: node).kv
    }

    /// The key at `revision` (0: the newest), and the revision the answer is of.
    static func readWithRevision(_ key: Data, at revision: Int64 = 0, on node: MemberNode) throws -> (
        kv: Mvccpb_KeyValue?, revision: Int64
    ) {
        var r = Etcdserverpb_RangeRequest()
        r.key = key
        r.revision = revision
        let response = try node.store.read { view in
            try RangeExecution.execute(r) { range, options in try view.range(range, options: options) }
        }
        return (response.kvs.first, response.header.revision)
    }

    static func key(_ k: UInt64) -> Data { Data("k\(k)".utf8) }
}
