import Raft

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Parameters of one simulated run. Everything not given explicitly is derived from `seed`.
public struct SimulationOptions: Sendable {
    public var seed: UInt64
    /// Initial voters (3 or 5).
    public var nodes: Int = 3
    /// Time during which faults are injected; afterwards the network heals and every member restarts.
    public var chaosDuration: SimTime = .ms(3000)
    /// After the chaos phase, a leader must exist and a new write must reach every member within this time.
    public var livenessBound: SimTime = .ms(6000)
    public var clients: Int = 3
    public var keys: Int = 3
    public var networkFaults: Bool = true
    public var crashes: Bool = true
    public var membershipChanges: Bool = true
    public var leaderTransfers: Bool = true
    public var leaseReads: Bool = false
    public var preVote: Bool = true
    public var checkQuorum: Bool = true
    /// Byte budget per append message; 1 forces one entry per message (maximally interleaved replication).
    public var maxSizePerMessage: Int = 2048
    public var maxInflightMessages: Int = 8
    /// TEST-ONLY: disables one Raft safety rule on every member (mutation testing).
    public var mutation: SafetyMutation? = nil
    public var trace: Bool = false
    /// Print trace lines as they happen instead of collecting them (so a trap still leaves the trace).
    public var streamTrace: Bool = false
    public var tickInterval: SimTime = .ms(10)
    public var electionTick: Int = 10
    public var heartbeatTick: Int = 2
    /// Applied entries between local snapshots (log compaction).
    public var snapshotEvery: UInt64 = 30
    public var snapshotCatchUpEntries: UInt64 = 10
    public var clientTimeout: SimTime = .ms(800)

    public init(seed: UInt64) { self.seed = seed }

    /// A mixed-fault configuration chosen by the seed: 3 or 5 members, every fault kind enabled.
    public static func randomized(seed: UInt64) -> SimulationOptions {
        var rng = SimRandom(seed: seed ^ 0xA5A5_5A5A_DEAD_BEEF)
        var o = SimulationOptions(seed: seed)
        o.nodes = rng.chance(0.5) ? 3 : 5
        o.clients = rng.int(2..<5)
        o.keys = rng.int(1..<4)
        o.preVote = rng.chance(0.7)
        // Without pre-vote, a member whose log lags and whose configuration is stale (it misses the latest
        // change, so it never sends its vote requests to the new voter) can keep bumping terms and starve
        // elections for a long time: the phases of the competing election timers perform a random walk
        // (found by seed 9752). Pre-vote is the default and cures it, so membership changes run with it only.
        o.membershipChanges = o.preVote
        o.checkQuorum = rng.chance(0.8)
        o.leaseReads = o.checkQuorum && rng.chance(0.2)
        o.maxSizePerMessage = rng.pick([1, 256, 2048, 1 << 20])
        o.maxInflightMessages = rng.pick([1, 4, 8, 256])
        o.snapshotEvery = UInt64(rng.int(10..<60))
        o.snapshotCatchUpEntries = UInt64(rng.int(0..<20))
        return o
    }
}

public struct SimulationStats: Sendable {
    public var events = 0
    public var messagesSent = 0
    public var messagesDelivered = 0
    public var leadersElected = 0
    public var maxCommit: UInt64 = 0
    public var crashes = 0
    public var restarts = 0
    public var confChangesApplied = 0
    public var transfers = 0
    public var snapshotsInstalled = 0
    public var operationsOK = 0
    public var operationsUnknown = 0
    public var operationsRejected = 0
    public var simulatedTime: SimTime = 0
}

public struct SimulationResult: Sendable {
    public var seed: UInt64
    /// Nil when every checker passed.
    public var failure: String?
    public var stats: SimulationStats
    public var trace: [String]
    public var passed: Bool { failure == nil }
}

/// Runs one seeded simulation: a cluster of `RaftNode`s with a key-value state machine, clients, a faulty
/// network and disks, and every checker. Deterministic: the same options give the same result and trace.
public func runSimulation(_ options: SimulationOptions) -> SimulationResult {
    var sim = Simulation(options: options)
    sim.run()
    return SimulationResult(seed: options.seed, failure: sim.failure, stats: sim.stats, trace: sim.traceLines)
}

/// Trace lines, in a reference so that tracing does not need exclusive access to the whole simulation.
final class TraceBuffer {
    var lines: [String] = []
    var stream = false

    func append(_ line: String) {
        if stream {
            print(line)
            fflush(nil)  // all streams: a trap must not swallow the end of the trace
        } else {
            lines.append(line)
        }
    }
}

struct ClientKey: Hashable {
    var client: UInt64
    var seq: UInt64
}

/// One simulated server: the application loop around a `RaftNode` (persist, send, apply, advance), its disk
/// and its state machine.
struct SimNode {
    let id: NodeID
    var config: RaftConfig
    var raft: RaftNode?
    var disk = SimulatedDisk()
    var kv = KVStore()
    var generation = 0
    var tickInterval: SimTime
    /// Ready handed out, whose persistence is in progress.
    var inflight: Ready?
    var removed = false
    var pendingWrites: [ClientKey: Void] = [:]
    var pendingReads: [[UInt8]: (client: UInt64, seq: UInt64, key: UInt64)] = [:]
    var confirmedReads: [(index: UInt64, context: [UInt8])] = []
    var lastSnapshot: UInt64 = 0
    var isUp: Bool { raft != nil }
}

struct SimClient {
    let id: UInt64
    var seq: UInt64 = 0
    var outstanding: (seq: UInt64, op: KVOperation, call: SimTime)?
}

enum SimEvent {
    case tick(NodeID, generation: Int)
    case deliver(from: NodeID, to: NodeID, bytes: [UInt8])
    case persisted(NodeID, generation: Int)
    case clientNext(UInt64)
    case clientTimeout(UInt64, seq: UInt64)
    case nemesis
    case endChaos
    case livenessProbe
    case restart(NodeID)
    case crashAndRestart(NodeID, generation: Int)
    case snapshotStatus(from: NodeID, to: NodeID, ok: Bool)
}

struct Simulation {
    let options: SimulationOptions
    var rng: SimRandom
    var clock = EventClock()
    var queue = EventQueue<SimEvent>()
    var network = FaultyNetwork()
    var nodes: [NodeID: SimNode] = [:]
    var nodeIDs: [NodeID] = []
    var clients: [SimClient] = []
    var history: [HistoryEntry] = []
    var failure: String?
    var stats = SimulationStats()
    let traceBuffer = TraceBuffer()
    var traceLines: [String] { traceBuffer.lines }
    var nextNodeID: NodeID

    // Checker state.
    var leaders: [UInt64: NodeID] = [:]
    var appliedLog: [UInt64: Entry] = [:]
    var commitTermBound: [UInt64: UInt64] = [:]
    var maxTermSeen: UInt64 = 0
    var maxApplied: UInt64 = 0
    var ackedWrites: [(index: UInt64, data: [UInt8])] = []
    var chaos = true
    var livenessStart: SimTime = 0
    var probeSeq: UInt64 = 0
    var probeIndex: UInt64?
    var done = false
    static let probeClient: UInt64 = 1_000_000

    init(options: SimulationOptions) {
        self.options = options
        rng = SimRandom(seed: options.seed)
        traceBuffer.stream = options.streamTrace
        nextNodeID = NodeID(options.nodes + 1)
    }

    // MARK: - Setup and main loop

    func makeConfig(_ id: NodeID) -> RaftConfig {
        var c = RaftConfig(id: id, randomSeed: options.seed &* 31 &+ id)
        c.electionTick = options.electionTick
        c.heartbeatTick = options.heartbeatTick
        c.maxSizePerMessage = options.maxSizePerMessage
        c.maxInflightMessages = options.maxInflightMessages
        c.preVote = options.preVote
        c.checkQuorum = options.checkQuorum
        c.maxInflightBytes = 1 << 16
        c.snapshotCatchUpEntries = options.snapshotCatchUpEntries
        c.readOnlyOption = options.leaseReads ? .leaseBased : .safe
        c.testingMutation = options.mutation
        return c
    }

    mutating func addNode(_ id: NodeID, bootstrapPeers: [NodeID]?) {
        let config = makeConfig(id)
        // Clock drift: each member's tick period differs slightly from nominal.
        let drift = rng.int(in: -(options.tickInterval / 20)...(options.tickInterval / 20))
        var node = SimNode(id: id, config: config, tickInterval: options.tickInterval + drift)
        if let peers = bootstrapPeers {
            // As a real member does: the log is created with the founding configuration in it, in one synced write
            // (a member that crashes right after creation restarts with it).
            let founding = RaftNode.bootstrapState(peers: peers)
            node.disk.write(.entries(founding.entries))
            node.disk.write(.hardState(founding.hardState))
            node.disk.sync()
            node.raft = RaftNode(config: config, state: founding)
        } else {
            node.raft = RaftNode(config: config, state: PersistentState())
        }
        nodes[id] = node
        nodeIDs.append(id)
        nodeIDs.sort()
        queue.schedule(.tick(id, generation: 0), at: clock.now + rng.int(in: 0...options.tickInterval))
    }

    mutating func run() {
        let peers = (1...options.nodes).map { NodeID($0) }
        for p in peers { addNode(p, bootstrapPeers: peers) }
        for c in 0..<options.clients {
            clients.append(SimClient(id: UInt64(c + 1)))
            queue.schedule(.clientNext(UInt64(c + 1)), at: rng.int(in: .ms(50)...(.ms(300))))
        }
        if options.networkFaults || options.crashes || options.membershipChanges || options.leaderTransfers {
            queue.schedule(.nemesis, at: rng.int(in: .ms(200)...(.ms(600))))
        }
        queue.schedule(.endChaos, at: options.chaosDuration)
        let deadline = options.chaosDuration + options.livenessBound
        while failure == nil && !done, let (time, event) = queue.pop() {
            if time > deadline {
                fail(
                    "liveness: no leader committed and spread a write within \(options.livenessBound / 1000)ms "
                        + "after the network healed (\(livenessSummary()))")
                break
            }
            clock.now = time
            stats.events += 1
            handle(event)
        }
        stats.simulatedTime = clock.now
        if failure == nil { finalChecks() }
    }

    mutating func handle(_ event: SimEvent) {
        switch event {
        case .tick(let id, let generation):
            guard var node = nodes[id], node.generation == generation, node.raft != nil else { return }
            node.raft!.tick()
            nodes[id] = node
            queue.schedule(.tick(id, generation: generation), at: clock.now + node.tickInterval)
            afterInput(id)
        case .deliver(let from, let to, let bytes):
            guard network.isConnected(from: from, to: to), var node = nodes[to], node.raft != nil else {
                // The transport of the sender notices that a snapshot did not get through.
                if bytes.count > 1 && bytes[1] == MessageKind.snapshot.rawValue {
                    queue.schedule(.snapshotStatus(from: from, to: to, ok: false), at: clock.now)
                }
                return
            }
            let message: Message
            do {
                message = try Message(serialized: bytes)
            } catch {
                fail("codec: a message failed to decode: \(error)")
                return
            }
            stats.messagesDelivered += 1
            trace("n\(to) <- \(message)")
            try? node.raft!.step(message)
            nodes[to] = node
            if message.kind == .snapshot {
                queue.schedule(.snapshotStatus(from: from, to: to, ok: true), at: clock.now)
            }
            afterInput(to)
        case .persisted(let id, let generation):
            guard let node = nodes[id], node.generation == generation, node.inflight != nil else { return }
            completeReady(id)
        case .clientNext(let c):
            clientNext(Int(c - 1))
        case .clientTimeout(let c, let seq):
            clientTimeout(Int(c - 1), seq: seq)
        case .nemesis:
            guard chaos else { return }
            nemesis()
            queue.schedule(.nemesis, at: clock.now + rng.int(in: .ms(20)...(.ms(300))))
        case .endChaos:
            endChaos()
        case .livenessProbe:
            livenessProbe()
        case .restart(let id):
            restart(id)
        case .snapshotStatus(let from, let to, let ok):
            reportSnapshot(from: from, to: to, ok: ok)
        case .crashAndRestart(let id, let generation):
            guard nodes[id]?.generation == generation, chaos else { return }
            crash(id)
            queue.schedule(.restart(id), at: clock.now + rng.int(in: .ms(1)...(.ms(50))))
        }
    }

    /// Fault injection at interesting points (FoundationDB's "buggify"): only during the chaos phase and
    /// only when crashes are enabled.
    mutating func buggify(_ probability: Double) -> Bool {
        chaos && options.crashes && rng.chance(probability)
    }

    mutating func fail(_ message: String) {
        if failure == nil {
            failure = message
            trace("FAILURE: \(message)")
        }
    }

    func trace(_ line: @autoclosure () -> String) {
        guard options.trace else { return }
        let ms = clock.now / 1000
        let us = clock.now % 1000
        let pad = String(repeating: " ", count: max(0, 6 - String(ms).count))
        let frac = String(us).count < 3 ? String(repeating: "0", count: 3 - String(us).count) + String(us) : String(us)
        traceBuffer.append("[\(pad)\(ms).\(frac)ms] \(line())")
    }

    // MARK: - The application loop of one member

    /// Called after every input to a member: records leadership for the checkers and hands out a Ready if
    /// the previous one is done.
    mutating func afterInput(_ id: NodeID) {
        guard let raft = nodes[id]?.raft else { return }
        if raft.currentTerm > maxTermSeen { maxTermSeen = raft.currentTerm }
        if raft.role == .leader { observeLeader(id, raft) }
        pump(id)
    }

    mutating func pump(_ id: NodeID) {
        guard var node = nodes[id], node.inflight == nil, node.raft?.hasReady() == true else { return }
        let rd = node.raft!.ready()
        if let soft = rd.softState {
            trace("n\(id) becomes \(soft.role) (term \(node.raft!.currentTerm), leader \(soft.leader))")
        }
        // 2. Start the write.
        if let snap = rd.snapshot {
            node.disk.write(.installSnapshot(snap))
            stats.snapshotsInstalled += 1
            trace("n\(id) installs snapshot at \(snap.metadata.index)")
        }
        if !rd.entries.isEmpty { node.disk.write(.entries(rd.entries)) }
        if let hs = rd.hardState { node.disk.write(.hardState(hs)) }
        node.inflight = rd
        nodes[id] = node
        // 1. Messages that may leave before persistence (the leader's appends travel during its fsync).
        for m in rd.messages { send(m) }
        // The write takes a little time, during which the member keeps receiving messages and ticks.
        var latency: SimTime
        switch rng.int(0..<10) {
        case 0..<3: latency = 0
        case 3..<9: latency = rng.int(in: 100...2000)
        default: latency = rng.int(in: 2000...20_000)  // a slow fsync
        }
        // Crash point: die while the write is in flight (messages already left, nothing synced yet).
        if buggify(0.003) {
            latency = max(latency, 2)
            queue.schedule(.crashAndRestart(id, generation: node.generation), at: clock.now + latency / 2)
        }
        queue.schedule(.persisted(id, generation: node.generation), at: clock.now + latency)
    }

    mutating func send(_ m: Message) {
        stats.messagesSent += 1
        let bytes = m.serialized()
        var times = network.route(from: m.from, to: m.to, now: clock.now, rng: &rng)
        if m.kind == .snapshot {
            // A snapshot travels as one stream: it arrives once, or its sender learns that it failed.
            times = Array(times.prefix(1))
            if times.isEmpty {
                queue.schedule(.snapshotStatus(from: m.from, to: m.to, ok: false), at: clock.now + .ms(5))
            }
        }
        for t in times {
            queue.schedule(.deliver(from: m.from, to: m.to, bytes: bytes), at: t)
        }
    }

    /// What a real transport does when a snapshot stream ends: tell the sender's Raft how it went.
    mutating func reportSnapshot(from: NodeID, to: NodeID, ok: Bool) {
        guard nodes[from]?.raft != nil else { return }
        nodes[from]!.raft!.reportSnapshot(to, succeeded: ok)
        trace("n\(from) snapshot to n\(to) \(ok ? "delivered" : "FAILED")")
        afterInput(from)
    }

    mutating func completeReady(_ id: NodeID) {
        guard var node = nodes[id], var raft = node.raft, let rd = node.inflight else { return }
        // 2'. The write completes; an fsync only when Raft asks for one.
        if rd.mustSync { node.disk.sync() }
        // 3. Messages that vouch for what was just made durable.
        for m in rd.messagesAfterPersist { send(m) }
        // Crash point: die right after casting a vote (the answer is out, the rest of the Ready is not done).
        if let hs = rd.hardState, hs.vote != 0, rd.mustSync, buggify(0.05) {
            nodes[id] = node
            crash(id)
            queue.schedule(.restart(id), at: clock.now + rng.int(in: .ms(1)...(.ms(30))))
            return
        }
        // 4. Apply.
        if let snap = rd.snapshot {
            guard let restored = KVStore(decoding: snap.data) else {
                fail("n\(id): undecodable snapshot data")
                return
            }
            node.kv = restored
            node.kv.applied = snap.metadata.index
            node.lastSnapshot = snap.metadata.index
        }
        var removedNodes: [NodeID] = []
        for e in rd.committedEntries {
            guard checkApplied(id, e) else { return }
            if e.kind == .confChange {
                if let cc = try? ConfChange(serialized: e.data) {
                    let conf = raft.applyConfChange(cc)
                    trace(
                        "n\(id) applies conf change \(cc.kind) \(cc.node) at \(e.index): "
                            + "voters \(conf.voters) learners \(conf.learners)"
                    )
                    if cc.kind == .removeNode { removedNodes.append(cc.node) }
                }
            } else if !e.data.isEmpty, let cmd = KVCommand(decoding: e.data) {
                let output = node.kv.apply(cmd)
                let key = ClientKey(client: cmd.client, seq: cmd.seq)
                if cmd.client == Self.probeClient && probeIndex == nil && cmd.seq == probeSeq {
                    probeIndex = e.index
                    trace("liveness probe committed at \(e.index)")
                }
                if let output, node.pendingWrites.removeValue(forKey: key) != nil {
                    nodes[id] = node
                    completeClient(cmd.client, seq: cmd.seq, output: output, index: e.index, data: e.data)
                    node = nodes[id]!
                }
            }
            node.kv.applied = e.index
        }
        // 5. Reads.
        for rs in rd.readStates { node.confirmedReads.append((rs.index, rs.context)) }
        var rejected: [(UInt64, UInt64)] = []
        for ctx in rd.droppedReadIndexes {
            if let r = node.pendingReads.removeValue(forKey: ctx) { rejected.append((r.client, r.seq)) }
        }
        raft.advance(rd)
        node.inflight = nil
        // Compaction: snapshot the state machine now and then, as a server would.
        if node.kv.applied >= node.lastSnapshot + options.snapshotEvery && node.kv.applied <= raft.appliedIndex {
            trace("n\(id) compacts through \(node.kv.applied) (log starts at \(raft.firstIndex))")
            raft.compact(through: node.kv.applied, snapshotData: node.kv.encoded())
            if let snap = raft.latestSnapshot {
                node.disk.write(.localSnapshot(snap))
                node.disk.sync()
                node.lastSnapshot = snap.metadata.index
            }
        }
        node.raft = raft
        nodes[id] = node
        serveReads(id)
        for (c, s) in rejected { rejectClient(c, seq: s) }
        for r in removedNodes { retire(r) }
        afterInput(id)
    }

    mutating func serveReads(_ id: NodeID) {
        guard var node = nodes[id] else { return }
        var remaining: [(index: UInt64, context: [UInt8])] = []
        var served: [(UInt64, UInt64, Int64?)] = []
        for r in node.confirmedReads {
            if r.index <= node.kv.applied {
                if let p = node.pendingReads.removeValue(forKey: r.context) {
                    served.append((p.client, p.seq, node.kv.values[p.key]))
                }
            } else {
                remaining.append(r)
            }
        }
        node.confirmedReads = remaining
        nodes[id] = node
        for (c, s, v) in served { completeClient(c, seq: s, output: .value(v), index: nil, data: nil) }
    }

    /// A committed removal takes the member out of the cluster: the operator stops it.
    mutating func retire(_ id: NodeID) {
        guard var node = nodes[id], !node.removed else { return }
        node.removed = true
        node.raft = nil
        node.generation += 1
        node.inflight = nil
        nodes[id] = node
        stats.confChangesApplied += 1
        trace("n\(id) retired (removal committed)")
    }

    // MARK: - Crash and restart

    mutating func crash(_ id: NodeID) {
        guard var node = nodes[id], node.isUp else { return }
        node.raft = nil
        node.inflight = nil
        node.generation += 1
        node.disk.crash(rng: &rng)
        node.pendingWrites.removeAll()
        node.pendingReads.removeAll()
        node.confirmedReads.removeAll()
        nodes[id] = node
        stats.crashes += 1
        trace("n\(id) CRASHES")
    }

    mutating func restart(_ id: NodeID) {
        guard var node = nodes[id], !node.isUp, !node.removed else { return }
        let state = node.disk.load()
        if let snap = state.snapshot, let kv = KVStore(decoding: snap.data) {
            node.kv = kv
            node.kv.applied = snap.metadata.index
            node.lastSnapshot = snap.metadata.index
        } else {
            node.kv = KVStore()
            node.lastSnapshot = 0
        }
        node.raft = RaftNode(config: node.config, state: state)
        nodes[id] = node
        stats.restarts += 1
        trace(
            "n\(id) restarts: term \(state.hardState.term) vote \(state.hardState.vote) "
                + "commit \(state.hardState.commit) "
                + "entries \(state.entries.count) snapshot \(state.snapshot?.metadata.index ?? 0)")
        queue.schedule(.tick(id, generation: node.generation), at: clock.now + rng.int(in: 0...options.tickInterval))
        afterInput(id)
    }

    // MARK: - Clients

    var liveMembers: [NodeID] { nodeIDs.filter { nodes[$0]!.isUp && !nodes[$0]!.removed } }

    mutating func clientNext(_ c: Int) {
        guard clients[c].outstanding == nil else { return }
        let targets = liveMembers
        guard !targets.isEmpty else {
            queue.schedule(.clientNext(clients[c].id), at: clock.now + .ms(50))
            return
        }
        let target = rng.pick(targets)
        clients[c].seq += 1
        let seq = clients[c].seq
        let clientID = clients[c].id
        let key = UInt64(rng.int(0..<options.keys))
        let value = Int64(clientID * 100_000 + seq)
        let op: KVOperation
        switch rng.int(0..<10) {
        case 0..<4: op = .get(key: key)
        case 4..<8: op = .put(key: key, value: value)
        default:
            // Compare against a value that was likely written, so some swaps succeed.
            let recent = history.last(where: { $0.op.key == key })
            var expected: Int64 = 0
            if case .put(_, let v)? = recent?.op { expected = v }
            if case .value(let v?)? = recent?.output { expected = v }
            op = .cas(key: key, expected: expected, new: value)
        }
        var node = nodes[target]!
        let call = clock.now
        if case .get = op {
            let ctx = Self.readContext(client: clientID, seq: seq)
            node.pendingReads[ctx] = (clientID, seq, key)
            node.raft!.readIndex(context: ctx)
            nodes[target] = node
        } else {
            let cmd = KVCommand(client: clientID, seq: seq, op: op)
            do {
                try node.raft!.propose(cmd.encoded())
            } catch {
                // Refused synchronously: it never entered any log, so it did not happen.
                stats.operationsRejected += 1
                queue.schedule(.clientNext(clientID), at: clock.now + rng.int(in: .ms(5)...(.ms(40))))
                return
            }
            node.pendingWrites[ClientKey(client: clientID, seq: seq)] = ()
            nodes[target] = node
        }
        clients[c].outstanding = (seq, op, call)
        trace("client \(clientID) #\(seq) \(op) -> n\(target)")
        queue.schedule(.clientTimeout(clientID, seq: seq), at: clock.now + options.clientTimeout)
        afterInput(target)
    }

    static func readContext(client: UInt64, seq: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        for v in [client, seq] {
            for s in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
        }
        return out
    }

    mutating func completeClient(_ clientID: UInt64, seq: UInt64, output: KVOutput, index: UInt64?, data: [UInt8]?) {
        guard clientID != Self.probeClient else { return }
        let c = Int(clientID - 1)
        guard c < clients.count, let out = clients[c].outstanding, out.seq == seq else { return }
        history.append(HistoryEntry(client: clientID, op: out.op, output: output, call: out.call, ret: clock.now))
        if let index, let data { ackedWrites.append((index, data)) }
        stats.operationsOK += 1
        trace("client \(clientID) #\(seq) -> \(output)")
        clients[c].outstanding = nil
        queue.schedule(.clientNext(clientID), at: clock.now + rng.int(in: 0...(.ms(20))))
    }

    mutating func rejectClient(_ clientID: UInt64, seq: UInt64) {
        let c = Int(clientID - 1)
        guard c < clients.count, let out = clients[c].outstanding, out.seq == seq else { return }
        // A dropped read had no effect: forget it.
        stats.operationsRejected += 1
        clients[c].outstanding = nil
        queue.schedule(.clientNext(clientID), at: clock.now + rng.int(in: .ms(5)...(.ms(40))))
    }

    mutating func clientTimeout(_ c: Int, seq: UInt64) {
        guard let out = clients[c].outstanding, out.seq == seq else { return }
        if case .get = out.op {
            // A read that never answered had no effect.
        } else {
            history.append(
                HistoryEntry(client: clients[c].id, op: out.op, output: .unknown, call: out.call, ret: .max))
            stats.operationsUnknown += 1
        }
        trace("client \(clients[c].id) #\(seq) times out")
        clients[c].outstanding = nil
        queue.schedule(.clientNext(clients[c].id), at: clock.now + rng.int(in: 0...(.ms(20))))
    }

    // MARK: - Faults

    mutating func nemesis() {
        let up = liveMembers
        let down = nodeIDs.filter { !nodes[$0]!.isUp && !nodes[$0]!.removed }
        let members = nodeIDs.filter { !nodes[$0]!.removed }
        switch rng.int(0..<100) {
        case 0..<12 where options.networkFaults:
            var shuffled = members
            rng.shuffle(&shuffled)
            let cutAt = rng.int(1..<max(2, shuffled.count))
            let groups = [Array(shuffled[..<cutAt]), Array(shuffled[cutAt...])]
            network.partition(groups)
            trace("NEMESIS partition \(groups)")
        case 12..<20 where options.networkFaults:
            let victim = rng.pick(members)
            network.partition([[victim], members.filter { $0 != victim }])
            trace("NEMESIS isolate n\(victim)")
        case 20..<28 where options.networkFaults && members.count > 1:
            let a = rng.pick(members)
            let b = rng.pick(members.filter { $0 != a })
            network.cut(Link(from: a, to: b))
            trace("NEMESIS cut n\(a) -> n\(b)")
        case 28..<45:
            network.heal()
            trace("NEMESIS heal")
        case 45..<50 where options.crashes && !up.isEmpty:
            crash(rng.pick(up))
        case 50..<55 where options.crashes && !up.isEmpty:
            // Bounce the leader (or anyone): crash, then restart a moment later, possibly mid-election.
            let victim = up.first(where: { nodes[$0]!.raft!.role == .leader && rng.chance(0.7) }) ?? rng.pick(up)
            crash(victim)
            queue.schedule(.restart(victim), at: clock.now + rng.int(in: .ms(1)...(.ms(60))))
        case 55..<70 where !down.isEmpty:
            restart(rng.pick(down))
        case 70..<76 where options.networkFaults:
            network.faults.dropRate = rng.pick([0, 0, 0.01, 0.05, 0.2])
            network.faults.duplicateRate = rng.pick([0, 0.01, 0.05])
            trace("NEMESIS drop \(network.faults.dropRate) dup \(network.faults.duplicateRate)")
        case 76..<84 where options.leaderTransfers:
            if let leader = up.first(where: { nodes[$0]!.raft!.role == .leader }) {
                let voters = nodes[leader]!.raft!.configuration.voters.filter { $0 != leader }
                if !voters.isEmpty {
                    let target = rng.pick(voters)
                    nodes[leader]!.raft!.transferLeadership(to: target)
                    stats.transfers += 1
                    trace("NEMESIS transfer leadership n\(leader) -> n\(target)")
                    afterInput(leader)
                }
            }
        case 84..<100 where options.membershipChanges:
            changeMembership(up)
        default:
            break
        }
    }

    mutating func changeMembership(_ up: [NodeID]) {
        guard let leader = up.first(where: { nodes[$0]!.raft!.role == .leader }) else { return }
        let conf = nodes[leader]!.raft!.configuration
        let change: ConfChange
        if let learner = conf.learners.first {
            change = ConfChange(kind: .promoteLearner, node: learner)
        } else if conf.voters.count > options.nodes || (conf.voters.count == options.nodes && rng.chance(0.3)) {
            change = ConfChange(kind: .removeNode, node: rng.pick(conf.voters))
        } else {
            let id = nextNodeID
            nextNodeID += 1
            addNode(id, bootstrapPeers: nil)
            change = ConfChange(kind: .addLearner, node: id)
        }
        do {
            try nodes[leader]!.raft!.proposeConfChange(change)
            trace("NEMESIS propose \(change.kind) n\(change.node) via n\(leader)")
        } catch {
            trace("NEMESIS \(change.kind) n\(change.node) refused: \(error)")
        }
        afterInput(leader)
    }

    mutating func endChaos() {
        chaos = false
        network.heal()
        network.faults.dropRate = 0
        network.faults.duplicateRate = 0
        trace("CHAOS ENDS: network healed, every member restarts")
        for id in nodeIDs where !nodes[id]!.isUp && !nodes[id]!.removed { restart(id) }
        livenessStart = clock.now
        queue.schedule(.livenessProbe, at: clock.now + .ms(100))
    }

    /// Liveness: once the network is healed and every member is up, a leader must commit a fresh write and
    /// every member of its configuration must apply it, within `livenessBound`.
    mutating func livenessProbe() {
        if let index = probeIndex {
            let members = livenessMembers()
            if !members.isEmpty && members.allSatisfy({ nodes[$0]!.kv.applied >= index }) {
                trace("LIVENESS OK: write \(index) on \(members) after \((clock.now - livenessStart) / 1000)ms")
                done = true
                return
            }
        } else if let leader = liveMembers.first(where: { nodes[$0]!.raft!.role == .leader }) {
            probeSeq += 1
            let cmd = KVCommand(client: Self.probeClient, seq: probeSeq, op: .put(key: 1_000, value: Int64(probeSeq)))
            try? nodes[leader]!.raft!.propose(cmd.encoded())
            afterInput(leader)
        }
        queue.schedule(.livenessProbe, at: clock.now + .ms(100))
    }

    func livenessMembers() -> [NodeID] {
        guard let leader = liveMembers.first(where: { nodes[$0]!.raft!.role == .leader }) else { return [] }
        let conf = nodes[leader]!.raft!.configuration
        return (conf.voters + conf.learners).filter { nodes[$0] != nil && !nodes[$0]!.removed }
    }

    func livenessSummary() -> String {
        liveMembers.map { id in
            let r = nodes[id]!.raft!
            return
                "n\(id): \(r.role) t\(r.currentTerm) lead \(r.leaderID) commit \(r.commitIndex) "
                + "applied \(nodes[id]!.kv.applied) "
                + "voters \(r.configuration.voters)"
        }.joined(separator: "; ")
    }
}
