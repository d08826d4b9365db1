import Bolt
import EtcdProto
import Foundation
import SwiftProtobuf

/// Reads an etcd snapshot — from `etcdctl snapshot save` (etcd 3.4 or 3.5), from `EtcdSnapshotWriter`, or a raw
/// `member/snap/db` copied out of a data directory — into the `BackendState` model and a stream of revisions.
///
/// Opening checks the sha256 trailer first, when there is one (the hash covers every byte of the database, so it
/// catches damage that bbolt's structure cannot show, like a flipped bit in a value), then opens the database with
/// `BoltReader`. Revisions are read lazily, a page at a time, in revision order.
public final class EtcdSnapshotReader {
    /// How strict to be about the sha256 trailer.
    public enum HashCheck: Sendable {
        /// Verify the trailer when the file has one; accept a raw database without (the default).
        case verifyIfPresent
        /// Like `etcdctl snapshot restore`: the file must have a trailer, and it must match.
        case require
        /// Like `--skip-hash-check`: do not read the trailer.
        case skip
    }

    /// What the file's end held.
    public enum Trailer: Sendable, Equatable {
        /// A sha256 trailer that matches the database.
        case verified(sha256: [UInt8])
        /// A trailer that was not checked (`HashCheck.skip`).
        case unchecked(sha256: [UInt8])
        /// No trailer: the file is a bare bbolt database, like the `db` file of a data directory.
        case absent
    }

    public let path: String
    public let trailer: Trailer
    /// The bbolt layer, for callers that want the raw buckets.
    public let database: BoltReader

    public init(path: String, hashCheck: HashCheck = .verifyIfPresent) throws(EtcdSnapshotError) {
        self.path = path
        let fileSize: Int64
        do {
            fileSize = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
        } catch {
            throw EtcdSnapshotError(.io, path: path, "cannot open: \(error.localizedDescription)")
        }
        var trailer = Trailer.absent
        if SnapshotTrailer.isPresent(fileSize: fileSize) {
            let stored = try SnapshotTrailer.stored(in: path, fileSize: fileSize)
            if hashCheck == .skip {
                trailer = .unchecked(sha256: stored)
            } else {
                let computed = try SnapshotTrailer.sha256(of: path, length: fileSize - Int64(SnapshotTrailer.size))
                guard computed == stored else {
                    throw EtcdSnapshotError(
                        .hashMismatch, path: path,
                        "sha256 mismatch: the trailer says \(hex(stored)) but the database hashes to \(hex(computed))",
                        offset: fileSize - Int64(SnapshotTrailer.size))
                }
                trailer = .verified(sha256: computed)
            }
        } else if hashCheck == .require {
            throw EtcdSnapshotError(
                .missingHash, path: path,
                "no sha256 trailer (\(fileSize) bytes is not whole pages plus 32); etcdctl would refuse it without "
                    + "--skip-hash-check")
        }
        self.trailer = trailer
        database = try bolt { () throws(BoltError) in try BoltReader(path: path) }
        let databaseBytes = trailer == .absent ? fileSize : fileSize - Int64(SnapshotTrailer.size)
        if databaseBytes % Int64(database.pageSize) != 0 {
            throw EtcdSnapshotError(
                .unexpectedSize, path: path,
                "\(fileSize) bytes is neither whole \(database.pageSize)-byte pages (a bare database) nor pages plus "
                    + "a 32-byte sha256 trailer: the file was cut short or appended to", offset: fileSize)
        }
    }

    /// Everything but the key revisions: meta, cluster, leases, alarms, auth, and entries the model does not know.
    public func state() throws(EtcdSnapshotError) -> BackendState {
        var state = BackendState()
        // A backend written before auth or compaction ever happened lacks those keys; start from "absent".
        state.auth.revision = 0
        let names = try bolt { () throws(BoltError) in try database.bucketNames() }
        for name in names where name != EtcdSchema.keyBucket {
            var cursor = try bolt(bucket: name) { () throws(BoltError) in try database.cursor(bucket: name) }
            while let entry = try bolt(bucket: name, { () throws(BoltError) in try cursor.next() }) {
                if entry.isBucket {
                    throw EtcdSnapshotError(
                        .invalidRecord, path: path, "etcd's buckets hold no nested buckets", bucket: name,
                        key: entry.key)
                }
                try BackendEncoding.decode(bucket: name, key: entry.key, value: entry.value, into: &state, path: path)
            }
        }
        return state
    }

    /// A cursor over the key bucket, in revision order. An empty key space (or no key bucket) yields nothing.
    public func revisions() throws(EtcdSnapshotError) -> RevisionCursor {
        let hasKeys = try bolt { () throws(BoltError) in try database.hasBucket(EtcdSchema.keyBucket) }
        guard hasKeys else { return RevisionCursor(path: path, cursor: nil) }
        let cursor = try bolt(bucket: EtcdSchema.keyBucket) { () throws(BoltError) in
            try database.cursor(bucket: EtcdSchema.keyBucket)
        }
        return RevisionCursor(path: path, cursor: cursor)
    }

    /// Calls `body` with each revision in order.
    public func forEachRevision(_ body: (KeyRevision) throws -> Void) throws {
        var cursor = try revisions()
        while let revision = try cursor.next() { try body(revision) }
    }
}

/// Yields the key bucket's revisions one at a time, decoding each as it is read.
public struct RevisionCursor {
    let path: String
    var cursor: BoltCursor?

    public mutating func next() throws(EtcdSnapshotError) -> KeyRevision? {
        guard var current = cursor else { return nil }
        cursor = nil
        defer { cursor = current }
        guard let entry = try bolt(bucket: EtcdSchema.keyBucket, { () throws(BoltError) in try current.next() }) else {
            return nil
        }
        guard let revision = BackendRevision(keyBytes: entry.key) else {
            throw EtcdSnapshotError(
                .invalidRecord, path: path,
                "not a revision: key bucket keys are 8 bytes main, '_', 8 bytes sub, and an optional 't'",
                bucket: EtcdSchema.keyBucket, key: entry.key, pageID: current.pageID)
        }
        let keyValue: Mvccpb_KeyValue
        do {
            keyValue = try Mvccpb_KeyValue(serializedBytes: entry.value)
        } catch {
            throw EtcdSnapshotError(
                .invalidRecord, path: path, "revision \(revision) does not decode as mvccpb.KeyValue: \(error)",
                bucket: EtcdSchema.keyBucket, key: entry.key, pageID: current.pageID)
        }
        return KeyRevision(
            revision: revision, isTombstone: BackendRevision.isTombstone(keyBytes: entry.key), keyValue: keyValue)
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { byte in
        let digits = String(byte, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }.joined()
}
