import EtcdProto
import Raft

extension MemberNode {
    // MARK: Membership

    /// Proposes a membership change; `completion` runs once it is applied here, with the members afterwards.
    func proposeMembershipChange(
        kind: ConfChangeKind, member: MemberInfo,
        completion: @escaping @Sendable (Result<[MemberInfo], EtcdError>) -> Void
    ) {
        let id = ids.next()
        var context = Quorumpb_ConfChangeContext()
        context.member = member.proto
        context.requestID = id
        context.proposer = memberID
        let change: ConfChange
        do {
            change = ConfChange(kind: kind, node: member.id, context: try context.serializedBytes())
        } catch {
            return completion(.failure(.internal("encode: \(error)")))
        }
        let deadline = now() + config.effectiveRequestTimeout
        waiters.register(id, deadline: deadline) { result in
            completion(
                result.flatMap { response in
                    if case .members(let list) = response { return .success(list) }
                    return .failure(.internal("unexpected apply result"))
                })
        }
        perform { node in
            do {
                try node.driver.raft.proposeConfChange(change)
            } catch RaftError.tooManyLearners {
                node.waiters.resume(id, with: .failure(.tooManyLearners))
            } catch {
                // etcd lets such a change time out; saying why is kinder.
                let reason: EtcdError =
                    node.driver.raft.leaderID == 0 ? .noLeader : EtcdError(.unavailable, "etcdserver: \(error)")
                node.waiters.resume(id, with: .failure(reason))
            }
        }
    }

    /// etcd's `--max-learners` default: a cluster holds at most one learner.
    public static let maxLearners = 1

    /// etcd's MemberAdd: a new id from the peer URLs, the token and the time; refused if it would break quorum or
    /// exceed `maxLearners`. The learners are counted twice: here, in the member table, which answers most callers
    /// at once, and by the Raft leader when it appends the change, against its whole log (`RaftConfig.maxLearners`),
    /// which nothing can pass, not two adds at once nor a table that has not applied the last change yet. The
    /// leader answers its own proposals with "too many learner members"; one forwarded by a follower that the
    /// leader refuses times out (etcd refuses it when applying the change, and answers it).
    public func addMember(peerURLs: [String], isLearner: Bool) async -> Result<(MemberInfo, [MemberInfo]), EtcdError> {
        await withCheckedContinuation { continuation in
            addMember(peerURLs: peerURLs, isLearner: isLearner) { continuation.resume(returning: $0) }
        }
    }

    /// `addMember` for callers that cannot suspend (the simulation): `completion` runs on one of the member's loops.
    public func addMember(
        peerURLs: [String], isLearner: Bool,
        completion: @escaping @Sendable (Result<(MemberInfo, [MemberInfo]), EtcdError>) -> Void
    ) {
        let existing = members.all
        if existing.contains(where: { !Set($0.peerURLs).isDisjoint(with: peerURLs) }) {
            return completion(.failure(.peerURLExists))
        }
        if !isLearner && config.strictReconfigCheck && !readyToAddVoter(existing) {
            return completion(.failure(.memberNotEnoughStarted))
        }
        if isLearner && existing.filter(\.isLearner).count >= Self.maxLearners {
            return completion(.failure(.tooManyLearners))
        }
        // The member's wall clock (a simulation's is virtual, so that the new id replays with its seed).
        var id = Identity.memberID(peerURLs: peerURLs, token: config.initialClusterToken, time: wallClock())
        while members.member(id) != nil || members.isRemoved(id) { id &+= 1 }
        let member = MemberInfo(id: id, name: "", peerURLs: peerURLs, clientURLs: [], isLearner: isLearner)
        proposeMembershipChange(kind: isLearner ? .addLearner : .addVoter, member: member) { result in
            completion(result.map { (member, $0) })
        }
    }

    public func removeMember(_ id: UInt64) async -> Result<[MemberInfo], EtcdError> {
        await withCheckedContinuation { continuation in
            removeMember(id) { continuation.resume(returning: $0) }
        }
    }

    /// `removeMember` for callers that cannot suspend: `completion` runs on one of the member's loops.
    public func removeMember(_ id: UInt64, completion: @escaping @Sendable (Result<[MemberInfo], EtcdError>) -> Void) {
        guard let member = members.member(id) else { return completion(.failure(.memberNotFound)) }
        if !member.isLearner && config.strictReconfigCheck && !readyToRemoveVoter(id) {
            return completion(.failure(.memberNotEnoughStarted))
        }
        proposeMembershipChange(kind: .removeNode, member: member, completion: completion)
    }

    /// Promotes a learner once it has caught up (leader only: only the leader knows how far it got).
    public func promoteMember(_ id: UInt64) async -> Result<[MemberInfo], EtcdError> {
        await withCheckedContinuation { continuation in
            promoteMember(id) { continuation.resume(returning: $0) }
        }
    }

    /// `promoteMember` for callers that cannot suspend: `completion` runs on one of the member's loops.
    public func promoteMember(_ id: UInt64, completion: @escaping @Sendable (Result<[MemberInfo], EtcdError>) -> Void) {
        guard let member = members.member(id) else { return completion(.failure(.memberNotFound)) }
        guard member.isLearner else { return completion(.failure(.memberNotLearner)) }
        guard status.isLeader else { return completion(.failure(.notLeader)) }
        perform { node in
            let progress = node.driver.raft.status.progress
            let leaderMatch = progress[node.memberID]?.match ?? node.driver.raft.lastIndex
            let learnerMatch = progress[id]?.match ?? 0
            // etcd's rule: a learner is ready once it holds 90% of what the leader holds.
            guard leaderMatch > 0 && Double(learnerMatch) >= 0.9 * Double(leaderMatch) else {
                return completion(.failure(.learnerNotReady))
            }
            node.proposeMembershipChange(kind: .promoteLearner, member: member) { promoted in
                if case .success = promoted { node.counters.learnerPromotions.add(1, ordering: .relaxed) }
                completion(promoted)
            }
        }
    }

    /// Changes a member's peer URLs (a normal replicated request: the voting configuration is unchanged).
    public func updateMember(_ id: UInt64, peerURLs: [String]) async -> Result<[MemberInfo], EtcdError> {
        guard members.member(id) != nil else { return .failure(.memberNotFound) }
        if members.all.contains(where: { $0.id != id && !Set($0.peerURLs).isDisjoint(with: peerURLs) }) {
            return .failure(.peerURLExists)
        }
        var request = Quorumpb_RaftRequest()
        request.memberUpdate.id = id
        request.memberUpdate.peerUrls = peerURLs
        return await propose(request).map { _ in self.members.all }
    }

    /// A started member has published its name (etcd's notion of "started").
    private func readyToAddVoter(_ all: [MemberInfo]) -> Bool {
        let voters = all.filter { !$0.isLearner }
        let started = voters.filter { !$0.name.isEmpty }.count
        let after = voters.count + 1
        if started == 1 && after == 2 { return true }  // growing a one-member cluster, as etcd allows
        return started >= after / 2 + 1
    }

    private func readyToRemoveVoter(_ id: UInt64) -> Bool {
        let voters = members.all.filter { !$0.isLearner && $0.id != id }
        let started = voters.filter { !$0.name.isEmpty }.count
        return started >= voters.count / 2 + 1
    }
}
