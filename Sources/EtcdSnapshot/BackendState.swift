import EtcdProto
import SwiftProtobuf

/// Everything in an etcd backend except the key revisions, which stream separately (there can be millions).
///
/// This is the neutral form the rest of Quorum produces and consumes: no bbolt, no byte encodings, one field per
/// thing etcd keeps. Entries the reader does not recognise (a newer etcd's keys, unknown buckets) are kept in
/// `otherEntries` so reading a snapshot and writing it again loses nothing.
public struct BackendState: Sendable, Equatable {
    public var meta: BackendMeta
    public var cluster: BackendCluster
    public var leases: [BackendLease]
    /// Raised alarms (`NOSPACE`, `CORRUPT`) and the members that raised them.
    public var alarms: [Etcdserverpb_AlarmMember]
    public var auth: BackendAuth
    public var otherEntries: [BackendEntry]

    public init(
        meta: BackendMeta = BackendMeta(), cluster: BackendCluster = BackendCluster(), leases: [BackendLease] = [],
        alarms: [Etcdserverpb_AlarmMember] = [], auth: BackendAuth = BackendAuth(), otherEntries: [BackendEntry] = []
    ) {
        self.meta = meta
        self.cluster = cluster
        self.leases = leases
        self.alarms = alarms
        self.auth = auth
        self.otherEntries = otherEntries
    }
}

/// The `meta` bucket: how far the backend has applied the Raft log, and compaction progress.
public struct BackendMeta: Sendable, Hashable {
    /// The index of the last Raft entry applied to this backend (`consistent_index`).
    public var consistentIndex: UInt64
    /// The term of that entry (`term`, written by etcd 3.5; nil in etcd 3.4 backends).
    public var term: UInt64?
    /// The Raft configuration (`confState`, etcd 3.5; nil in etcd 3.4 backends).
    public var confState: BackendConfState?
    /// A compaction requested up to this revision (`scheduledCompactRev`); nil when none ever was.
    public var scheduledCompactRevision: Int64?
    /// The last compaction that completed (`finishedCompactRev`). Revisions below it are gone: a scheduled
    /// revision above it means a compaction was interrupted, and etcd resumes it at start-up.
    public var finishedCompactRevision: Int64?

    public init(
        consistentIndex: UInt64 = 0, term: UInt64? = nil, confState: BackendConfState? = nil,
        scheduledCompactRevision: Int64? = nil, finishedCompactRevision: Int64? = nil
    ) {
        self.consistentIndex = consistentIndex
        self.term = term
        self.confState = confState
        self.scheduledCompactRevision = scheduledCompactRevision
        self.finishedCompactRevision = finishedCompactRevision
    }
}

/// The `cluster`, `members` and `members_removed` buckets.
public struct BackendCluster: Sendable, Hashable {
    /// The version the whole cluster runs at (`clusterVersion`, e.g. "3.5.0"); nil before the cluster decided one.
    public var version: String?
    public var members: [BackendMember]
    /// Members that were removed; their IDs may never be reused.
    public var removedMemberIDs: [UInt64]

    public init(version: String? = nil, members: [BackendMember] = [], removedMemberIDs: [UInt64] = []) {
        self.version = version
        self.members = members
        self.removedMemberIDs = removedMemberIDs
    }
}

/// The `auth`, `authUsers` and `authRoles` buckets.
public struct BackendAuth: Sendable, Equatable {
    /// Whether authentication is on (`authEnabled` = 1). The writer writes the key only when true; etcd reads a
    /// missing key as off.
    public var enabled: Bool
    /// Bumped by every auth change, so cached permissions can be invalidated (`authRevision`). A fresh etcd
    /// starts at 1.
    public var revision: UInt64
    public var users: [Authpb_User]
    public var roles: [Authpb_Role]

    public init(enabled: Bool = false, revision: UInt64 = 1, users: [Authpb_User] = [], roles: [Authpb_Role] = []) {
        self.enabled = enabled
        self.revision = revision
        self.users = users
        self.roles = roles
    }
}

/// A raw backend entry that the model does not interpret, kept as bytes.
public struct BackendEntry: Sendable, Hashable {
    public var bucket: [UInt8]
    public var key: [UInt8]
    public var value: [UInt8]

    public init(bucket: [UInt8], key: [UInt8], value: [UInt8]) {
        self.bucket = bucket
        self.key = key
        self.value = value
    }
}

extension BackendState {
    /// The same state with every list in the order the backend stores it (by bucket key), which is the order
    /// `EtcdSnapshotReader` yields. Two states with the same content compare equal once both are canonical.
    public var canonical: BackendState {
        var copy = self
        func byBytes<T>(_ key: @escaping (T) -> [UInt8]) -> (T, T) -> Bool {
            { key($0).lexicographicallyPrecedes(key($1)) }
        }
        copy.leases.sort(by: byBytes(\.keyBytes))
        copy.cluster.members.sort(by: byBytes { BackendMember.keyBytes($0.id) })
        copy.cluster.removedMemberIDs.sort(by: byBytes(BackendMember.keyBytes))
        copy.alarms.sort(by: byBytes { (try? $0.serializedBytes()) ?? [] })
        copy.auth.users.sort(by: byBytes { Array($0.name) })
        copy.auth.roles.sort(by: byBytes { Array($0.name) })
        copy.otherEntries.sort(by: byBytes { $0.bucket + [0] + $0.key })
        return copy
    }
}
