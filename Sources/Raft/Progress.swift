/// The leader's view of one member's log.
///
/// The three states trade latency for waste: `probe` sends one append and waits, because the leader does not
/// know where the logs match and anything pipelined would likely be rejected; `replicate` pipelines up to the
/// in-flight limits, because the follower is known to accept; `snapshot` sends nothing while a snapshot is in
/// transfer, because the entries the follower needs no longer exist.
struct Progress: Sendable {
    let id: NodeID
    /// Highest index known to match the leader's log (acknowledged durable by the member).
    var match: UInt64 = 0
    /// Next index to send.
    var next: UInt64
    var state: ProgressState = .probe
    /// Index of the snapshot in transfer (snapshot state only).
    var pendingSnapshot: UInt64 = 0
    /// Heard from since the last check-quorum round.
    var recentActive: Bool = false
    /// In probe state: an append is outstanding, so wait for its answer or the next heartbeat response.
    var probeSent: Bool = false
    var isLearner: Bool
    /// Commit index last sent, so the leader knows whether an empty append is needed to spread a new commit.
    var sentCommit: UInt64 = 0
    /// Highest ReadIndex round this member acknowledged in the current term.
    var readAck: UInt64 = 0
    /// Leader tick (plus one; 0 = none) at which the latest heartbeat this member acknowledged was sent: the
    /// member promised not to vote for anyone else for `electionTick` ticks after receiving it.
    var leaseSent: UInt64 = 0
    var inflights: Inflights

    init(id: NodeID, next: UInt64, isLearner: Bool, maxInflight: Int, maxInflightBytes: Int) {
        self.id = id
        self.next = next
        self.isLearner = isLearner
        self.inflights = Inflights(capacity: maxInflight, maxBytes: maxInflightBytes)
    }

    var isPaused: Bool {
        switch state {
        case .probe: probeSent
        case .replicate: inflights.isFull
        case .snapshot: true
        }
    }

    mutating func becomeProbe() {
        // After a snapshot, the follower has at least the snapshot: probe right after it.
        if state == .snapshot {
            next = max(match + 1, pendingSnapshot + 1)
        } else {
            next = match + 1
        }
        state = .probe
        pendingSnapshot = 0
        probeSent = false
        inflights.reset()
    }

    mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        pendingSnapshot = 0
        probeSent = false
        inflights.reset()
    }

    mutating func becomeSnapshot(index: UInt64) {
        state = .snapshot
        pendingSnapshot = index
        probeSent = false
        inflights.reset()
    }

    /// Records an acknowledgement of `index`; returns whether `match` moved (a stale or duplicate answer,
    /// common on a reordering network, changes nothing).
    mutating func maybeUpdate(_ index: UInt64) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// Handles a rejection of the append whose previous index was `rejected`; `hint` is the highest index at
    /// which the logs may match. Returns false when the rejection is stale (answers an older append).
    mutating func maybeDecrease(rejected: UInt64, hint: UInt64) -> Bool {
        if state == .replicate {
            // Everything up to match is acknowledged, so a rejection at or below it is out of date.
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        // In probe state only the latest probe counts; it was sent with previous index next - 1.
        if next == 0 || next - 1 != rejected { return false }
        next = max(min(rejected, hint + 1), match + 1)
        probeSent = false
        return true
    }

    var status: ProgressStatus {
        ProgressStatus(
            match: match, next: next, state: state, isLearner: isLearner, recentActive: recentActive,
            inflightMessages: inflights.count, pendingSnapshot: pendingSnapshot)
    }
}

/// The members of the current configuration and the leader's progress for each, kept in an array sorted by
/// id: iteration order is deterministic (dictionaries are hashed with a per-process seed) and, for clusters of
/// a handful of members, a linear scan beats hashing.
struct ProgressTracker: Sendable {
    private(set) var conf = ConfState()
    var progress: [Progress] = []
    let maxInflight: Int
    let maxInflightBytes: Int

    init(maxInflight: Int, maxInflightBytes: Int) {
        self.maxInflight = maxInflight
        self.maxInflightBytes = maxInflightBytes
    }

    var voterCount: Int { conf.voters.count }
    var quorum: Int { conf.voters.count / 2 + 1 }

    func isVoter(_ id: NodeID) -> Bool { conf.voters.contains(id) }

    @inline(__always) func slot(_ id: NodeID) -> Int? {
        for i in progress.indices where progress[i].id == id { return i }
        return nil
    }

    /// Installs a configuration: keeps the progress of members that stay, creates fresh progress (probing from
    /// `nextIndex`) for new ones, drops removed ones.
    mutating func setConf(_ newConf: ConfState, nextIndex: UInt64) {
        conf = newConf
        var members = newConf.voters.map { ($0, false) } + newConf.learners.map { ($0, true) }
        members.sort { $0.0 < $1.0 }
        var updated: [Progress] = []
        updated.reserveCapacity(members.count)
        for (id, learner) in members {
            if let i = slot(id) {
                var pr = progress[i]
                pr.isLearner = learner
                updated.append(pr)
            } else {
                var pr = Progress(
                    id: id, next: nextIndex, isLearner: learner, maxInflight: maxInflight,
                    maxInflightBytes: maxInflightBytes)
                // A new member gets the benefit of the doubt for one check-quorum round.
                pr.recentActive = true
                updated.append(pr)
            }
        }
        progress = updated
    }

    /// The highest index stored by a quorum of voters: the quorum-th largest `match`.
    func quorumMatch() -> UInt64 { quorumValue { $0.match } }

    /// The quorum-th largest value of `key` among voters. (A closure rather than a key path: a key path is
    /// projected through the runtime on every call, and this runs on every acknowledgement.)
    func quorumValue(_ key: (Progress) -> UInt64) -> UInt64 {
        let n = conf.voters.count
        guard n > 0 else { return 0 }
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { buf in
            var count = 0
            for pr in progress where !pr.isLearner {
                // Insertion sort, descending: clusters are small and this runs on every acknowledgement.
                var j = count
                let v = key(pr)
                while j > 0 && buf[j - 1] < v {
                    buf[j] = buf[j - 1]
                    j -= 1
                }
                buf[j] = v
                count += 1
            }
            precondition(count == n, "progress and configuration disagree")
            return buf[n / 2]
        }
    }
}
