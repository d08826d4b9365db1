/// A ReadIndex request waiting on the leader.
struct ReadRequest: Sendable {
    /// Heartbeat round that must be acknowledged by a quorum before the read is safe.
    var round: UInt64
    /// Commit index when the request arrived: reading at or after it sees every write acknowledged before.
    var index: UInt64
    /// Who asked (the leader itself, or a follower that forwarded it).
    var from: NodeID
    var context: [UInt8]
}

/// Pending ReadIndex requests of the leader.
///
/// Each request is tagged with a monotonically increasing round number, and heartbeats carry the latest round.
/// A member that answers round `r` vouches for the leader *after* every request of round `<= r` was
/// registered, so one quorum-th-largest computation over the members' acknowledged rounds releases a whole
/// prefix of requests: the cost of a read is O(members), however many reads are batched into a round.
struct ReadOnlyQueue: Sendable {
    var pending: [ReadRequest] = []
    private var head = 0
    /// Round of the most recent request (0 = none yet in this term).
    private(set) var lastRound: UInt64 = 0
    /// Requests received before the leader committed an entry of its term: its commit index may be stale
    /// until then (Raft §6.4), so they wait.
    var waitingForCommit: [(from: NodeID, context: [UInt8])] = []

    var isEmpty: Bool { head == pending.count }

    mutating func add(index: UInt64, from: NodeID, context: [UInt8]) -> UInt64 {
        lastRound += 1
        pending.append(ReadRequest(round: lastRound, index: index, from: from, context: context))
        return lastRound
    }

    /// Removes and returns every request of round `<= round`.
    mutating func release(through round: UInt64) -> [ReadRequest] {
        let start = head
        while head < pending.count && pending[head].round <= round { head += 1 }
        let out = Array(pending[start..<head])
        if head == pending.count {
            pending.removeAll(keepingCapacity: true)
            head = 0
        }
        return out
    }

    /// Drops everything (leadership lost); returns what was pending so local requesters can be told.
    mutating func reset() -> [(from: NodeID, context: [UInt8])] {
        var out = pending[head...].map { ($0.from, $0.context) }
        out += waitingForCommit
        pending.removeAll()
        waitingForCommit.removeAll()
        head = 0
        lastRound = 0
        return out
    }

    /// Heartbeat context: the latest ReadIndex round and the leader's tick when sending, echoed back by
    /// followers so the leader knows which round they vouch for and from when their lease runs.
    static func encode(round: UInt64, tick: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 12)
        w.varint(round)
        w.varint(tick)
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) -> (round: UInt64, tick: UInt64)? {
        var r = ByteReader(bytes)
        guard let round = try? r.varint(), let tick = try? r.varint(), r.isAtEnd else { return nil }
        return (round, tick)
    }
}
