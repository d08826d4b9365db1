import EtcdProto
import EtcdSnapshot
import Foundation
import MVCC
import Storage

/// Writes the member's committed state as an etcd snapshot file: the bbolt database etcd 3.5 would hold for the same
/// data, followed by the sha256 trailer `etcdctl snapshot save` writes. This is the only snapshot format a user ever
/// sees (the Maintenance `Snapshot` RPC, scheduled backups): etcd's own tools read it, restore it and run it.
///
/// Consistency: everything is read inside one SQLite read transaction, so the file is the state at one revision (the
/// last one committed to SQLite) while writes go on. Memory: revisions stream from SQLite to the file one at a time;
/// only the small tables (members, leases, alarms) are held whole.
public enum EtcdSnapshotExport {
    public struct Summary: Sendable {
        /// The store revision the snapshot holds (etcd's "revision" in `snapshot status`).
        public var revision: Int64
        /// The Raft index the state had applied.
        public var consistentIndex: UInt64
        public var revisions: Int
        /// Size of the file, trailer included.
        public var bytes: Int64
    }

    /// The cluster version written into the `cluster` bucket: the etcd API level Quorum serves.
    public static let clusterVersion = "3.5.0"

    /// Writes the snapshot to `path` (replaced if it exists). `term` is the Raft term to record with the index.
    /// `durable: false` leaves the file unsynced: for a scratch file streamed to a client and removed (the Snapshot
    /// RPC), whose copy the client makes durable. The fsync there only waited for the disk to take the whole
    /// database: on this project's VM, most of the RPC's time (docs/BENCHMARKS.md, snapshot save).
    public static func write(backend: Backend, to path: String, term: UInt64, durable: Bool = true) throws -> Summary {
        try? FileSystem.remove(path)
        // Unmapped: a snapshot reads the whole database once, and memory must not grow with its size.
        return try backend.readOnOwnConnection { c in
            let writer = try EtcdSnapshotWriter(path: path, durable: durable)
            let rows = try c.statement(
                "SELECT rev, sub, key, create_rev, version, lease, value FROM revs ORDER BY rev, sub")
            defer { rows.reset() }
            var count = 0
            var highest: Int64 = 0
            while try rows.step() {
                let revision = BackendRevision(main: rows.int64(0), sub: rows.int64(1))
                let key = rows.data(2)
                if rows.int64(4) == 0 {
                    try writer.append(.tombstone(Array(key), revision: revision))
                } else {
                    var kv = Mvccpb_KeyValue()
                    kv.key = key
                    kv.createRevision = rows.int64(3)
                    kv.modRevision = revision.main
                    kv.version = rows.int64(4)
                    kv.lease = rows.int64(5)
                    kv.value = rows.data(6)
                    try writer.append(KeyRevision(revision: revision, keyValue: kv))
                }
                count += 1
                highest = revision.main
            }
            let state = try Self.state(c, backend: backend, term: term)
            let summary = try writer.finish(state)
            // A store that was never written to is at revision 1, as etcd's.
            let current = try backend.metaInt("current_rev", on: c) ?? 1
            return Summary(
                revision: max(current, highest), consistentIndex: state.meta.consistentIndex, revisions: count,
                bytes: Int64(summary.fileSize))
        }
    }

    /// Everything but the revisions, read on the same connection (and so in the same transaction).
    static func state(_ c: SQLiteConnection, backend: Backend, term: UInt64) throws -> BackendState {
        var members: [BackendMember] = []
        let m = try c.statement("SELECT id, name, peer_urls, client_urls, is_learner FROM members ORDER BY id")
        while try m.step() {
            members.append(
                BackendMember(
                    id: UInt64(bitPattern: m.int64(0)), name: m.string(1), peerURLs: lines(m.string(2)),
                    clientURLs: lines(m.string(3)), isLearner: m.int64(4) != 0))
        }
        m.reset()
        var removed: [UInt64] = []
        let r = try c.statement("SELECT id FROM removed_members ORDER BY id")
        while try r.step() { removed.append(UInt64(bitPattern: r.int64(0))) }
        r.reset()
        var leases: [BackendLease] = []
        let l = try c.statement("SELECT id, ttl, remaining_ttl FROM leases ORDER BY id")
        while try l.step() { leases.append(BackendLease(id: l.int64(0), ttl: l.int64(1), remainingTTL: l.int64(2))) }
        l.reset()
        var alarms: [Etcdserverpb_AlarmMember] = []
        let a = try c.statement("SELECT member_id, alarm FROM alarms ORDER BY member_id, alarm")
        while try a.step() {
            var alarm = Etcdserverpb_AlarmMember()
            alarm.memberID = UInt64(bitPattern: a.int64(0))
            alarm.alarm = Etcdserverpb_AlarmType(rawValue: Int(a.int64(1))) ?? .none
            alarms.append(alarm)
        }
        a.reset()
        let compacted = try backend.metaInt("compact_rev", on: c) ?? 0
        let finished = try backend.metaInt("compact_finished_rev", on: c) ?? 0
        let meta = BackendMeta(
            consistentIndex: UInt64(try backend.metaInt("consistent_index", on: c) ?? 0), term: term,
            confState: BackendConfState(
                voters: members.filter { !$0.isLearner }.map(\.id), learners: members.filter(\.isLearner).map(\.id)),
            scheduledCompactRevision: compacted > 0 ? compacted : nil,
            finishedCompactRevision: compacted > 0 ? max(finished, 0) : nil)
        return BackendState(
            meta: meta,
            cluster: BackendCluster(version: clusterVersion, members: members, removedMemberIDs: removed),
            leases: leases, alarms: alarms, auth: try AuthTable.read(c))
    }

    static func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }
}
