import EtcdProto
import Foundation
import SwiftProtobuf

/// The translation between `BackendState` and the entries of etcd's small buckets, both ways. The key bucket is
/// not here: it streams through the writer and the reader.
enum BackendEncoding {
    typealias Entry = (key: [UInt8], value: [UInt8])

    /// The entries of every bucket but `key`, by bucket name, unsorted.
    static func entries(of state: BackendState, path: String) throws(EtcdSnapshotError) -> [[UInt8]: [Entry]] {
        var buckets: [[UInt8]: [Entry]] = [:]
        func add(_ bucket: [UInt8], _ key: [UInt8], _ value: [UInt8]) {
            buckets[bucket, default: []].append((key, value))
        }
        func encode(_ message: some SwiftProtobuf.Message, _ what: String, bucket: [UInt8]) throws(EtcdSnapshotError)
            -> [UInt8]
        {
            do {
                return try message.serializedBytes()
            } catch {
                throw EtcdSnapshotError(.invalidRecord, path: path, "cannot encode \(what): \(error)", bucket: bucket)
            }
        }

        let meta = state.meta
        add(EtcdSchema.metaBucket, EtcdSchema.consistentIndexKey, [UInt8](bigEndian: meta.consistentIndex))
        if let term = meta.term { add(EtcdSchema.metaBucket, EtcdSchema.termKey, [UInt8](bigEndian: term)) }
        if let confState = meta.confState { add(EtcdSchema.metaBucket, EtcdSchema.confStateKey, confState.json) }
        if let scheduled = meta.scheduledCompactRevision {
            add(EtcdSchema.metaBucket, EtcdSchema.scheduledCompactKey, BackendRevision(main: scheduled).keyBytes())
        }
        if let finished = meta.finishedCompactRevision {
            add(EtcdSchema.metaBucket, EtcdSchema.finishedCompactKey, BackendRevision(main: finished).keyBytes())
        }

        for lease in state.leases {
            add(
                EtcdSchema.leaseBucket, lease.keyBytes,
                try encode(lease.message, "lease \(lease.id)", bucket: EtcdSchema.leaseBucket))
        }
        for member in state.cluster.members {
            add(EtcdSchema.membersBucket, BackendMember.keyBytes(member.id), member.json)
        }
        for id in state.cluster.removedMemberIDs {
            add(EtcdSchema.membersRemovedBucket, BackendMember.keyBytes(id), EtcdSchema.removedValue)
        }
        if let version = state.cluster.version {
            add(EtcdSchema.clusterBucket, EtcdSchema.clusterVersionKey, Array(version.utf8))
        }
        for alarm in state.alarms {
            add(EtcdSchema.alarmBucket, try encode(alarm, "an alarm", bucket: EtcdSchema.alarmBucket), [])
        }
        if state.auth.enabled { add(EtcdSchema.authBucket, EtcdSchema.authEnabledKey, [1]) }
        add(EtcdSchema.authBucket, EtcdSchema.authRevisionKey, [UInt8](bigEndian: state.auth.revision))
        for user in state.auth.users {
            let name = String(decoding: user.name, as: UTF8.self)
            add(
                EtcdSchema.authUsersBucket, Array(user.name),
                try encode(user, "user \(name)", bucket: EtcdSchema.authUsersBucket))
        }
        for role in state.auth.roles {
            let name = String(decoding: role.name, as: UTF8.self)
            add(
                EtcdSchema.authRolesBucket, Array(role.name),
                try encode(role, "role \(name)", bucket: EtcdSchema.authRolesBucket))
        }
        for entry in state.otherEntries { add(entry.bucket, entry.key, entry.value) }
        return buckets
    }

    /// Folds one entry of a small bucket into `state`; what the model does not know goes to `otherEntries`.
    static func decode(bucket: [UInt8], key: [UInt8], value: [UInt8], into state: inout BackendState, path: String)
        throws(EtcdSnapshotError)
    {
        func invalid(_ message: String) -> EtcdSnapshotError {
            EtcdSnapshotError(.invalidRecord, path: path, message, bucket: bucket, key: key)
        }
        func integer(_ what: String) throws(EtcdSnapshotError) -> UInt64 {
            guard let number = value.bigEndianUInt64 else {
                throw invalid("\(what) must be 8 big-endian bytes, found \(value.count) bytes")
            }
            return number
        }
        func compaction(_ what: String) throws(EtcdSnapshotError) -> Int64 {
            guard let revision = BackendRevision(keyBytes: value), value.count == 17 else {
                throw invalid("\(what) must be a 17-byte revision, found \(describe(value))")
            }
            return revision.main
        }
        func message<M: SwiftProtobuf.Message>(_ type: M.Type, from bytes: [UInt8], _ what: String)
            throws(EtcdSnapshotError) -> M
        {
            do {
                return try M(serializedBytes: bytes)
            } catch {
                throw invalid("\(what) does not decode as \(M.protoMessageName): \(error)")
            }
        }

        switch (bucket, key) {
        case (EtcdSchema.metaBucket, EtcdSchema.consistentIndexKey):
            state.meta.consistentIndex = try integer("the consistent index")
        case (EtcdSchema.metaBucket, EtcdSchema.termKey):
            state.meta.term = try integer("the term")
        case (EtcdSchema.metaBucket, EtcdSchema.confStateKey):
            do {
                state.meta.confState = try BackendConfState(json: value)
            } catch {
                throw invalid("confState is not raftpb.ConfState JSON: \(error)")
            }
        case (EtcdSchema.metaBucket, EtcdSchema.scheduledCompactKey):
            state.meta.scheduledCompactRevision = try compaction("the scheduled compaction")
        case (EtcdSchema.metaBucket, EtcdSchema.finishedCompactKey):
            state.meta.finishedCompactRevision = try compaction("the finished compaction")
        case (EtcdSchema.leaseBucket, _):
            let lease = BackendLease(try message(Leasepb_Lease.self, from: value, "a lease"))
            guard key == lease.keyBytes else { throw invalid("lease \(lease.id) is stored under another ID") }
            state.leases.append(lease)
        case (EtcdSchema.membersBucket, _):
            let member: BackendMember
            do {
                member = try BackendMember(json: value)
            } catch {
                throw invalid("the member is not etcd's member JSON: \(error)")
            }
            guard BackendMember.id(fromKey: key) == member.id else {
                throw invalid("member \(String(member.id, radix: 16)) is stored under another ID")
            }
            state.cluster.members.append(member)
        case (EtcdSchema.membersRemovedBucket, _):
            guard let id = BackendMember.id(fromKey: key) else { throw invalid("not a hexadecimal member ID") }
            state.cluster.removedMemberIDs.append(id)
        case (EtcdSchema.clusterBucket, EtcdSchema.clusterVersionKey):
            state.cluster.version = String(decoding: value, as: UTF8.self)
        case (EtcdSchema.alarmBucket, _):
            state.alarms.append(try message(Etcdserverpb_AlarmMember.self, from: key, "an alarm key"))
        case (EtcdSchema.authBucket, EtcdSchema.authEnabledKey):
            state.auth.enabled = value == [1]
        case (EtcdSchema.authBucket, EtcdSchema.authRevisionKey):
            state.auth.revision = try integer("the auth revision")
        case (EtcdSchema.authUsersBucket, _):
            state.auth.users.append(try message(Authpb_User.self, from: value, "a user"))
        case (EtcdSchema.authRolesBucket, _):
            state.auth.roles.append(try message(Authpb_Role.self, from: value, "a role"))
        default:
            state.otherEntries.append(BackendEntry(bucket: bucket, key: key, value: value))
        }
    }
}
