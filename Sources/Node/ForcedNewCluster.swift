import EtcdProto
import Raft

/// etcd's `--force-new-cluster`, as a pure function of what a member recovered from disk: the log is extended with
/// one configuration entry removing every other member, and the commit index moved to its end, so the member
/// restarts as the only voter of its cluster and applies the removals through the log like any membership change.
/// Members added afterwards with `member add` learn the new configuration from the log (or a snapshot) in turn.
///
/// Unlike etcd, which drops every entry past the commit index it had persisted, every entry this member holds is
/// kept: a member that had applied a write, or acknowledged it to a leader that then told a client, still has it
/// after the recovery. (An entry past the old commit index was, at worst, a write whose client never heard back;
/// the client could not tell whether it took effect, and now it did.)
enum ForcedNewCluster {
    struct Outcome: Equatable {
        /// Entries to append to the log, after everything recovered.
        var appended: [Entry]
        var hardState: HardState
        /// The members removed, by id.
        var removed: [UInt64]
    }

    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    /// - Parameters:
    ///   - base: the configuration and position of the last snapshot (or the empty configuration at index 0).
    ///   - entries: the log after it.
    ///   - members: the member table (for the removal entries' context), by id.
    static func rewrite(
        memberID: UInt64, base: SnapshotMetadata, entries: [Entry], hardState: HardState,
        members: [UInt64: MemberInfo]
    ) throws -> Outcome {
        var conf = base.confState
        for entry in entries where entry.kind == .confChange {
            if let change = try? ConfChange(serialized: entry.data) { conf = conf.applying(change) }
        }
        guard conf.voters.contains(memberID) else {
            throw Refusal(
                description: "--force-new-cluster needs a voting member; this one is "
                    + (conf.learners.contains(memberID) ? "a learner" : "not in the configuration"))
        }
        let others = (conf.voters + conf.learners).filter { $0 != memberID }.sorted()
        var index = entries.last?.index ?? base.index
        let term = max(hardState.term, entries.last?.term ?? base.term, 1)
        var appended: [Entry] = []
        for id in others {
            var context = Quorumpb_ConfChangeContext()
            context.member =
                (members[id] ?? MemberInfo(id: id, name: "", peerURLs: [], clientURLs: [], isLearner: false))
                .proto
            context.proposer = memberID
            let change = ConfChange(kind: .removeNode, node: id, context: (try? context.serializedBytes()) ?? [])
            index += 1
            appended.append(Entry(term: term, index: index, kind: .confChange, data: change.serialized()))
        }
        return Outcome(
            appended: appended, hardState: HardState(term: term, vote: hardState.vote, commit: index), removed: others)
    }
}
