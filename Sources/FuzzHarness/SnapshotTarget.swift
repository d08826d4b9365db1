import Bolt
import EtcdSnapshot

/// An etcd snapshot file as `quorumctl snapshot status` and `snapshot restore` (and `--initial-cluster-state`
/// imports of an etcd data directory) read it: the bytes are the file, opened by `EtcdSnapshotReader` with its
/// SHA-256 trailer checked when present (and again with the check skipped, to get past it), its backend state and
/// revisions read as restore reads them, its bbolt structure checked as `snapshot status` checks it, and every
/// bucket walked with the bbolt cursor.
///
/// For inputs of even length, the two meta pages' FNV-64a checksums are recomputed before the file is written, so
/// that the fuzzer reaches what the meta pages point at (root, freelist, high-water mark) past the checksums; odd
/// lengths keep the bytes as they are, checksums included.
enum SnapshotTarget {
    /// Revisions and bucket entries read per execution at most: enough for every seed, and a bound on the time a
    /// large valid file can take.
    static let limit = 10_000

    static func run(_ input: [UInt8]) {
        var bytes = input
        if bytes.count % 2 == 0 { fixMetaChecksums(&bytes) }
        let path = Scratch.path("snapshot.db")
        Scratch.write(bytes, to: path)
        if let reader = try? EtcdSnapshotReader(path: path, hashCheck: .verifyIfPresent) {
            _ = try? reader.status()
        }
        guard let reader = try? EtcdSnapshotReader(path: path, hashCheck: .skip) else { return }
        _ = try? reader.state()
        if var revisions = try? reader.revisions() {
            var count = 0
            while count < limit, let revision = try? revisions.next() {
                _ = revision.keyValue
                count += 1
            }
        }
        let database = reader.database
        _ = try? database.check()
        _ = try? database.freePageIDs()
        guard let names = try? database.bucketNames() else { return }
        var count = 0
        for name in names {
            guard var cursor = try? database.cursor(bucket: name) else { continue }
            while count < limit, let entry = try? cursor.next() {
                _ = entry.isBucket
                count += 1
            }
        }
    }

    /// Rewrites the checksum of the meta pages at offset 0 and at the page size meta 0 declares (bbolt's layout: a
    /// 16-byte page header, then 56 bytes of fields and their FNV-64a).
    static func fixMetaChecksums(_ bytes: inout [UInt8]) {
        func fix(at page: Int) {
            let start = page + 16
            guard start + 64 <= bytes.count else { return }
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in bytes[start..<(start + 56)] {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
            for i in 0..<8 { bytes[start + 56 + i] = UInt8(truncatingIfNeeded: hash >> (8 * UInt64(i))) }
        }
        fix(at: 0)
        guard bytes.count >= 16 + 12 else { return }
        let pageSize = Int(bytes[24]) | Int(bytes[25]) << 8 | Int(bytes[26]) << 16 | Int(bytes[27]) << 24
        fix(at: pageSize >= 512 && pageSize <= 65536 ? pageSize : 4096)
    }
}
