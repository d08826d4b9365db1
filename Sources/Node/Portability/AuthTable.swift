import EtcdProto
import EtcdSnapshot
import Foundation
import MVCC
import Storage

/// The auth store as the database keeps it: the rows of etcd's three auth buckets (`auth`: `authEnabled`,
/// `authRevision`; `authUsers`: name → `authpb.User`; `authRoles`: name → `authpb.Role`), byte for byte, in one
/// table. Keeping etcd's encoding means a snapshot carries users and roles to etcd and back unchanged.
enum AuthTable {
    static func read(_ c: SQLiteConnection) throws -> BackendAuth {
        var auth = BackendAuth()
        let q = try c.statement("SELECT bucket, key, value FROM auth ORDER BY bucket, key")
        defer { q.reset() }
        while try q.step() {
            let key = q.data(1)
            let value = q.data(2)
            switch q.string(0) {
            case "auth" where key == Data("authEnabled".utf8):
                auth.enabled = value.first == 1
            case "auth" where key == Data("authRevision".utf8) && value.count == 8:
                auth.revision = value.reduce(0) { $0 << 8 | UInt64($1) }
            case "authUsers":
                auth.users.append(try Authpb_User(serializedBytes: value))
            case "authRoles":
                auth.roles.append(try Authpb_Role(serializedBytes: value))
            default:
                continue
            }
        }
        return auth
    }

    /// Replaces the table's contents with `auth` (inside the caller's transaction).
    static func write(_ auth: BackendAuth, backend: Backend) throws {
        try backend.writer.execute("DELETE FROM auth")
        let insert = try backend.writer.statement("INSERT INTO auth(bucket, key, value) VALUES(?1, ?2, ?3)")
        func put(_ bucket: String, _ key: Data, _ value: Data) throws {
            insert.bind(1, bucket).bind(2, key).bind(3, value)
            try insert.run()
        }
        try put("auth", Data("authEnabled".utf8), Data([auth.enabled ? 1 : 0]))
        try put("auth", Data("authRevision".utf8), Data((0..<8).map { UInt8(truncatingIfNeeded: auth.revision >> (56 - 8 * UInt64($0))) }))
        for user in auth.users { try put("authUsers", user.name, try user.serializedBytes()) }
        for role in auth.roles { try put("authRoles", role.name, try role.serializedBytes()) }
    }
}
