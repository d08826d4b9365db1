import EtcdProto
import Foundation

/// One change to one key: an entry of etcd's key bucket.
///
/// A snapshot holds every revision not yet compacted away, in revision order; the current value of a key is its
/// last revision, unless that one is a tombstone. `keyValue` is what etcd serves for the key at that revision
/// (key, value, create/mod revision, version, lease); for a tombstone etcd stores only the key.
public struct KeyRevision: Sendable, Equatable {
    public var revision: BackendRevision
    /// Whether this change deleted the key (etcd's `t` mark after the revision).
    public var isTombstone: Bool
    public var keyValue: Mvccpb_KeyValue

    public init(revision: BackendRevision, isTombstone: Bool = false, keyValue: Mvccpb_KeyValue) {
        self.revision = revision
        self.isTombstone = isTombstone
        self.keyValue = keyValue
    }

    /// A put: the key's new value as of `revision`.
    public static func put(
        _ key: [UInt8], _ value: [UInt8], revision: BackendRevision, createRevision: Int64, version: Int64,
        lease: Int64 = 0
    ) -> KeyRevision {
        var kv = Mvccpb_KeyValue()
        kv.key = Data(key)
        kv.value = Data(value)
        kv.createRevision = createRevision
        kv.modRevision = revision.main
        kv.version = version
        kv.lease = lease
        return KeyRevision(revision: revision, keyValue: kv)
    }

    /// A delete, stored as etcd does: a tombstone whose value holds only the key.
    public static func tombstone(_ key: [UInt8], revision: BackendRevision) -> KeyRevision {
        var kv = Mvccpb_KeyValue()
        kv.key = Data(key)
        return KeyRevision(revision: revision, isTombstone: true, keyValue: kv)
    }
}
