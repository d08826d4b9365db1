import EtcdSnapshot
import Foundation
import Storage

/// Starting on the data directory etcd's `etcdctl snapshot restore` (3.4) or `etcdutl snapshot restore` (3.5) made:
/// its backend (`member/snap/db`, a bbolt file) is converted once, as `quorumctl snapshot restore` converts a
/// snapshot file, with the membership of this member's flags; etcd's own files stay beside it as
/// `etcd-member.<unix time>` for the operator to delete.
///
/// Only a restored directory is taken: its Raft snapshot (`member/snap/*.snap`) is the one restore writes, at term 1
/// and index N with the N members of the flags as voters, and nothing was applied after it. A directory an etcd
/// member has run on is refused (its state is in its log too, and its membership may have changed since): such a
/// cluster moves with a snapshot (etcdctl snapshot save, then quorumctl or etcdctl snapshot restore).
///
/// The conversion is built in `<data-dir>/.quorum-import` and moved into place last; a start interrupted between
/// the two moves finishes them.
public enum EtcdDataDirImport {
    public struct Imported: Sendable {
        public var revision: Int64
        public var members: Int
        /// Where etcd's files were moved.
        public var etcdFiles: String
    }

    /// bbolt's magic number, in each of the file's two meta pages (little-endian, at byte 16 of page 0).
    static let boltMagic: [UInt8] = [0xED, 0xDA, 0x0C, 0xED]

    /// Whether `path` is a bbolt file (etcd's backend) rather than Quorum's SQLite database.
    public static func isBolt(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 20), head.count == 20 else { return false }
        return Array(head[16..<20]) == boltMagic
    }

    /// Converts `config.dataDir` if it holds etcd's backend; nil if there was nothing to convert.
    public static func importIfNeeded(_ config: NodeConfig) throws -> Imported? {
        let dataDir = config.dataDir
        let staging = dataDir + "/.quorum-import"
        if FileSystem.exists(staging + "/member") && !FileSystem.exists(dataDir + "/member") {
            try FileSystem.rename(staging + "/member", to: dataDir + "/member")
            try? FileSystem.removeTree(staging)
            try FileSystem.syncDirectory(dataDir)
            return nil
        }
        guard isBolt(config.backendPath) else { return nil }
        if config.walDir != nil {
            throw SnapshotRestore.Failure(
                "data-dir \"\(dataDir)\" holds etcd's files: start once without --wal-dir to convert it, or migrate "
                    + "with a snapshot (etcdctl snapshot save, quorumctl snapshot restore)")
        }
        var options = SnapshotRestore.Options(snapshotPath: config.backendPath, dataDir: staging)
        options.name = config.name
        options.initialCluster = config.initialCluster.flatMap { member in
            member.peerURLs.map { "\(member.name)=\($0)" }
        }.joined(separator: ",")
        options.initialClusterToken = config.initialClusterToken
        options.initialAdvertisePeerURLs = config.advertisePeerURLs
        options.skipHashCheck = true
        let expected = Set(try SnapshotRestore.membership(options).map(\.id))
        let migrate =
            "migrate it with a snapshot (etcdctl snapshot save, quorumctl snapshot restore) instead, "
            + "see docs/OPERATIONS.md"
        let snapDir = dataDir + "/member/snap"
        guard let snapName = ((try? FileSystem.list(snapDir)) ?? []).filter({ $0.hasSuffix(".snap") }).max(),
            let snap = RaftSnapFile(
                bytes: Array((try? Data(contentsOf: URL(fileURLWithPath: snapDir + "/" + snapName))) ?? Data()))
        else {
            throw SnapshotRestore.Failure(
                "data-dir \"\(dataDir)\" holds etcd's files but no Raft snapshot written by etcdctl snapshot restore: "
                    + migrate)
        }
        let consistentIndex: UInt64
        do {
            consistentIndex = try EtcdSnapshotReader(path: config.backendPath, hashCheck: .skip).state().meta
                .consistentIndex
        } catch {
            throw SnapshotRestore.Failure("data-dir \"\(dataDir)\": cannot read etcd's backend: \(error)")
        }
        guard snap.term == 1, snap.index == UInt64(snap.voters.count), consistentIndex <= snap.index else {
            throw SnapshotRestore.Failure(
                "data-dir \"\(dataDir)\" is an etcd member's, not one etcdctl snapshot restore wrote: " + migrate)
        }
        guard Set(snap.voters) == expected else {
            func hex(_ ids: some Sequence<UInt64>) -> String {
                ids.sorted().map { String($0, radix: 16) }.joined(separator: ",")
            }
            throw SnapshotRestore.Failure(
                "data-dir \"\(dataDir)\" holds an etcd member whose cluster has members [\(hex(snap.voters))], not the "
                    + "[\(hex(expected))] of --initial-cluster and --initial-cluster-token: restore it with the flags "
                    + "the member starts with")
        }
        try? FileSystem.removeTree(staging)
        let summary = try SnapshotRestore.restore(options)
        let kept = dataDir + "/etcd-member.\(Int(Date().timeIntervalSince1970))"
        try FileSystem.rename(dataDir + "/member", to: kept)
        try FileSystem.rename(staging + "/member", to: dataDir + "/member")
        try? FileSystem.removeTree(staging)
        try FileSystem.syncDirectory(dataDir)
        return Imported(revision: summary.revision, members: summary.members.count, etcdFiles: kept)
    }
}

/// The parts of etcd's Raft snapshot file (`snappb.Snapshot` around `raftpb.Snapshot`) the import checks: its
/// index, term and voters. Nil when the file is not one (or its checksum does not match).
struct RaftSnapFile {
    var index: UInt64 = 0
    var term: UInt64 = 0
    var voters: [UInt64] = []

    init?(bytes: [UInt8]) {
        // snappb.Snapshot: crc = 1 (CRC-32C of data), data = 2.
        guard let outer = Self.fields(bytes[...]), let data = outer[2]?.first?.bytes,
            let crc = outer[1]?.first?.value, UInt64(CRC32C.checksum(data)) == crc
        else { return nil }
        // raftpb.Snapshot: metadata = 2; SnapshotMetadata: conf_state = 1, index = 2, term = 3.
        guard let snapshot = Self.fields(data), let metadata = snapshot[2]?.first?.bytes,
            let meta = Self.fields(metadata)
        else { return nil }
        index = meta[2]?.first?.value ?? 0
        term = meta[3]?.first?.value ?? 0
        // ConfState: voters = 1, repeated uint64, packed or not.
        if let conf = meta[1]?.first?.bytes, let state = Self.fields(conf) {
            for field in state[1] ?? [] {
                if let value = field.value {
                    voters.append(value)
                } else if var packed = field.bytes {
                    while !packed.isEmpty, let value = Self.varint(&packed) { voters.append(value) }
                }
            }
        }
    }

    struct Field {
        var value: UInt64?
        var bytes: ArraySlice<UInt8>?
    }

    static func varint(_ bytes: inout ArraySlice<UInt8>) -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = bytes.popFirst() {
            guard shift < 64 else { return nil }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        return nil
    }

    /// The fields of a message by number; nil if it does not parse.
    static func fields(_ message: ArraySlice<UInt8>) -> [UInt64: [Field]]? {
        var rest = message
        var out: [UInt64: [Field]] = [:]
        while !rest.isEmpty {
            guard let key = varint(&rest) else { return nil }
            let number = key >> 3
            switch key & 7 {
            case 0:
                guard let value = varint(&rest) else { return nil }
                out[number, default: []].append(Field(value: value))
            case 1:
                guard rest.count >= 8 else { return nil }
                rest = rest.dropFirst(8)
            case 2:
                guard let length = varint(&rest), length <= UInt64(rest.count) else { return nil }
                out[number, default: []].append(Field(bytes: rest.prefix(Int(length))))
                rest = rest.dropFirst(Int(length))
            case 5:
                guard rest.count >= 4 else { return nil }
                rest = rest.dropFirst(4)
            default:
                return nil
            }
        }
        return out
    }
}
