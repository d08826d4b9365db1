import EtcdProto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The name of etcd's super-user and of its all-powerful role. Both are ordinary entries in the store; what makes
/// them special is a handful of rules: AuthEnable needs user `root` holding role `root`, and while auth is on,
/// user `root` cannot be deleted, role `root` cannot be deleted, and `root` cannot lose role `root`. Granting role
/// `root` never needs the role to exist, and a user holding it passes every permission check.
public let rootName = "root"

/// Who sent a request, as etcd's `AuthInfo`: the user name and the auth revision the request was admitted at.
///
/// A simple token resolves to the store's current revision; a JWT carries the revision it was issued at. A request
/// without any identity is `nil` (etcd's empty `AuthInfo`, revision 0), which every check refuses with
/// `user name is empty` while auth is on.
public struct AuthInfo: Sendable, Equatable, Hashable {
    public var username: String
    public var revision: UInt64

    public init(username: String, revision: UInt64) {
        self.username = username
        self.revision = revision
    }
}

/// The replicated state of etcd's authentication and RBAC: the enabled flag, the auth revision, users (with
/// bcrypt hashes) and roles (with key permissions), exactly as etcd persists them.
///
/// A pure value: the Raft apply loop owns one and calls the `mutating` apply functions in log order, so every
/// member reaches the same state. Each function mirrors etcd 3.5's `authStore` method of the same name: the same
/// checks in the same order, the same error, and the auth revision bumped exactly when etcd bumps it. Nothing
/// here reads a clock or a random source; password hashing happens before proposal (``AuthProposal``) and tokens
/// live in a ``TokenProvider`` passed in where etcd touches its token provider.
public struct AuthStore: Sendable {
    /// Whether authentication is on (etcd's `authEnabled` key).
    public internal(set) var isEnabled: Bool
    /// etcd's auth revision: bumped by every change of users, roles or permissions and by AuthDisable (not by
    /// AuthEnable), and compared with the revision a request was admitted at.
    public internal(set) var revision: UInt64
    /// Users by name (raw bytes: etcd compares names as bytes, Swift strings compare by canonical equivalence).
    var users: [Data: Authpb_User]
    /// Roles by name (raw bytes).
    var roles: [Data: Authpb_Role]
    /// Merged read and write intervals per user: etcd's `rangePermCache`, rebuilt after every change.
    var permissions: [Data: UserPermissions] = [:]

    /// A new store, as etcd's `NewAuthStore` makes on an empty backend: disabled, no users or roles, revision 1
    /// (etcd commits its first revision when it finds none).
    public init() {
        self.init(isEnabled: false, revision: 1, users: [], roles: [])
    }

    /// A store with the given contents (the persistence loader and tests use this).
    public init(isEnabled: Bool, revision: UInt64, users: [Authpb_User], roles: [Authpb_Role]) {
        self.isEnabled = isEnabled
        self.revision = revision
        self.users = Dictionary(users.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        self.roles = Dictionary(roles.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        refreshPermissions()
    }

    /// The user with this name, as persisted.
    public func user(named name: String) -> Authpb_User? { users[Data(name.utf8)] }

    /// The role with this name, as persisted.
    public func role(named name: String) -> Authpb_Role? { roles[Data(name.utf8)] }

    /// Every user, in etcd's order (names as bytes, as bbolt iterates its bucket).
    public var allUsers: [Authpb_User] { users.values.sorted { $0.name.lexicographicallyPrecedes($1.name) } }

    /// Every role, in etcd's order (names as bytes).
    public var allRoles: [Authpb_Role] { roles.values.sorted { $0.name.lexicographicallyPrecedes($1.name) } }

    /// etcd's `HasRole`: whether the user exists and holds the role.
    public func hasRole(user: String, role: String) -> Bool {
        guard let user = self.user(named: user) else { return false }
        return user.roles.contains { sameBytes($0, role) }
    }

    /// etcd's `commitRevision`.
    mutating func commitRevision() {
        revision &+= 1
    }

    /// etcd's `refreshRangePermCache`: every change of users or roles rebuilds every user's merged intervals.
    mutating func refreshPermissions() {
        var cache: [Data: UserPermissions] = [:]
        cache.reserveCapacity(users.count)
        for (name, user) in users {
            cache[name] = UserPermissions(user: user, roles: roles)
        }
        permissions = cache
    }
}

extension AuthStore: Equatable {
    /// Two stores are equal when they would persist the same bytes; the permission cache is derived.
    public static func == (lhs: AuthStore, rhs: AuthStore) -> Bool {
        lhs.isEnabled == rhs.isEnabled && lhs.revision == rhs.revision && lhs.users == rhs.users
            && lhs.roles == rhs.roles
    }
}

/// The merged read and write key sets of one user, over all of its roles.
struct UserPermissions: Sendable, Equatable {
    var read: KeyIntervalSet
    var write: KeyIntervalSet

    /// etcd's `getMergedPerms`: a role the user names but that does not exist contributes nothing, and so does a
    /// permission of an unknown type.
    init(user: Authpb_User, roles: [Data: Authpb_Role]) {
        var read: [KeyInterval] = []
        var write: [KeyInterval] = []
        for roleName in user.roles {
            guard let role = roles[Data(roleName.utf8)] else { continue }
            for permission in role.keyPermission {
                guard let interval = KeyInterval(permissionKey: permission.key, rangeEnd: permission.rangeEnd) else {
                    continue
                }
                switch permission.permType {
                case .read: read.append(interval)
                case .write: write.append(interval)
                case .readwrite:
                    read.append(interval)
                    write.append(interval)
                case .UNRECOGNIZED: continue
                }
            }
        }
        self.read = KeyIntervalSet(read)
        self.write = KeyIntervalSet(write)
    }
}

/// Byte equality of two strings (Swift's `==` would equate canonically equivalent but differently encoded names).
func sameBytes(_ a: String, _ b: String) -> Bool {
    a.utf8.elementsEqual(b.utf8)
}

/// Byte order of two strings, as Go's `sort.Strings` orders them.
func bytesPrecede(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}

extension Authpb_User {
    /// etcd's `hasRootRole`.
    var hasRootRole: Bool { roles.contains { sameBytes($0, rootName) } }

    /// Whether the user was added with `--no-password` (`options` may be absent in stores written by etcd 3.2).
    var isNoPassword: Bool { hasOptions && options.noPassword }
}

extension AuthStore: CustomStringConvertible, CustomDebugStringConvertible {
    /// Names only: a store must never print its password hashes (test failures and logs print values).
    public var description: String {
        let userNames = allUsers.map { String(decoding: $0.name, as: UTF8.self) }
        let roleNames = allRoles.map { String(decoding: $0.name, as: UTF8.self) }
        return "AuthStore(enabled: \(isEnabled), revision: \(revision), users: \(userNames), roles: \(roleNames))"
    }

    public var debugDescription: String { description }
}
