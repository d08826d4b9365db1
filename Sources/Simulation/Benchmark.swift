import Raft

public struct BenchmarkResult: Sendable {
    public var committed: Int
    public var messages: Int
    public var readies: Int
}

/// Measures the consensus core alone: a 3-member cluster in one process, messages handed over in memory,
/// persistence and application instantaneous. Each round the leader takes a batch of proposals (as a server
/// drains its proposal queue before calling `ready()`), then every member runs one Ready cycle and messages
/// are delivered. The result bounds what Raft costs per write; disks and networks are far slower.
public func runBenchmark(proposals: Int, batch: Int, payloadSize: Int, encodeMessages: Bool) -> BenchmarkResult {
    let peers: [NodeID] = [1, 2, 3]
    var nodes = peers.map { id -> RaftNode in
        var c = RaftConfig(id: id, randomSeed: id)
        c.maxInflightMessages = 256
        return RaftNode.bootstrap(config: c, peers: peers)
    }
    var inbox: [Message] = []
    var committed = 0
    var messages = 0
    var readies = 0
    let payload = [UInt8](repeating: 0xAB, count: payloadSize)

    func cycle() {
        for i in nodes.indices where nodes[i].hasReady() {
            let rd = nodes[i].ready()
            readies += 1
            inbox.append(contentsOf: rd.messages)
            inbox.append(contentsOf: rd.messagesAfterPersist)
            if i == 0 {
                for e in rd.committedEntries where !e.data.isEmpty && e.kind == .normal { committed += 1 }
            }
            nodes[i].advance(rd)
        }
        let batch = inbox
        inbox.removeAll(keepingCapacity: true)
        for m in batch {
            messages += 1
            let msg = encodeMessages ? try! Message(serialized: m.serialized()) : m
            try? nodes[Int(msg.to - 1)].step(msg)
        }
    }

    try? nodes[0].campaign()
    while nodes[0].role != .leader || nodes[0].commitIndex < nodes[0].lastIndex { cycle() }
    var proposed = 0
    while committed < proposals {
        var n = 0
        while n < batch && proposed < proposals {
            do {
                try nodes[0].propose(payload)
                proposed += 1
            } catch {
                break
            }
            n += 1
        }
        cycle()
    }
    return BenchmarkResult(committed: committed, messages: messages, readies: readies)
}
