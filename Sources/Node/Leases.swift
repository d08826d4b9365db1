import Foundation
import MVCC
import Synchronization

/// The lessor shared between the apply loop (grants, revocations, key attachment), the Raft loop (expiry,
/// leadership changes) and keep-alive streams (renewals). Every operation is short, so one lock suffices.
public final class Leases: Sendable {
    let lessor: Mutex<Lessor>
    /// Monotonic nanoseconds; injected so tests control expiry.
    let now: @Sendable () -> Int64
    /// Called after a keep-alive of a lease whose remaining TTL was checkpointed: the member proposes a checkpoint
    /// of 0, so that a later leader does not cut the renewed lease short. Set when checkpoints are enabled.
    let clearCheckpoint = Mutex<(@Sendable (Int64) -> Void)?>(nil)
    /// Keep-alives granted (see `NodeCounters.leaseRenewals`).
    public let renewals = Atomic<Int>(0)

    init(store: KVStore, minTTL: Int64, now: @escaping @Sendable () -> Int64) throws {
        self.lessor = Mutex(try Leases.load(store: store, minTTL: minTTL))
        self.now = now
    }

    private static func load(store: KVStore, minTTL: Int64) throws -> Lessor {
        var lessor = Lessor(minTTL: minTTL)
        let s = try store.backend.writer.statement("SELECT id, ttl, remaining_ttl FROM leases")
        while try s.step() { lessor.restore(id: s.int64(0), ttl: s.int64(1), remainingTTL: s.int64(2)) }
        s.reset()
        for (key, lease) in store.leasedKeys() { lessor.attach(key, to: lease) }
        return lessor
    }

    /// Rebuilds from the store after a snapshot replaced it; a primary stays primary with fresh deadlines.
    func reload(store: KVStore) throws {
        let minTTL = self.minTTL
        var fresh = try Leases.load(store: store, minTTL: minTTL)
        let t = now()
        lessor.withLock { current in
            if current.isPrimary { fresh.promote(now: t) }
            current = fresh
        }
    }

    public func contains(_ id: Int64) -> Bool { lessor.withLock { $0.contains(id) } }

    public var ids: [Int64] { lessor.withLock { $0.leases.keys.sorted() } }

    public var minTTL: Int64 { lessor.withLock { $0.minTTL } }

    /// A keep-alive from a client: the new TTL, 0 if the lease is gone (etcd's answer), or nil when this member
    /// is not the leader and the renewal must go to it.
    public func renew(_ id: Int64) -> Int64? {
        let t = now()
        let (result, checkpointed) = lessor.withLock { l in (l.renew(id: id, now: t), l.hasCheckpoint(id: id)) }
        switch result {
        case .success(let ttl):
            renewals.add(1, ordering: .relaxed)
            if checkpointed, let clear = clearCheckpoint.withLock({ $0 }) { clear(id) }
            return ttl
        case .failure(.notFound): return 0
        case .failure(.notPrimary): return nil
        }
    }

    /// (remaining, granted, keys) or nil when there is no such lease.
    public func timeToLive(_ id: Int64) -> (remaining: Int64, granted: Int64, keys: [Data])? {
        let t = now()
        return lessor.withLock { l in
            guard let lease = l.leases[id], let remaining = l.remaining(id: id, now: t) else { return nil }
            return (remaining, lease.ttl, lease.keys.sorted { KeyRange.less($0, $1) })
        }
    }

    /// Applies a committed checkpoint.
    func checkpoint(id: Int64, remainingTTL: Int64) {
        lessor.withLock { $0.checkpoint(id: id, remainingTTL: remainingTTL) }
    }

    /// The leader's remaining TTLs to record (empty on a follower).
    func pendingCheckpoints() -> [(id: Int64, remaining: Int64)] {
        let t = now()
        return lessor.withLock { $0.checkpoints(now: t) }
    }

    func promote() {
        let t = now()
        lessor.withLock { $0.promote(now: t) }
    }

    func demote() { lessor.withLock { $0.demote() } }

    /// Expired leases to revoke now; each is postponed so one lease is not proposed twice while its revocation
    /// is in flight (if that proposal is lost, the lease comes round again after the delay).
    func takeExpired(retryAfterNanoseconds: Int64) -> [Int64] {
        let t = now()
        return lessor.withLock { l in
            let ids = l.expired(now: t)
            for id in ids { l.postpone(id: id, until: t + retryAfterNanoseconds) }
            return ids
        }
    }
}
