import EtcdProto
import EtcdSnapshot
import Foundation
import MVCC
import Raft
import Storage

/// `quorumctl snapshot restore`: makes a member's data directory from an etcd snapshot (written by etcd 3.4, etcd 3.5
/// or Quorum), as `etcdctl snapshot restore` does for etcd.
///
/// As in etcd, the keys, their whole uncompacted history, leases, alarms and auth come from the snapshot, while the
/// membership comes from the flags: every member of `--initial-cluster` with ids derived from its peer URLs and the
/// cluster token, so restoring each member of a new cluster with the same flags gives them the same cluster. The
/// member starts from a Raft snapshot at index N (the number of members) and term 1 whose configuration is those
/// members, exactly the state etcd's restore leaves.
///
/// Nothing is left behind on failure: the directory is built beside the target and renamed into place last.
public enum SnapshotRestore {
    public struct Options: Sendable {
        public var snapshotPath: String
        public var dataDir: String
        public var name = "default"
        public var initialCluster = "default=http://localhost:2380"
        public var initialClusterToken = "etcd-cluster"
        public var initialAdvertisePeerURLs = ["http://localhost:2380"]
        /// Accept a file without the sha256 trailer or whose trailer does not match (etcd's `--skip-hash-check`).
        public var skipHashCheck = false

        public init(snapshotPath: String, dataDir: String) {
            self.snapshotPath = snapshotPath
            self.dataDir = dataDir
        }
    }

    public struct Summary: Sendable {
        public var revision: Int64
        public var revisions: Int
        public var leases: Int
        public var memberID: UInt64
        public var clusterID: UInt64
        public var members: [MemberInfo]
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    public static func restore(_ options: Options) throws -> Summary {
        let members = try membership(options)
        guard let me = members.first(where: { $0.name == options.name }) else {
            throw Failure("couldn't find local name \"\(options.name)\" in the initial cluster configuration")
        }
        if FileSystem.exists(options.dataDir) { throw Failure("data-dir \"\(options.dataDir)\" exists") }
        let reader: EtcdSnapshotReader
        do {
            reader = try EtcdSnapshotReader(
                path: options.snapshotPath, hashCheck: options.skipHashCheck ? .skip : .require)
        } catch {
            throw Failure("cannot restore from \(options.snapshotPath): \(error)")
        }
        let parent = (options.dataDir as NSString).deletingLastPathComponent
        let staging = (parent.isEmpty ? "." : parent) + "/.restore-\(UInt32.random(in: 0...UInt32.max))"
        do {
            let summary = try build(reader: reader, members: members, me: me, into: staging)
            try FileSystem.rename(staging, to: options.dataDir)
            try FileSystem.syncDirectory(parent.isEmpty ? "." : parent)
            return summary
        } catch {
            try? FileSystem.removeTree(staging)
            if let failure = error as? Failure { throw failure }
            throw Failure("cannot restore from \(options.snapshotPath): \(error)")
        }
    }

    /// The members of `--initial-cluster`, with etcd's ids, and the check etcd makes against this member's
    /// advertised peer URLs.
    static func membership(_ options: Options) throws -> [MemberInfo] {
        var urlsByName: [(String, [String])] = []
        for part in options.initialCluster.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, !pair[0].isEmpty, !pair[1].isEmpty else {
                throw Failure("invalid --initial-cluster entry \"\(part)\": expected name=peerURL")
            }
            if let i = urlsByName.firstIndex(where: { $0.0 == pair[0] }) {
                urlsByName[i].1.append(pair[1])
            } else {
                urlsByName.append((pair[0], [pair[1]]))
            }
        }
        if let mine = urlsByName.first(where: { $0.0 == options.name }),
            Set(mine.1) != Set(options.initialAdvertisePeerURLs)
        {
            throw Failure(
                "--initial-cluster has \(options.name)=\(mine.1.joined(separator: ",")) but missing from "
                    + "--initial-advertise-peer-urls=\(options.initialAdvertisePeerURLs.joined(separator: ","))")
        }
        return urlsByName.map { name, urls in
            MemberInfo(
                id: Identity.memberID(peerURLs: urls, token: options.initialClusterToken), name: name,
                peerURLs: urls, clientURLs: [], isLearner: false)
        }.sorted { $0.id < $1.id }
    }

    private static func build(reader: EtcdSnapshotReader, members: [MemberInfo], me: MemberInfo, into root: String)
        throws -> Summary
    {
        try FileSystem.makeDirectory(root)
        try FileSystem.makeDirectory(root + "/member/snap")
        let state = try reader.state()
        let index = UInt64(members.count)
        let conf = ConfState(voters: members.map(\.id))
        let backend = try Backend(path: root + "/member/snap/db")
        // A fresh file that nobody else opens, and that is thrown away if the restore fails: no journal, no syncs
        // until the end (`makeDurable` below), a larger page cache for the append-only inserts.
        try backend.writer.execute("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;")
        try backend.beginBatch()
        let insert = try backend.writer.statement(
            "INSERT INTO revs(rev, sub, key, create_rev, version, lease, value, vlen) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        )
        var count = 0
        var highest: Int64 = 0
        try reader.forEachRevision { revision in
            let kv = revision.keyValue
            insert.bind(1, revision.revision.main).bind(2, revision.revision.sub).bind(3, kv.key)
            if revision.isTombstone {
                insert.bind(4, Int64(0)).bind(5, Int64(0)).bind(6, Int64(0)).bind(7, Data()).bind(8, Int64(0))
            } else {
                insert.bind(4, kv.createRevision).bind(5, kv.version).bind(6, kv.lease).bind(7, kv.value)
                    .bind(8, Int64(kv.value.count))
            }
            try insert.run()
            highest = max(highest, revision.revision.main)
            count += 1
            // Bounded transactions: SQLite's journal, not memory, holds a large import.
            if count % 50_000 == 0 {
                try backend.commitBatch()
                try backend.beginBatch()
            }
        }
        let compacted = state.meta.scheduledCompactRevision ?? 0
        let finished = state.meta.finishedCompactRevision ?? 0
        let current = max(highest, compacted, 1)
        try backend.setMetaInt("current_rev", current)
        try backend.setMetaInt("compact_rev", compacted)
        try backend.setMetaInt("compact_finished_rev", min(finished, compacted))
        let lease = try backend.writer.statement("INSERT INTO leases(id, ttl, remaining_ttl) VALUES(?1, ?2, ?3)")
        for l in state.leases {
            lease.bind(1, l.id).bind(2, l.ttl).bind(3, l.remainingTTL)
            try lease.run()
        }
        let alarm = try backend.writer.statement("INSERT OR IGNORE INTO alarms(member_id, alarm) VALUES(?1, ?2)")
        for a in state.alarms {
            alarm.bind(1, Int64(bitPattern: a.memberID)).bind(2, Int64(a.alarm.rawValue))
            try alarm.run()
        }
        try AuthTable.write(state.auth, backend: backend)
        let table = try ClusterMembers(backend: backend)
        for member in members { try table.upsert(member, backend: backend) }
        try backend.setMetaInt("consistent_index", Int64(index))
        try backend.setMetaInt("consistent_term", 1)
        try backend.setMetaData("conf_state", Data(ConfStateCodec.encode(conf)))
        try backend.commitBatch()
        try backend.writer.execute("PRAGMA synchronous=FULL; PRAGMA journal_mode=WAL;")
        try backend.makeDurable()
        try File(path: root + "/member/snap/db", writable: true).sync(dataOnly: false)

        let clusterID = Identity.clusterID(memberIDs: members.map(\.id))
        var metadata = Quorumpb_NodeMetadata()
        metadata.memberID = me.id
        metadata.clusterID = clusterID
        metadata.name = me.name
        let wal = try WriteAheadLog.create(in: root + "/member/wal", metadata: try metadata.serializedBytes())
        try wal.saveSnapshot(WALSnapshot(index: index, term: 1, confState: ConfStateCodec.encode(conf)))
        try wal.append(sync: true) { $0.appendHardState(WALHardState(term: 1, vote: 0, commit: index)) }
        return Summary(
            revision: current, revisions: count, leases: state.leases.count,
            memberID: me.id, clusterID: clusterID, members: members)
    }
}
