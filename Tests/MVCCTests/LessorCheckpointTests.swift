import Testing

@testable import MVCC

/// etcd's lease checkpoints in the lessor: the leader's remaining TTLs (rounded up), recorded on every member; a
/// new leader restarts deadlines from them; a renewal makes the recorded value stale.
@Suite struct LessorCheckpointTests {
    static let second: Int64 = 1_000_000_000

    @Test func aNewLeaderContinuesFromTheCheckpoint() {
        var leader = Lessor(minTTL: 1)
        leader.promote(now: 0)
        _ = leader.grant(id: 1, ttl: 60, now: 0)
        _ = leader.grant(id: 2, ttl: 10, now: 0)
        // 20.5 s later: 39.5 s left for lease 1 (recorded as 40), lease 2 is past its deadline.
        let now = 20 * Self.second + Self.second / 2
        let checkpoints = leader.checkpoints(now: now)
        #expect(checkpoints.map(\.id) == [1] && checkpoints.map(\.remaining) == [40])

        var follower = Lessor(minTTL: 1)
        _ = follower.grant(id: 1, ttl: 60, now: 0)
        #expect(follower.remaining(id: 1, now: now) == 60)
        follower.checkpoint(id: 1, remainingTTL: 40)
        #expect(follower.remaining(id: 1, now: now) == 40)
        follower.promote(now: now)
        #expect(follower.remaining(id: 1, now: now) == 40)
        #expect(follower.expired(now: now + 41 * Self.second) == [1])
        // Without a checkpoint, a new leader grants the whole TTL again (etcd's behaviour without the flag).
        var plain = Lessor(minTTL: 1)
        _ = plain.grant(id: 1, ttl: 60, now: 0)
        plain.promote(now: now)
        #expect(plain.remaining(id: 1, now: now) == 60)
    }

    @Test func aCheckpointDoesNotMoveTheLeadersDeadline() {
        var leader = Lessor(minTTL: 1)
        leader.promote(now: 0)
        _ = leader.grant(id: 1, ttl: 60, now: 0)
        leader.checkpoint(id: 1, remainingTTL: 59)
        #expect(leader.expired(now: 60 * Self.second) == [1])
        #expect(leader.hasCheckpoint(id: 1))
        // A keep-alive restarts the whole TTL; the caller clears the stale checkpoint through the log.
        _ = leader.renew(id: 1, now: 30 * Self.second)
        #expect(leader.remaining(id: 1, now: 30 * Self.second) == 60)
        leader.checkpoint(id: 1, remainingTTL: 0)
        #expect(!leader.hasCheckpoint(id: 1))
    }
}
