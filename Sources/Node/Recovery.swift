import Raft
import Storage

/// How a member restarts from what is on its disk, as a pure function: the shell (`MemberNode`) reads the log and
/// the database's markers, asks `Recovery.plan`, carries out the plan's actions on the log, and hands the plan's
/// state to Raft. Kept apart so every combination a crash can leave behind is decided in one place and proven by
/// unit tests without files (`RecoveryTests`).
///
/// What a crash can leave, and the answer:
/// - The database applied entries the log still holds: those after the database's `consistent_index` are handed
///   out again (Raft's `applied`), and applying is idempotent by index.
/// - The database is *ahead* of the log's end: a snapshot from the leader was installed into the database and the
///   member stopped before the log recorded its marker (`restoreSnapshot` writes the database first). The database
///   is then the snapshot: a marker at its index is written to the log. Without the database's term and
///   configuration at that index this cannot be repaired and the member refuses to start.
/// - The database is *behind* the log's snapshot marker: the log released entries the database never made durable.
///   No order of writes in `MemberNode` produces this (the database is made durable before every marker), so it
///   means a damaged or replaced database; starting would silently skip the released entries, so the member refuses.
enum Recovery {
    /// What the shell read from the disk.
    struct Disk: Equatable {
        var hardState: WALHardState
        /// The log's newest snapshot marker.
        var snapshot: WALSnapshot?
        /// The log after the marker.
        var entries: [WALEntry]
        /// The database's `consistent_index`: the last entry it applied, durably.
        var appliedIndex: UInt64
        /// The database's `consistent_term` and configuration (`conf_state`) at `appliedIndex`, if recorded.
        var appliedTerm: UInt64?
        var appliedConf: ConfState?
    }

    /// `--force-new-cluster`: this member, alone, with the member table the removals name.
    struct ForceNewCluster: Equatable {
        var memberID: UInt64
        var members: [UInt64: MemberInfo]
    }

    enum Action: Equatable {
        /// Record in the log that the database is a snapshot at this point.
        case saveSnapshotMarker(WALSnapshot)
        /// Append these entries and this hard state to the log, synced (`--force-new-cluster`'s removals).
        case append(entries: [Entry], hardState: HardState)
    }

    struct Plan {
        /// What Raft starts from.
        var state: PersistentState
        /// What the shell must write to the log first, in order.
        var actions: [Action]
        /// Members `--force-new-cluster` removes, by id (empty otherwise).
        var removedMembers: [UInt64] = []
        /// The last index recovered from the log, before anything the plan appends.
        var recoveredThrough: UInt64
    }

    struct Refusal: Error, Equatable, CustomStringConvertible {
        var description: String
    }

    static func plan(_ disk: Disk, forceNewCluster: ForceNewCluster? = nil) throws(Refusal) -> Plan {
        var actions: [Action] = []
        var snapshot = disk.snapshot.map {
            Snapshot(
                metadata: SnapshotMetadata(
                    index: $0.index, term: $0.term, confState: ConfStateCodec.decode($0.confState) ?? ConfState()))
        }
        var entries = disk.entries.map {
            Entry(term: $0.term, index: $0.index, kind: EntryKind(rawValue: $0.kind) ?? .normal, data: $0.data)
        }
        let markerIndex = snapshot?.metadata.index ?? 0
        let last = entries.last?.index ?? markerIndex
        if disk.appliedIndex < markerIndex {
            throw Refusal(
                description:
                    "the database applied through index \(disk.appliedIndex), but the write-ahead log released "
                    + "its entries through \(markerIndex): the database is missing entries no copy on this member holds"
            )
        }
        if disk.appliedIndex > last {
            guard let term = disk.appliedTerm, let conf = disk.appliedConf else {
                throw Refusal(
                    description: "the database applied index \(disk.appliedIndex) is beyond the end of the write-ahead "
                        + "log (\(last)) and does not record its term and configuration")
            }
            let marker = WALSnapshot(index: disk.appliedIndex, term: term, confState: ConfStateCodec.encode(conf))
            actions.append(.saveSnapshotMarker(marker))
            snapshot = Snapshot(metadata: SnapshotMetadata(index: disk.appliedIndex, term: term, confState: conf))
            entries = []
        }
        let recoveredThrough = entries.last?.index ?? snapshot?.metadata.index ?? 0
        var hardState = HardState(term: disk.hardState.term, vote: disk.hardState.vote, commit: disk.hardState.commit)
        if hardState.commit > recoveredThrough {
            // The hard state is written after the entries it covers, so a log that still has it has them, unless
            // the disk lost writes it had reported synced. Raft would trap on it; a clear refusal is better.
            throw Refusal(
                description:
                    "the write-ahead log ends at index \(recoveredThrough) but records index \(hardState.commit) as "
                    + "committed: entries it had made durable are gone (the disk lost synced writes)")
        }
        var removed: [UInt64] = []
        if let force = forceNewCluster {
            let outcome: ForcedNewCluster.Outcome
            do {
                outcome = try ForcedNewCluster.rewrite(
                    memberID: force.memberID, base: snapshot?.metadata ?? SnapshotMetadata(), entries: entries,
                    hardState: hardState, members: force.members)
            } catch {
                throw Refusal(description: "\(error)")
            }
            actions.append(.append(entries: outcome.appended, hardState: outcome.hardState))
            entries += outcome.appended
            hardState = outcome.hardState
            removed = outcome.removed
        }
        return Plan(
            state: PersistentState(
                hardState: hardState, snapshot: snapshot, entries: entries, applied: disk.appliedIndex),
            actions: actions, removedMembers: removed, recoveredThrough: recoveredThrough)
    }
}
