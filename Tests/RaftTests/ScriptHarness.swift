import Raft
import Testing

/// A tiny interpreter for scripted interaction tests, in the spirit of etcd-raft's interaction tests.
///
/// One command per line; `#` starts a comment. Commands:
///
///     bootstrap 1 2 3 [prevote=false] [checkquorum=false] [lease] [maxsize=N] [inflight=N]
///     add-blank 4                  # a new member that will join (empty state)
///     campaign 1 | tick 1 [xN] | tick-all [xN]
///     propose 1 data | propose-conf 1 add-voter|add-learner|remove|promote 4
///     transfer 1 2 | read 1 ctx | compact 1 INDEX
///     process 1                    # hand out node 1's Ready: persist, queue messages, apply, advance
///     deliver 1->2 [N]             # deliver the first N (default all) queued messages from 1 to 2
///     inject 2->1 KIND [term=T] [logterm=T] [index=I] [commit=C] [hint=H] [reject] [entries=I@T,...]
///            [snapshot=I@T] [voters=1,2,3] [learners=4] [context=text]
///                                  # step a message as a buggy, stale or hostile peer could send it
///     drop 1->2 | drop-all        # discard queued messages
///     stabilize                    # process and deliver until nothing moves (honours partitions)
///     partition 1 | 2 3            # cut every link between the groups; `heal` restores them
///     crash 2 | restart 2          # crash loses nothing durable (persist is synchronous here)
///     expect 1 role=leader term=2 lead=1 commit=4 applied=4 last=4 vote=1 voters=1,2,3 learners=4
///            logterms=1,1,2 reads=ctx@4 dropped=ctx queued=3 progress-3=replicate
///     expect-error <command>       # the command must throw (e.g. a dropped proposal)
struct ScriptHarness {
    struct Member {
        var node: RaftNode?
        var config: RaftConfig
        var durable = PersistentState()
        var applied: [Entry] = []
        var readStates: [ReadState] = []
        var dropped: [[UInt8]] = []
    }

    var members: [NodeID: Member] = [:]
    var queues: [Link: [Message]] = [:]
    var cut: Set<Link> = []
    var options: [String: String] = [:]
    var lineNumber = 0

    struct Link: Hashable, Comparable {
        var from: NodeID
        var to: NodeID
        static func < (a: Link, b: Link) -> Bool { (a.from, a.to) < (b.from, b.to) }

        init(from: NodeID, to: NodeID) {
            self.from = from
            self.to = to
        }

        /// `1->2`.
        init(_ word: String) {
            let parts = word.split(separator: "-").map { $0.trimmingCharacters(">") }
            self.init(from: NodeID(parts[0])!, to: NodeID(parts[1])!)
        }
    }

    /// The message of `inject 2->1 KIND key=value...`: every field a peer controls, zero unless given.
    static func message(_ words: [String]) throws -> Message {
        guard words.count > 1, let kind = MessageKind.allCases.first(where: { "\($0)" == words[1] }) else {
            throw Failure(description: "inject needs a link and a message kind")
        }
        let link = Link(words[0])
        var m = Message(kind: kind, from: link.from, to: link.to)
        var voters: [NodeID] = []
        var learners: [NodeID] = []
        func ids(_ list: String) -> [NodeID] { list.split(separator: ",").compactMap { NodeID($0) } }
        /// `INDEX@TERM`.
        func position(_ text: String) throws -> (index: UInt64, term: UInt64) {
            let parts = text.split(separator: "@")
            guard parts.count == 2, let index = UInt64(parts[0]), let term = UInt64(parts[1]) else {
                throw Failure(description: "bad position \(text) (INDEX@TERM)")
            }
            return (index, term)
        }
        for word in words.dropFirst(2) {
            let kv = word.split(separator: "=", maxSplits: 1).map(String.init)
            let value = kv.count > 1 ? kv[1] : ""
            switch kv[0] {
            case "term": m.term = UInt64(value)!
            case "logterm": m.logTerm = UInt64(value)!
            case "index": m.index = UInt64(value)!
            case "commit": m.commit = UInt64(value)!
            case "hint": m.rejectHint = UInt64(value)!
            case "reject": m.reject = true
            case "context": m.context = Array(value.utf8)
            case "entries":
                m.entries = try value.split(separator: ",").map {
                    let (index, term) = try position(String($0))
                    return Entry(term: term, index: index, data: Array("e\(index)".utf8))
                }
            case "snapshot":
                let (index, term) = try position(value)
                m.snapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: term))
            case "voters": voters = ids(value)
            case "learners": learners = ids(value)
            default: throw Failure(description: "unknown message field \(kv[0])")
            }
        }
        m.snapshot?.metadata.confState = ConfState(voters: voters, learners: learners)
        return m
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func run(_ script: String, sourceLocation: SourceLocation = #_sourceLocation) {
        var h = ScriptHarness()
        for raw in script.split(separator: "\n", omittingEmptySubsequences: false) {
            h.lineNumber += 1
            let line =
                raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first
                .map(String.init)?.trimmingSpaces ?? ""
            if line.isEmpty { continue }
            do {
                try h.execute(line)
            } catch {
                Issue.record("line \(h.lineNumber): `\(line)`: \(error)", sourceLocation: sourceLocation)
                return
            }
        }
    }

    func config(_ id: NodeID) -> RaftConfig {
        var c = RaftConfig(id: id, randomSeed: 42)
        c.electionTick = 10
        c.heartbeatTick = 1
        if options["prevote"] == "false" { c.preVote = false }
        if options["checkquorum"] == "false" { c.checkQuorum = false }
        if options["lease"] != nil { c.readOnlyOption = .leaseBased }
        if let s = options["maxsize"], let v = Int(s) { c.maxSizePerMessage = v }
        if let s = options["inflight"], let v = Int(s) { c.maxInflightMessages = v }
        if let s = options["catchup"], let v = UInt64(s) { c.snapshotCatchUpEntries = v }
        if let s = options["retention"], let v = UInt64(s) { c.catchUpRetention = v }
        if let s = options["learners"], let v = Int(s) { c.maxLearners = v }
        if let s = options["mutation"] { c.testingMutation = SafetyMutation(rawValue: s) }
        return c
    }

    mutating func execute(_ line: String) throws {
        var words = line.split(separator: " ").map(String.init)
        let command = words.removeFirst()
        func id(_ i: Int) throws -> NodeID {
            guard i < words.count, let v = NodeID(words[i]) else { throw Failure(description: "missing node id") }
            return v
        }
        func times() -> Int {
            if let x = words.first(where: { $0.hasPrefix("x") }), let n = Int(x.dropFirst()) { return n }
            return 1
        }
        switch command {
        case "bootstrap":
            let ids = words.compactMap { NodeID($0) }
            for w in words where w.contains("=") || w == "lease" {
                let kv = w.split(separator: "=", maxSplits: 1).map(String.init)
                options[kv[0]] = kv.count > 1 ? kv[1] : ""
            }
            for i in ids {
                let founding = RaftNode.bootstrapState(peers: ids)
                members[i] = Member(
                    node: RaftNode(config: config(i), state: founding), config: config(i), durable: founding)
            }
            stabilizeAll()
        case "add-blank":
            let i = try id(0)
            members[i] = Member(node: RaftNode(config: config(i), state: PersistentState()), config: config(i))
        case "campaign":
            try withNode(try id(0)) { try $0.campaign() }
        case "tick":
            let i = try id(0)
            for _ in 0..<times() { try withNode(i) { $0.tick() } }
        case "tick-all":
            for _ in 0..<times() {
                for i in members.keys.sorted() where members[i]!.node != nil { try withNode(i) { $0.tick() } }
            }
        case "propose":
            let data = Array(words.dropFirst().joined(separator: " ").utf8)
            try withNode(try id(0)) { try $0.propose(data) }
        case "propose-conf":
            let kinds: [String: ConfChangeKind] = [
                "add-voter": .addVoter, "add-learner": .addLearner, "remove": .removeNode,
                "promote": .promoteLearner,
            ]
            guard words.count == 3, let kind = kinds[words[1]] else { throw Failure(description: "bad conf change") }
            let target = try id(2)
            try withNode(try id(0)) { try $0.proposeConfChange(ConfChange(kind: kind, node: target)) }
        case "transfer":
            let target = try id(1)
            try withNode(try id(0)) { $0.transferLeadership(to: target) }
        case "read":
            let ctx = Array(words[1].utf8)
            try withNode(try id(0)) { $0.readIndex(context: ctx) }
        case "compact":
            guard let index = UInt64(words[1]) else { throw Failure(description: "bad index") }
            try withNode(try id(0)) { $0.compact(through: index, snapshotData: Array("snap@\(index)".utf8)) }
        case "process":
            try process(try id(0))
        case "deliver", "drop":
            let link = Link(words[0])
            let n = words.count > 1 ? Int(words[1])! : Int.max
            var q = queues[link] ?? []
            let batch = Array(q.prefix(n))
            q.removeFirst(batch.count)
            queues[link] = q
            if command == "deliver" {
                for m in batch { try deliver(m) }
            }
        case "drop-all":
            queues.removeAll()
        case "stabilize":
            try stabilize()
        case "partition":
            let groups = words.split(separator: "|").map { $0.compactMap { NodeID($0) } }
            for g in groups {
                for a in g {
                    for b in members.keys where !g.contains(b) {
                        cut.insert(Link(from: a, to: b))
                        cut.insert(Link(from: b, to: a))
                    }
                }
            }
        case "isolate":
            let a = try id(0)
            for b in members.keys where b != a {
                cut.insert(Link(from: a, to: b))
                cut.insert(Link(from: b, to: a))
            }
        case "cut":
            cut.insert(Link(words[0]))
        case "inject":
            try deliver(try Self.message(words))
        case "heal":
            cut.removeAll()
        case "crash":
            let i = try id(0)
            members[i]!.node = nil
            for link in queues.keys where link.to == i || link.from == i { queues[link] = [] }
        case "restart":
            let i = try id(0)
            var m = members[i]!
            var state = m.durable
            state.applied = m.applied.last?.index ?? state.snapshot?.metadata.index ?? 0
            m.node = RaftNode(config: m.config, state: state)
            members[i] = m
        case "expect":
            try expect(words)
        case "expect-error":
            do {
                try execute(words.joined(separator: " "))
            } catch is RaftError {
                return
            }
            throw Failure(description: "expected an error")
        default:
            throw Failure(description: "unknown command \(command)")
        }
    }

    mutating func withNode(_ i: NodeID, _ body: (inout RaftNode) throws -> Void) throws {
        guard var node = members[i]?.node else { throw Failure(description: "node \(i) is down") }
        try body(&node)
        members[i]!.node = node
    }

    mutating func stabilizeAll() {
        for i in members.keys.sorted() { try? process(i) }
    }

    mutating func process(_ i: NodeID) throws {
        guard var node = members[i]?.node, node.hasReady() else { return }
        var m = members[i]!
        let rd = node.ready()
        if let snap = rd.snapshot {
            m.durable.snapshot = snap
            m.durable.entries = []
            m.applied = []
        }
        if let first = rd.entries.first {
            m.durable.entries.removeAll { $0.index >= first.index }
            m.durable.entries.append(contentsOf: rd.entries)
        }
        if let hs = rd.hardState { m.durable.hardState = hs }
        for msg in rd.messages + rd.messagesAfterPersist {
            queues[Link(from: i, to: msg.to), default: []].append(msg)
        }
        for e in rd.committedEntries {
            if e.kind == .confChange, let cc = try? ConfChange(serialized: e.data) { node.applyConfChange(cc) }
            m.applied.append(e)
        }
        m.readStates += rd.readStates
        m.dropped += rd.droppedReadIndexes
        node.advance(rd)
        m.node = node
        members[i] = m
    }

    mutating func deliver(_ msg: Message) throws {
        // Round-trip through the codec so every scripted test also exercises it.
        let decoded = try Message(serialized: msg.serialized())
        guard decoded == msg else { throw Failure(description: "codec round trip changed \(msg)") }
        guard members[msg.to]?.node != nil else { return }
        try withNode(msg.to) { try $0.step(decoded) }
    }

    mutating func stabilize() throws {
        for _ in 0..<10_000 {
            var moved = false
            for i in members.keys.sorted() where members[i]!.node?.hasReady() == true {
                try process(i)
                moved = true
            }
            for link in queues.keys.sorted() where !(queues[link] ?? []).isEmpty {
                let batch = queues[link]!
                queues[link] = []
                moved = true
                if cut.contains(link) { continue }
                for m in batch { try deliver(m) }
            }
            if !moved { return }
        }
        throw Failure(description: "did not stabilize")
    }

    func expect(_ words: [String]) throws {
        let targets = words[0] == "*" ? members.keys.sorted().filter { members[$0]!.node != nil } : [NodeID(words[0])!]
        for t in targets {
            guard let member = members[t], let node = member.node else { throw Failure(description: "\(t) is down") }
            let s = node.status
            for kv in words.dropFirst() {
                let parts = kv.split(separator: "=", maxSplits: 1).map(String.init)
                let key = parts[0]
                let want = parts.count > 1 ? parts[1] : ""
                let got: String
                switch key {
                case "role": got = "\(s.role)".lowercased()
                case "term": got = "\(s.term)"
                case "lead": got = "\(s.lead)"
                case "vote": got = "\(s.hardState.vote)"
                case "commit": got = "\(s.commit)"
                case "applied": got = "\(s.applied)"
                case "last": got = "\(s.lastIndex)"
                case "first": got = "\(s.firstIndex)"
                case "voters": got = s.confState.voters.map(String.init).joined(separator: ",")
                case "learners": got = s.confState.learners.map(String.init).joined(separator: ",")
                case "logterms": got = node.logEntries.map { String($0.term) }.joined(separator: ",")
                case "transferee": got = "\(s.leadTransferee)"
                case "reads":
                    got = member.readStates.map { "\(String(decoding: $0.context, as: UTF8.self))@\($0.index)" }
                        .joined(separator: ",")
                case "dropped":
                    got = member.dropped.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ",")
                case "data":
                    got = member.applied.filter { !$0.data.isEmpty && $0.kind == .normal }
                        .map { String(decoding: $0.data, as: UTF8.self) }.joined(separator: ",")
                case "snapshot": got = "\(member.durable.snapshot?.metadata.index ?? 0)"
                case let k where k.hasPrefix("progress-"):
                    let peer = NodeID(k.dropFirst("progress-".count))!
                    if let p = s.progress[peer] { got = "\(p.state)" } else { got = "none" }
                case let k where k.hasPrefix("match-"):
                    let peer = NodeID(k.dropFirst("match-".count))!
                    got = "\(s.progress[peer]?.match ?? 0)"
                default:
                    throw Failure(description: "unknown key \(key)")
                }
                if got != want {
                    throw Failure(description: "node \(t): \(key) is \(got), expected \(want)")
                }
            }
        }
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }

    func trimmingCharacters(_ c: Character) -> String {
        String(self.filter { $0 != c })
    }
}

extension Substring {
    func trimmingCharacters(_ c: Character) -> String { String(self.filter { $0 != c }) }
}
