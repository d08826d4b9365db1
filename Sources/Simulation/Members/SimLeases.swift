import EtcdProto
import Foundation
import Node

/// Leases of the member simulation, and the check of their safety and liveness.
///
/// A lease client grants a lease, attaches a key to it, keeps it alive through the leader for a while, then either
/// revokes it or lets it expire; meanwhile it reads the key linearizably now and then. The checks:
/// - safety: a key is not gone before its lease's TTL has elapsed since the last keep-alive the real leader granted
///   (a leader of the newest term, known here from every member's state at that moment);
/// - liveness: once the run has settled, every lease that was revoked or left to expire has its key gone.
final class SimLeases: @unchecked Sendable {
    // @unchecked: confined to the scheduler's thread.
    struct Lease {
        var id: Int64
        var ttl: Int64
        var key: Data
        /// Times (virtual) at which the real leader granted a keep-alive, or the grant itself was acknowledged.
        var alive: [SimTime] = []
        /// The key's put was acknowledged.
        var attached = false
        /// Revoked, or keep-alives stopped at this time: the key must be gone after the run settles.
        var abandoned: SimTime?
        /// When the client asked to revoke it: its key may be gone from then on.
        var revoked: SimTime?
    }

    unowned let simulation: MemberSimulation
    var leases: [Lease] = []
    var violations: [String] = []
    var finished = false
    /// Linearizable reads of lease keys: (lease index, call, return, present).
    var reads: [(lease: Int, call: SimTime, ret: SimTime, present: Bool)] = []

    init(simulation: MemberSimulation) {
        self.simulation = simulation
    }

    var scheduler: SimScheduler { simulation.scheduler }

    func start(clients: Int) {
        for c in 0..<clients {
            scheduler.after(.ms(scheduler.random.int(in: 500...3000))) { [self] in cycle(client: c) }
        }
    }

    /// A member that serves clients (running, recovered, no learner), at random.
    private func anyMember() -> MemberNode? {
        let serving = simulation.members.indices.filter(simulation.servesClients).compactMap {
            simulation.members[$0].node
        }
        return serving.isEmpty ? nil : scheduler.random.pick(serving)
    }

    /// The leader of the newest term, if one leads now.
    private func realLeader() -> MemberNode? {
        let nodes = simulation.members.compactMap(\.node)
        let newest = nodes.map(\.status.term).max() ?? 0
        return nodes.first { $0.status.isLeader && $0.status.term == newest }
    }

    /// One lease's life: grant, attach, keep alive, then revoke or abandon; and the next.
    private func cycle(client: Int) {
        guard !finished, simulation.issued < simulation.options.operations else { return }
        guard let node = anyMember() else {
            if !finished { scheduler.after(.ms(200)) { [self] in cycle(client: client) } }
            return
        }
        let ttl = Int64(scheduler.random.int(in: 2...5))
        let granted = scheduler.now
        node.propose(node.leaseGrantRequest(ttl: ttl, id: 0)) { [self] result in
            guard case .success(.leaseGrant(let response)) = result, !finished else {
                scheduler.after(.ms(100)) { [self] in cycle(client: client) }
                return
            }
            let index = leases.count
            leases.append(
                Lease(id: response.id, ttl: response.ttl, key: Data("x\(response.id)".utf8), alive: [granted]))
            simulation.trace("lease \(response.id) granted (ttl \(response.ttl) s)")
            attach(index, client: client)
        }
    }

    private func attach(_ index: Int, client: Int) {
        guard let node = anyMember() else {
            leases[index].abandoned = scheduler.now
            return cycle(client: client)
        }
        var put = Etcdserverpb_PutRequest()
        put.key = leases[index].key
        put.value = Data("v".utf8)
        put.lease = leases[index].id
        var request = Quorumpb_RaftRequest()
        request.put = put
        node.propose(request) { [self] result in
            if case .success(.put) = result { leases[index].attached = true }
            keepAlive(index, client: client, rounds: scheduler.random.int(0..<6))
        }
    }

    private func keepAlive(_ index: Int, client: Int, rounds: Int) {
        guard !finished else { return }
        let lease = leases[index]
        if rounds == 0 {
            leases[index].abandoned = scheduler.now
            if scheduler.random.chance(0.5), let node = anyMember() {
                var revoke = Etcdserverpb_LeaseRevokeRequest()
                revoke.id = lease.id
                var request = Quorumpb_RaftRequest()
                request.leaseRevoke = revoke
                simulation.trace("lease \(lease.id) revoked")
                leases[index].revoked = scheduler.now
                node.propose(request) { _ in }
            } else {
                simulation.trace("lease \(lease.id) left to expire")
                // Watch it go: reads through its last TTL and beyond.
                for _ in 0..<4 {
                    scheduler.after(.ms(scheduler.random.int(in: 0...lease.ttl * 1500))) { [self] in read(index) }
                }
            }
            scheduler.after(.ms(scheduler.random.int(in: 100...1000))) { [self] in cycle(client: client) }
            return
        }
        // A keep-alive goes to the leader (as a follower forwards it); only the real leader's counts.
        if let leader = realLeader(), let ttl = leader.leases.renew(lease.id), ttl > 0 {
            leases[index].alive.append(scheduler.now)
            simulation.trace(
                "lease \(lease.id) kept alive by \(simulation.members.first { $0.id == leader.memberID }?.name ?? "?") "
                    + "(term \(leader.status.term), ttl \(ttl))")
        }
        read(index)
        let interval = lease.ttl * 1000 / 3
        scheduler.after(.ms(scheduler.random.int(in: interval / 2...interval))) { [self] in
            keepAlive(index, client: client, rounds: rounds - 1)
        }
    }

    /// A linearizable read of the lease's key.
    private func read(_ index: Int) {
        guard let node = anyMember() else { return }
        let call = scheduler.now
        let key = leases[index].key
        // The callback finds the member again (holding it would keep a crashed member alive).
        let member = ObjectIdentifier(node)
        node.readBarrier { [self] error in
            guard error == nil, !finished,
                let node = simulation.members.compactMap(\.node).first(where: { ObjectIdentifier($0) == member })
            else { return }
            let kv: Mvccpb_KeyValue?
            do { kv = try MemberSimulation.read(key, on: node) } catch { return }
            reads.append((index, call, scheduler.now, kv != nil))
        }
    }

    /// After the run has settled (every member up, healed, caught up).
    func check() -> [String] {
        finished = true
        var found = violations
        for read in reads where !read.present {
            let lease = leases[read.lease]
            guard lease.attached, lease.revoked.map({ read.ret < $0 }) ?? true else { continue }
            // Gone at some moment before the read returned: no keep-alive the leader granted before the read began
            // may still have had its TTL running then.
            if let ack = lease.alive.last(where: { $0 < read.call }), ack + lease.ttl * 1_000_000 > read.ret {
                found.append(
                    "lease \(lease.id): its key was gone at \(read.ret / 1000) ms, but the leader had kept it alive at "
                        + "\(ack / 1000) ms with a TTL of \(lease.ttl) s")
            }
        }
        return Array(found.prefix(10))
    }

    /// Keys of leases revoked or left to expire must be gone once every lease has had its time.
    func checkLiveness(on node: MemberNode) -> [String] {
        var found: [String] = []
        for lease in leases where lease.abandoned != nil && lease.attached {
            if (try? MemberSimulation.read(lease.key, on: node)) != nil {
                found.append("lease \(lease.id): its key outlived the lease")
            }
        }
        return Array(found.prefix(10))
    }

    /// The longest TTL granted, for how long the run must wait for expiries.
    var longestTTL: Int64 { leases.map(\.ttl).max() ?? 0 }
}
