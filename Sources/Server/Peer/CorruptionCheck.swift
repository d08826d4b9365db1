import EtcdAPI
import EtcdProto
import Logging
import Node

/// Compares the key space's hash with the other members at one revision, as etcd's corruption checks do.
/// Hashes only compare when both sides agree on the compaction revision, since that changes what is hashed.
struct CorruptionCheck {
    let node: MemberNode
    let handler: EtcdHandler
    let peers: PeerTransport
    let logger: Logger

    enum Outcome: Equatable {
        case consistent
        case diverged(member: UInt64, local: UInt32, remote: UInt32, revision: Int64)
    }

    /// Asks every other member for its hash at our current revision. Members that have not reached it yet, or
    /// compacted differently, or cannot be reached, are skipped: only a definite mismatch counts.
    func compare() async -> [Outcome] {
        var request = Etcdserverpb_HashKVRequest()
        request.revision = node.store.revisions.current
        guard let local = try? handler.hashKV(request, .member) else { return [] }
        var outcomes: [Outcome] = []
        for member in node.members.all where member.id != node.memberID && !member.isLearner {
            guard let client = peers.client(for: member.id),
                let remote = try? await client.hashKV(request, options: .peerRequest)
            else { continue }
            if remote.compactRevision != local.compactRevision { continue }
            if remote.hash != local.hash {
                outcomes.append(
                    .diverged(member: member.id, local: local.hash, remote: remote.hash, revision: request.revision))
            } else {
                outcomes.append(.consistent)
            }
        }
        return outcomes
    }

    /// The leader's periodic check: a member whose hash differs gets the CORRUPT alarm, which stops writes
    /// cluster-wide until an operator investigates (etcd's behaviour).
    func runPeriodically(every interval: Duration) async {
        guard interval > .zero else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            guard node.status.isLeader else { continue }
            for case .diverged(let member, let local, let remote, let revision) in await compare() {
                logger.error(
                    "found data inconsistency with a member: raising the CORRUPT alarm",
                    metadata: [
                        "member-id": "\(Identity.hex(member))", "revision": "\(revision)",
                        "local-hash": "\(local)", "remote-hash": "\(remote)",
                    ])
                var alarm = Etcdserverpb_AlarmRequest()
                alarm.action = .activate
                alarm.memberID = member
                alarm.alarm = .corrupt
                _ = try? await handler.alarm(alarm, .member)
            }
        }
    }
}
