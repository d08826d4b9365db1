import Foundation

/// A lease: keys attached to it are deleted when it expires or is revoked.
public struct Lease: Sendable, Equatable {
    public var id: Int64
    /// Granted time-to-live in seconds.
    public var ttl: Int64
    /// Monotonic deadline in nanoseconds; nil while this member is not the leader (only the leader expires leases).
    public var expiry: Int64?
    public var keys: Set<Data>
    /// The remaining TTL (seconds) the leader last recorded through the log (etcd's lease checkpoints); 0 when none
    /// was, or since the last renewal. A new leader starts the deadline from it rather than from the whole TTL.
    public var remainingTTL: Int64 = 0
    /// The leader proposed its revocation (it expired): a keep-alive can no longer save it. Without this, the
    /// postponed deadline (`postpone`) let a renewal succeed while the revocation was in flight, and the client was
    /// told its lease lived on while its keys were about to go (found by the member simulation's lease check).
    public var revoking = false

    /// What a new deadline starts from: the checkpointed remaining TTL, else the whole TTL.
    var restartTTL: Int64 { remainingTTL > 0 ? remainingTTL : ttl }
}

/// Lease bookkeeping, as a value type with time passed in, so tests drive expiry with an injected clock.
///
/// etcd's rules: only the leader ("primary") tracks deadlines and proposes revocations; followers hold leases
/// without deadlines. When a member becomes leader every deadline restarts at now + TTL — leases are
/// *extended* across a leader change or a restart, never shortened, so a client that kept a lease alive is never
/// surprised by a premature expiry. With lease checkpoints (`checkpoint`), a deadline restarts from the remaining
/// TTL the old leader recorded instead, so a lease nobody keeps alive still expires in time.
public struct Lessor: Sendable {
    /// etcd's upper bound on a TTL (seconds).
    public static let maxTTL: Int64 = 9_000_000_000

    public private(set) var leases: [Int64: Lease] = [:]
    public private(set) var isPrimary = false
    /// TTLs below this are raised to it (etcd: 1.5 election timeouts, in whole seconds).
    public var minTTL: Int64

    public init(minTTL: Int64) {
        self.minTTL = minTTL
    }

    /// The TTL etcd actually grants for a request.
    public func effectiveTTL(_ requested: Int64) -> Int64 { max(requested, minTTL) }

    /// Applies a committed grant.
    public mutating func grant(id: Int64, ttl: Int64, now: Int64) -> Lease {
        let granted = effectiveTTL(ttl)
        let lease = Lease(id: id, ttl: granted, expiry: isPrimary ? now + granted * 1_000_000_000 : nil, keys: [])
        leases[id] = lease
        return lease
    }

    /// Restores a lease loaded from storage at start-up.
    public mutating func restore(id: Int64, ttl: Int64, remainingTTL: Int64 = 0) {
        leases[id] = Lease(
            id: id, ttl: ttl, expiry: nil, keys: leases[id]?.keys ?? [], remainingTTL: max(0, remainingTTL))
    }

    /// Applies a committed checkpoint (etcd's `Checkpoint`): records the remaining TTL, for a later leader; the
    /// current leader's deadline stays as it is.
    public mutating func checkpoint(id: Int64, remainingTTL: Int64) {
        leases[id]?.remainingTTL = max(0, remainingTTL)
    }

    /// The leader's remaining TTL of every lease (seconds, rounded up so that a checkpoint never shortens a lease),
    /// to record through the log; empty on a follower.
    public func checkpoints(now: Int64) -> [(id: Int64, remaining: Int64)] {
        guard isPrimary else { return [] }
        return leases.values.compactMap { lease in
            guard let expiry = lease.expiry, expiry > now else { return nil }
            let remaining = (expiry - now + 999_999_999) / 1_000_000_000
            return remaining < lease.ttl ? (lease.id, remaining) : nil
        }.sorted { $0.id < $1.id }
    }

    /// Applies a committed revocation; returns the keys to delete (sorted, for deterministic event order).
    public mutating func revoke(id: Int64) -> [Data]? {
        guard let lease = leases.removeValue(forKey: id) else { return nil }
        return lease.keys.sorted { KeyRange.less($0, $1) }
    }

    public func contains(_ id: Int64) -> Bool { leases[id] != nil }

    public mutating func attach(_ key: Data, to id: Int64) {
        leases[id]?.keys.insert(key)
    }

    public mutating func detach(_ key: Data, from id: Int64) {
        leases[id]?.keys.remove(key)
    }

    public enum RenewError: Error, Equatable { case notFound, notPrimary }

    /// A keep-alive (leader only, not replicated): restarts the deadline; returns the TTL. A checkpointed remaining
    /// TTL is then stale: `hasCheckpoint` tells the caller to clear it through the log (as etcd's `Renew` does).
    public mutating func renew(id: Int64, now: Int64) -> Result<Int64, RenewError> {
        guard isPrimary else { return .failure(.notPrimary) }
        guard var lease = leases[id] else { return .failure(.notFound) }
        if lease.revoking { return .failure(.notFound) }
        if let expiry = lease.expiry, expiry <= now { return .failure(.notFound) }
        lease.expiry = now + lease.ttl * 1_000_000_000
        leases[id] = lease
        return .success(lease.ttl)
    }

    /// Whether a checkpointed remaining TTL is recorded for the lease.
    public func hasCheckpoint(id: Int64) -> Bool { (leases[id]?.remainingTTL ?? 0) > 0 }

    /// Remaining seconds (rounded down, as etcd reports), or nil if there is no such lease.
    public func remaining(id: Int64, now: Int64) -> Int64? {
        guard let lease = leases[id] else { return nil }
        guard let expiry = lease.expiry else { return lease.restartTTL }
        return max(0, (expiry - now) / 1_000_000_000)
    }

    /// Leases past their deadline, oldest deadline first, at most `limit`.
    public func expired(now: Int64, limit: Int = 1000) -> [Int64] {
        leases.values.compactMap { lease -> (Int64, Int64)? in
            guard let expiry = lease.expiry, expiry <= now else { return nil }
            return (expiry, lease.id)
        }.sorted { $0 < $1 }.prefix(limit).map(\.1)
    }

    /// Became leader: every deadline starts afresh.
    public mutating func promote(now: Int64) {
        isPrimary = true
        for id in leases.keys {
            leases[id]!.expiry = now + leases[id]!.restartTTL * 1_000_000_000
            // A revocation the previous leader proposed is decided by the log; this leader starts afresh.
            leases[id]!.revoking = false
        }
    }

    /// Lost leadership: deadlines are the new leader's business.
    public mutating func demote() {
        isPrimary = false
        for id in leases.keys { leases[id]!.expiry = nil }
    }

    /// Pushes a deadline out (an expired lease whose revocation is in flight must not be proposed twice).
    /// The lease expired and its revocation was proposed: it is tried again after `deadline` if that proposal is
    /// lost, and no renewal saves it meanwhile.
    public mutating func postpone(id: Int64, until deadline: Int64) {
        if leases[id]?.expiry != nil {
            leases[id]!.expiry = deadline
            leases[id]!.revoking = true
        }
    }
}
