import Bolt
import EtcdProto
import Foundation

/// Writes an etcd snapshot: an etcd 3.5-layout bbolt backend followed by the sha256 trailer `etcdctl snapshot
/// restore` checks — the same file `etcdctl snapshot save` produces.
///
/// Key revisions stream in through `append` (in ascending revision order; there can be millions) and go straight
/// to disk through `BoltWriter`; everything else is small and comes as a `BackendState` at `finish`, which writes
/// the other nine buckets (all of them, empty or not, as etcd 3.5 creates them), the meta pages and the trailer.
///
///     let writer = try EtcdSnapshotWriter(path: "/tmp/snapshot.db")
///     for revision in history { try writer.append(revision) }
///     let summary = try writer.finish(state)
public final class EtcdSnapshotWriter {
    public struct Summary: Sendable, Equatable {
        /// The file's size, trailer included.
        public var fileSize: Int64
        /// The bbolt database's size (what `snapshot status` reports as total size).
        public var databaseSize: Int64
        /// The trailer.
        public var sha256: [UInt8]
        public var revisionCount: Int
        /// The last revision written; nil for an empty key space.
        public var lastRevision: BackendRevision?
        /// The most separators the bbolt writer held in memory at once (see `BoltWriter`).
        public var peakRetainedSeparators: Int
    }

    public let path: String
    private let writer: BoltWriter
    private var lastRevision: BackendRevision?
    private var revisionCount = 0

    /// Separators the bbolt writer holds right now: one partly filled branch page per tree level, not one per page.
    public var retainedSeparatorCount: Int { writer.retainedSeparatorCount }
    public var peakRetainedSeparatorCount: Int { writer.peakRetainedSeparatorCount }

    /// Whether `finish` fsyncs the file (see `BoltWriter.durable`).
    public let durable: Bool

    /// Creates (or truncates) the file and opens the key bucket.
    public init(path: String, durable: Bool = true) throws(EtcdSnapshotError) {
        self.path = path
        self.durable = durable
        writer = try bolt { () throws(BoltError) in try BoltWriter(path: path, durable: durable) }
        try bolt(bucket: EtcdSchema.keyBucket) { () throws(BoltError) in try writer.beginBucket(EtcdSchema.keyBucket) }
    }

    /// Adds the next revision. Revisions must strictly ascend by (main, sub), with non-negative numbers.
    public func append(_ revision: KeyRevision) throws(EtcdSnapshotError) {
        let rev = revision.revision
        guard rev.main >= 0, rev.sub >= 0 else {
            throw EtcdSnapshotError(
                .invalidArgument, path: path, "revision \(rev) is negative", bucket: EtcdSchema.keyBucket)
        }
        if let lastRevision, rev <= lastRevision {
            throw EtcdSnapshotError(
                .invalidArgument, path: path, "revisions must ascend: \(rev) follows \(lastRevision)",
                bucket: EtcdSchema.keyBucket)
        }
        let value: [UInt8]
        do {
            value = try revision.keyValue.serializedBytes()
        } catch {
            throw EtcdSnapshotError(
                .invalidRecord, path: path, "cannot encode the key value of revision \(rev): \(error)",
                bucket: EtcdSchema.keyBucket)
        }
        let key = rev.keyBytes(tombstone: revision.isTombstone)
        try bolt(bucket: EtcdSchema.keyBucket) { () throws(BoltError) in try writer.put(key: key, value: value) }
        lastRevision = rev
        revisionCount += 1
    }

    /// Writes the rest of the backend from `state`, closes the database and appends the sha256 trailer.
    public func finish(_ state: BackendState) throws(EtcdSnapshotError) -> Summary {
        try bolt(bucket: EtcdSchema.keyBucket) { () throws(BoltError) in try writer.endBucket() }
        var buckets = try BackendEncoding.entries(of: state, path: path)
        buckets[EtcdSchema.keyBucket] = nil
        for name in EtcdSchema.allBuckets where name != EtcdSchema.keyBucket && buckets[name] == nil {
            buckets[name] = []
        }
        for name in buckets.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            var entries = buckets[name] ?? []
            entries.sort { $0.key.lexicographicallyPrecedes($1.key) }
            for (previous, next) in zip(entries, entries.dropFirst()) where previous.key == next.key {
                throw EtcdSnapshotError(
                    .invalidArgument, path: path, "two entries with the same key", bucket: name, key: next.key)
            }
            try bolt(bucket: name) { () throws(BoltError) in
                try writer.writeBucket(name, entries.map { (key: $0.key, value: $0.value) })
            }
        }
        let bolted = try bolt { () throws(BoltError) in try writer.finish() }
        let digest = try SnapshotTrailer.append(to: path, durable: durable)
        return Summary(
            fileSize: bolted.fileSize + Int64(SnapshotTrailer.size), databaseSize: bolted.fileSize, sha256: digest,
            revisionCount: revisionCount, lastRevision: lastRevision,
            peakRetainedSeparators: bolted.peakRetainedSeparators)
    }

    /// Writes a whole snapshot from a sequence of revisions (consumed once, in order) and the rest of the state.
    @discardableResult
    public static func write(to path: String, state: BackendState, revisions: some Sequence<KeyRevision>)
        throws(EtcdSnapshotError) -> Summary
    {
        let writer = try EtcdSnapshotWriter(path: path)
        for revision in revisions { try writer.append(revision) }
        return try writer.finish(state)
    }
}
