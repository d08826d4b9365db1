import Bolt
import EtcdSnapshot

/// An etcd snapshot file as `quorumctl snapshot status` and `snapshot restore` (and `--initial-cluster-state`
/// imports of an etcd data directory) read it: the bytes are the file, opened by `EtcdSnapshotReader` with its
/// SHA-256 trailer checked when present (and again with the check skipped, to get past it), its backend state and
/// revisions read as restore reads them, its bbolt structure checked as `snapshot status` checks it, and every
/// bucket walked with the bbolt cursor.
enum SnapshotTarget {
    /// Revisions and bucket entries read per execution at most: enough for every seed, and a bound on the time a
    /// large valid file can take.
    static let limit = 10_000

    static func run(_ bytes: [UInt8]) {
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
}
