import Bolt

/// What `etcdctl snapshot status` (etcd 3.4) and `etcdutl snapshot status` (etcd 3.5) report, computed the same way.
///
/// etcd first runs bbolt's consistency check, then walks every top-level bucket in name order, feeding the bucket
/// name and then each key and value into a CRC-32C: that is the hash. The revision is the main revision of the
/// last key in the key bucket (a tombstone counts), the key count covers the entries of every bucket, and the size
/// is the database's high-water mark in bytes (the trailer is not counted).
public struct SnapshotStatus: Sendable, Hashable, CustomStringConvertible {
    public var hash: UInt32
    public var revision: Int64
    public var totalKey: Int
    public var totalSize: Int64

    public init(hash: UInt32, revision: Int64, totalKey: Int, totalSize: Int64) {
        self.hash = hash
        self.revision = revision
        self.totalKey = totalKey
        self.totalSize = totalSize
    }

    /// The same JSON shape `snapshot status -w json` prints.
    public var description: String {
        "{\"hash\":\(hash),\"revision\":\(revision),\"totalKey\":\(totalKey),\"totalSize\":\(totalSize)}"
    }
}

extension EtcdSnapshotReader {
    /// Computes the status of this snapshot; throws `integrity` when bbolt's check finds problems, as etcd does.
    public func status() throws(EtcdSnapshotError) -> SnapshotStatus {
        let problems = try bolt { () throws(BoltError) in try database.check() }
        guard problems.isEmpty else {
            throw EtcdSnapshotError(
                .integrity, path: path,
                "snapshot file integrity check failed. \(problems.count) errors found: "
                    + problems.prefix(10).joined(separator: "; "))
        }
        var crc = CRC32C()
        var revision: Int64 = 0
        var totalKey = 0
        for name in try bolt({ () throws(BoltError) in try database.bucketNames() }) {
            crc.update(name)
            var cursor = try bolt(bucket: name) { () throws(BoltError) in try database.cursor(bucket: name) }
            let isKeyBucket = name == EtcdSchema.keyBucket
            while let entry = try bolt(bucket: name, { () throws(BoltError) in try cursor.next() }) {
                crc.update(entry.key)
                // bbolt's ForEach hands a nested bucket's value over as nil: nothing to hash.
                if !entry.isBucket { crc.update(entry.value) }
                if isKeyBucket {
                    // etcd decodes the main revision from the first 8 bytes, whatever follows.
                    revision = Int64(bitPattern: entry.key.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
                }
                totalKey += 1
            }
        }
        return SnapshotStatus(hash: crc.value, revision: revision, totalKey: totalKey, totalSize: database.dataSize)
    }
}
