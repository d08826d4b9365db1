import EtcdProto
import SwiftProtobuf

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One key of etcd's backend (bbolt) that the auth store owns.
public struct AuthBackendEntry: Sendable, Equatable, Hashable {
    public var bucket: String
    public var key: Data
    public var value: Data

    public init(bucket: String, key: Data, value: Data) {
        self.bucket = bucket
        self.key = key
        self.value = value
    }
}

/// The auth store in etcd's on-disk form, so that it can be saved in Quorum's database, carried in Raft
/// snapshots, and written to or read from etcd-format snapshot files:
///
/// - bucket `auth`: `authEnabled` → one byte, 1 or 0; `authRevision` → the revision as 8 bytes big-endian;
/// - bucket `authUsers`: user name → `authpb.User` protobuf;
/// - bucket `authRoles`: role name → `authpb.Role` protobuf.
extension AuthStore {
    public static let authBucket = "auth"
    public static let usersBucket = "authUsers"
    public static let rolesBucket = "authRoles"
    static let enabledKey = Data("authEnabled".utf8)
    static let revisionKey = Data("authRevision".utf8)

    /// Every entry, ordered by bucket and key (the order bbolt keeps them in), so equal stores give equal lists.
    public func backendEntries() throws(AuthError) -> [AuthBackendEntry] {
        var revisionBytes = Data(count: 8)
        for index in 0..<8 { revisionBytes[index] = UInt8(truncatingIfNeeded: revision >> (56 - 8 * UInt64(index))) }
        var entries = [
            AuthBackendEntry(bucket: Self.authBucket, key: Self.enabledKey, value: Data([isEnabled ? 1 : 0])),
            AuthBackendEntry(bucket: Self.authBucket, key: Self.revisionKey, value: revisionBytes),
        ]
        do {
            for user in allUsers {
                entries.append(
                    AuthBackendEntry(bucket: Self.usersBucket, key: user.name, value: try user.serializedBytes()))
            }
            for role in allRoles {
                entries.append(
                    AuthBackendEntry(bucket: Self.rolesBucket, key: role.name, value: try role.serializedBytes()))
            }
        } catch {
            throw .internal("auth: failed to encode the auth store")
        }
        return entries
    }

    /// Loads a store from backend entries, ignoring entries of other buckets, as etcd's `NewAuthStore` reads its
    /// backend: auth is on only if `authEnabled` is exactly the byte 1; a missing revision starts at 1 (etcd
    /// commits one on start); a user or role is keyed by the name inside its value, as etcd reads them.
    /// A value that does not decode is a corrupt store (etcd panics): `internal`. As etcd's `Recover` does, the
    /// member then calls `enable()` on its token provider if the loaded store is on.
    public init(backendEntries entries: [AuthBackendEntry]) throws(AuthError) {
        var enabled = false
        var revision: UInt64 = 0
        var users: [Authpb_User] = []
        var roles: [Authpb_Role] = []
        for entry in entries {
            switch entry.bucket {
            case Self.authBucket:
                if entry.key == Self.enabledKey {
                    enabled = entry.value == Data([1])
                } else if entry.key == Self.revisionKey {
                    guard entry.value.count == 8 else { throw .internal("auth: corrupt auth revision") }
                    revision = entry.value.reduce(0) { $0 << 8 | UInt64($1) }
                }
            case Self.usersBucket:
                do {
                    users.append(try Authpb_User(serializedBytes: entry.value))
                } catch {
                    throw .internal("auth: corrupt user entry")
                }
            case Self.rolesBucket:
                do {
                    roles.append(try Authpb_Role(serializedBytes: entry.value))
                } catch {
                    throw .internal("auth: corrupt role entry")
                }
            default:
                continue
            }
        }
        self.init(isEnabled: enabled, revision: revision == 0 ? 1 : revision, users: users, roles: roles)
    }
}
