/// A linearizable read waiting for this member to be allowed to serve it.
struct ReadWaiter {
    /// Called on a loop thread: nil once the read may proceed, or why it may not.
    var completion: @Sendable (EtcdError?) -> Void
    var deadline: Int64
    /// What the waiter hears when its deadline passes (nil: the error `expire` is given): the caller's own
    /// deadline answers "deadline exceeded", the member's request timeout "request timed out".
    var expiry: EtcdError? = nil

    /// Fails the waiters whose deadline passed; returns the others.
    static func expire(_ list: [ReadWaiter], now: Int64, with error: EtcdError) -> [ReadWaiter] {
        var keep: [ReadWaiter] = []
        for waiter in list {
            if waiter.deadline <= now { waiter.completion(waiter.expiry ?? error) } else { keep.append(waiter) }
        }
        return keep
    }
}

/// The Raft side of linearizable reads: reads wait in `pending` until the member asks Raft for a read index, then
/// travel as one round under a context of their own until Raft confirms it (`onConfirmed`), drops it (`onDropped`:
/// they wait for the next round), or their deadlines pass (`expire`).
///
/// A value the Raft loop owns; it decides, the member acts (asks Raft, completes waiters, counts). Generic over the
/// waiter so that tests drive it with plain values.
struct ReadIndexRounds<Waiter> {
    /// Reads no round carries yet.
    private(set) var pending: [Waiter] = []
    /// Rounds asked of Raft and not answered: their reads, and when each was asked (for the slow ones).
    private var inFlight: [[UInt8]: (waiters: [Waiter], askedAt: Int64)] = [:]

    /// etcd's `readIndexRetryTime`: a round not answered within it is a slow one (etcd counts the late answers and
    /// the rounds given up as `etcd_server_slow_read_indexes_total`).
    static var slowNanoseconds: Int64 { 500_000_000 }

    var waiting: Int { pending.count + inFlight.values.reduce(0) { $0 + $1.waiters.count } }

    mutating func add(_ waiters: [Waiter]) { pending += waiters }

    /// Starts a round with every pending read: the context to ask Raft's read index for, or nil with none pending.
    ///
    /// `id` names the round and must never repeat, not even across restarts of the member (a request id: its
    /// counter starts from the wall clock). A leader's answer to a round of the member's previous run can arrive
    /// after a restart; with contexts counted from 1 in every run it matched the new run's round of the same number
    /// and released its reads at the old, lower index: a linearizable read that missed an acknowledged write. The
    /// member simulation found it (seed 8021666: a member back from a crash, its Raft loop held by a slow fsync,
    /// took the old answer from its inbox in the same pass as the new read). etcd's contexts are request ids too.
    mutating func startRound(now: Int64, id: UInt64) -> [UInt8]? {
        guard !pending.isEmpty else { return nil }
        let context = (0..<8).map { UInt8(truncatingIfNeeded: id >> (8 * UInt64($0))) }
        inFlight[context] = (pending, now)
        pending = []
        return context
    }

    /// Raft confirmed the round of `context`: its reads (none if it was given up), and whether it was slow.
    mutating func onConfirmed(_ context: [UInt8], now: Int64) -> (waiters: [Waiter], slow: Bool) {
        guard let round = inFlight.removeValue(forKey: context) else { return ([], false) }
        return (round.waiters, now - round.askedAt > Self.slowNanoseconds)
    }

    /// Raft dropped the round (no leader to ask, or leadership changed): its reads wait for the next one.
    mutating func onDropped(_ context: [UInt8]) {
        if let round = inFlight.removeValue(forKey: context) { pending += round.waiters }
    }

    /// Takes out the reads whose deadline passed. A round left with no read is given up (a late answer finds
    /// nobody) and counts as slow.
    mutating func expire(now: Int64, deadline: (Waiter) -> Int64) -> (expired: [Waiter], roundsGivenUp: Int) {
        var expired: [Waiter] = []
        func split(_ list: [Waiter]) -> [Waiter] {
            var keep: [Waiter] = []
            for waiter in list {
                if deadline(waiter) <= now { expired.append(waiter) } else { keep.append(waiter) }
            }
            return keep
        }
        pending = split(pending)
        var givenUp = 0
        for (context, round) in inFlight {
            let left = split(round.waiters)
            if left.isEmpty && !round.waiters.isEmpty {
                inFlight[context] = nil
                givenUp += 1
            } else {
                inFlight[context]?.waiters = left
            }
        }
        return (expired, givenUp)
    }

    /// Every read, pending or in a round, taken out (the member stops).
    mutating func takeAll() -> [Waiter] {
        let all = pending + inFlight.values.flatMap(\.waiters)
        pending = []
        inFlight = [:]
        return all
    }
}

/// etcd's heartbeat time detector: a heartbeat the leader hands a follower more than two heartbeat intervals after
/// the previous one is late (the Raft loop was held up, most often by a slow disk). Timed within one term of
/// leadership: `reset` at every change of role.
struct LateHeartbeats {
    let limit: Int64
    private var lastSent: [UInt64: Int64] = [:]

    init(heartbeatNanoseconds: Int64) { limit = 2 * heartbeatNanoseconds }

    /// A heartbeat to `peer` leaves at `now`: how late it is (nanoseconds past the limit), or nil when on time.
    mutating func onSent(to peer: UInt64, now: Int64) -> Int64? {
        defer { lastSent[peer] = now }
        guard let last = lastSent[peer], now - last > limit else { return nil }
        return now - last - limit
    }

    mutating func reset() { lastSent.removeAll() }
}
