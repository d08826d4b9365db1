import Foundation
import Node

/// Membership changes of the member simulation, made as an operator makes them with `etcdctl member ...`, through
/// the members' own API (etcd's MemberAdd, MemberPromote, MemberRemove):
///
/// - with three voters, add a learner, start it as a joining member (`--initial-cluster-state existing`), let it
///   catch up (often from a database snapshot) and promote it once the leader finds it in sync;
/// - with five, remove a voter (the leader a third of the time); with four, either;
/// - now and then ask for a second learner, which etcd refuses ("too many learner members");
/// - stop and free a removed member: it stops itself once it applies its removal (`onRemoved`), and the operator
///   stops it anyway if it never learns (it was cut off when the cluster removed it).
///
/// Changes run one at a time and interleave with the other faults; an answer that is lost (a crash, a timeout)
/// leaves the outcome unknown, and the next step reads what the cluster decided from the leader's member table
/// (`reconcile`).
final class SimMembership: @unchecked Sendable {
    // @unchecked: confined to the scheduler's thread, as `MemberSimulation`.
    unowned let simulation: MemberSimulation
    /// Changes the cluster confirmed (adds, promotions, removals).
    private(set) var applied = 0
    private var violations: [String] = []
    /// Promotions of the current learner refused as not in sync yet; past `maxPromotionAttempts` it is removed.
    private var promotionAttempts = 0
    private static let maxPromotionAttempts = 40

    init(simulation: MemberSimulation) {
        self.simulation = simulation
    }

    var scheduler: SimScheduler { simulation.scheduler }

    func start() { next(in: 2000...6000) }

    /// The next step a random moment from now, while the clients work.
    private func next(in milliseconds: ClosedRange<Int64>) {
        scheduler.after(.ms(scheduler.random.int(in: milliseconds))) { [self] in
            guard simulation.issued < simulation.options.operations else { return }
            step()
        }
    }

    /// The leader of the newest term (whose member table is what `etcdctl member list` would show).
    private func leader() -> MemberNode? {
        let nodes = simulation.members.compactMap(\.node)
        let newest = nodes.map(\.status.term).max() ?? 0
        return nodes.first { $0.status.isLeader && $0.status.term == newest && !$0.isRemoved }
    }

    /// A member to send a request to: the leader or, half of the time, any member that serves clients (which
    /// forwards the change to the leader).
    private func anyServing(or leader: MemberNode) -> MemberNode {
        let serving = simulation.members.indices.filter(simulation.servesClients)
        guard !serving.isEmpty, scheduler.random.chance(0.5) else { return leader }
        return simulation.members[scheduler.random.pick(serving)].node ?? leader
    }

    private func step() {
        guard let leader = leader() else { return next(in: 300...1000) }
        reconcile(with: leader)
        let table = leader.members.all
        if let learner = table.first(where: \.isLearner) {
            if scheduler.random.chance(0.1) { return addSecondLearner(via: leader) }
            if promotionAttempts >= Self.maxPromotionAttempts { return remove(learner.id, via: leader) }
            return promote(learner.id, via: leader)
        }
        let voters = table.filter { !$0.isLearner }
        if voters.count <= 3 || (voters.count == 4 && scheduler.random.chance(0.5)) {
            return addLearner(via: anyServing(or: leader))
        }
        let target =
            scheduler.random.chance(0.3) ? leader.memberID : scheduler.random.pick(voters.map(\.id))
        remove(target, via: anyServing(or: leader))
    }

    /// A change's answer, back on the scheduler (it came on a member's loop).
    private func answer<T>(_ body: @escaping (Result<T, EtcdError>) -> Void)
        -> @Sendable (Result<T, EtcdError>)
        -> Void
    {
        let scheduler = self.scheduler
        // @unchecked: the closure runs on the scheduler's thread, which is the only one.
        nonisolated(unsafe) let body = body
        return { result in scheduler.after(0) { body(result) } }
    }

    /// Errors that say the change was not made (any other leaves its outcome unknown).
    private static func refused(_ error: EtcdError) -> Bool {
        [
            EtcdError.memberNotEnoughStarted, .tooManyLearners, .peerURLExists, .memberNotFound, .memberNotLearner,
            .learnerNotReady, .notLeader,
        ].contains(error)
    }

    // MARK: Changes

    /// A fresh member (a new name, data directory and id) added as a learner, then started.
    private func addLearner(via node: MemberNode) {
        let i = simulation.members.count
        let name = "m\(i + 1)"
        var member = MemberSimulation.Member(name: name, dataDir: simulation.root + "/" + name)
        member.standing = .added(join: nil)
        simulation.members.append(member)
        simulation.trace("member add \(name) as a learner (through \(node.config.name))")
        node.addMember(
            peerURLs: [MemberSimulation.peerURL(name)], isLearner: true,
            completion: answer { [self] result in
                switch result {
                case .success(let (added, list)):
                    join(i, NodeConfig.JoinInfo(clusterID: node.clusterID, memberID: added.id, members: list))
                case .failure(let error):
                    simulation.trace("member add \(name): \(error)")
                    if Self.refused(error) { simulation.members[i].standing = .removed }
                }
                next(in: 1000...4000)
            })
    }

    /// etcd admits one learner: asking the leader for a second must be refused.
    private func addSecondLearner(via leader: MemberNode) {
        let url = MemberSimulation.peerURL("m\(simulation.members.count + 1)-refused")
        leader.addMember(
            peerURLs: [url], isLearner: true,
            completion: answer { [self] result in
                switch result {
                case .success: violations.append("a second learner was added (\(url)): etcd allows one")
                case .failure(let error):
                    simulation.trace("member add of a second learner: \(error)")
                    if error != .tooManyLearners {
                        violations.append("a second learner was refused with \(error), not too many learners")
                    }
                }
                next(in: 300...1500)
            })
    }

    private func promote(_ id: UInt64, via leader: MemberNode) {
        simulation.trace("member promote \(name(of: id))")
        leader.promoteMember(
            id,
            completion: answer { [self] result in
                switch result {
                case .success:
                    applied += 1
                    promotionAttempts = 0
                    simulation.trace("member promote \(name(of: id)): done")
                    next(in: 2000...6000)
                case .failure(let error):
                    simulation.trace("member promote \(name(of: id)): \(error)")
                    if error == .learnerNotReady { promotionAttempts += 1 }
                    next(in: 300...1500)
                }
            })
    }

    private func remove(_ id: UInt64, via node: MemberNode) {
        simulation.trace("member remove \(name(of: id)) (through \(node.config.name))")
        node.removeMember(
            id,
            completion: answer { [self] result in
                switch result {
                case .success:
                    applied += 1
                    promotionAttempts = 0
                    simulation.trace("member remove \(name(of: id)): done")
                    // The operator then stops the removed member's process (if it has not stopped itself).
                    scheduler.after(.ms(scheduler.random.int(in: 200...2000))) { [self] in
                        if let i = index(of: id) { free(i) }
                    }
                case .failure(let error):
                    simulation.trace("member remove \(name(of: id)): \(error)")
                }
                next(in: 1000...4000)
            })
    }

    // MARK: Members

    /// Member `i` was added (its join information known): it starts a moment later, as an operator starts the new
    /// member's process after `member add`.
    private func join(_ i: Int, _ info: NodeConfig.JoinInfo) {
        applied += 1
        simulation.members[i].standing = .added(join: info)
        simulation.trace("\(simulation.members[i].name) added with id \(info.memberID)")
        scheduler.after(.ms(scheduler.random.int(in: 50...1500))) { [self] in simulation.restart(i) }
    }

    /// `reconcile(with:)` the leader of the newest term, if there is one.
    func reconcile() {
        if let leader = leader() { reconcile(with: leader) }
    }

    /// Brings the simulation's view in line with the leader's member table after answers were lost: an add the
    /// cluster applied starts its member; a member the cluster removed is stopped.
    private func reconcile(with leader: MemberNode) {
        let table = leader.members.all
        for i in simulation.members.indices {
            let m = simulation.members[i]
            switch m.standing {
            case .added(join: nil):
                if let added = table.first(where: { $0.peerURLs == [MemberSimulation.peerURL(m.name)] }) {
                    join(i, NodeConfig.JoinInfo(clusterID: leader.clusterID, memberID: added.id, members: table))
                }
            case .founder, .added(join: .some):
                if let id = memberID(i), leader.members.isRemoved(id) { free(i) }
            case .removed:
                break
            }
        }
    }

    /// Stops member `i` for good (removed from the cluster): it is never started again, and must be freed.
    func free(_ i: Int) {
        let m = simulation.members[i]
        guard m.isMember else { return }
        if let node = m.node {
            // It applied its removal, or a peer told it: it must have told its owner.
            if (node.isRemoved || simulation.peers.toldRemoved.contains(m.id)) && !m.noticedRemoval {
                violations.append("\(m.name) was removed and told so, and went on without noticing (onRemoved)")
            }
            simulation.crash(i, losingPower: false)
        }
        simulation.members[i].standing = .removed
        simulation.trace("\(m.name) stopped for good (removed)")
    }

    /// Until it succeeds, while this incarnation runs: a started member publishes its name, as a real server does
    /// (MemberAdd and MemberRemove count only members that did as started: etcd's strict reconfiguration check).
    func publish(_ i: Int, _ node: MemberNode) {
        node.publishAttributes(completion: { [self] result in
            guard case .failure = result else { return }
            scheduler.after(.ms(100)) { [self] in
                if simulation.members[i].node === node { publish(i, node) }
            }
        })
    }

    private func memberID(_ i: Int) -> UInt64? {
        let m = simulation.members[i]
        if m.id != 0 { return m.id }
        if case .added(let join?) = m.standing { return join.memberID }
        return nil
    }

    private func index(of id: UInt64) -> Int? { simulation.members.indices.first { memberID($0) == id } }

    private func name(of id: UInt64) -> String { index(of: id).map { simulation.members[$0].name } ?? "\(id)" }

    // MARK: Check

    /// Once the run settled: every live member lists the same members (ids and learner flags), the ones the
    /// simulation runs; every removed member was freed (`tearDown` checks the freeing). Plus what was found along
    /// the way (a second learner admitted, a removal not noticed).
    func check() -> [String] {
        guard let leader = leader() else { return violations + ["no leader to compare member lists with"] }
        reconcile(with: leader)
        var found = violations
        func describe(_ list: [MemberInfo]) -> String {
            list.map { "\(name(of: $0.id))\($0.isLearner ? " (learner)" : "")" }.joined(separator: ", ")
        }
        let expected = leader.members.all.map { "\($0.id)/\($0.isLearner)" }
        for m in simulation.members where m.isMember {
            guard let node = m.node else {
                found.append("\(m.name) is a member but does not run at the end")
                continue
            }
            if node.members.all.map({ "\($0.id)/\($0.isLearner)" }) != expected {
                found.append(
                    "\(m.name) lists [\(describe(node.members.all))], the leader [\(describe(leader.members.all))]")
            }
        }
        let running = Set(simulation.members.indices.filter { simulation.members[$0].isMember }.compactMap(memberID))
        if Set(leader.members.all.map(\.id)) != running {
            found.append("the cluster lists [\(describe(leader.members.all))], the simulation runs others")
        }
        return found
    }
}
