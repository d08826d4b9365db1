import EtcdProto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// User management, applied in log order on every member (etcd 3.5's `authStore.User*`).
extension AuthStore {
    /// UserAdd. The password arrives hashed: ``AuthProposal`` put the base64 of its bcrypt hash in
    /// `hashed_password` on the proposing member, as etcd 3.5 does. A user added with `options.no_password` stores no
    /// password at all (it can only authenticate by client certificate).
    public mutating func userAdd(_ request: Etcdserverpb_AuthUserAddRequest) throws(AuthError)
        -> Etcdserverpb_AuthUserAddResponse
    {
        guard !request.name.isEmpty else { throw .userEmpty }
        let name = Data(request.name.utf8)
        guard users[name] == nil else { throw .userAlreadyExist }

        // etcd stores explicit (possibly default) options, so the persisted message always has field 4.
        let options = request.hasOptions ? request.options : Authpb_UserAddOptions()
        var user = Authpb_User()
        user.name = name
        user.options = options
        if !options.noPassword {
            user.password = try Self.storedPassword(password: request.password, hashed: request.hashedPassword)
        }
        users[name] = user

        commitRevision()
        refreshPermissions()
        return Etcdserverpb_AuthUserAddResponse()
    }

    /// UserDelete. While auth is on, `root` cannot be deleted. The user's tokens stop working.
    public mutating func userDelete(
        _ request: Etcdserverpb_AuthUserDeleteRequest, tokens: inout some TokenProvider
    ) throws(AuthError) -> Etcdserverpb_AuthUserDeleteResponse {
        if isEnabled && sameBytes(request.name, rootName) { throw .invalidAuthMgmt }
        let name = Data(request.name.utf8)
        guard users.removeValue(forKey: name) != nil else { throw .userNotFound }

        commitRevision()
        refreshPermissions()
        tokens.invalidateUser(request.name)
        return Etcdserverpb_AuthUserDeleteResponse()
    }

    /// UserChangePassword. A `--no-password` user keeps no password whatever is sent; the user's tokens stop
    /// working either way.
    public mutating func userChangePassword(
        _ request: Etcdserverpb_AuthUserChangePasswordRequest, tokens: inout some TokenProvider
    ) throws(AuthError) -> Etcdserverpb_AuthUserChangePasswordResponse {
        let name = Data(request.name.utf8)
        guard let existing = users[name] else { throw .userNotFound }

        var password = Data()
        if !existing.isNoPassword {
            password = try Self.storedPassword(password: request.password, hashed: request.hashedPassword)
        }
        var updated = Authpb_User()
        updated.name = name
        updated.roles = existing.roles
        updated.password = password
        if existing.hasOptions { updated.options = existing.options }
        users[name] = updated

        commitRevision()
        refreshPermissions()
        tokens.invalidateUser(request.name)
        return Etcdserverpb_AuthUserChangePasswordResponse()
    }

    /// UserGrantRole. Role `root` need not exist as a role; any other role must. Granting a role the user already
    /// holds succeeds without bumping the revision. Roles stay sorted by bytes, as etcd keeps them.
    public mutating func userGrantRole(_ request: Etcdserverpb_AuthUserGrantRoleRequest) throws(AuthError)
        -> Etcdserverpb_AuthUserGrantRoleResponse
    {
        let name = Data(request.user.utf8)
        guard var user = users[name] else { throw .userNotFound }
        if !sameBytes(request.role, rootName) && roles[Data(request.role.utf8)] == nil { throw .roleNotFound }
        if user.roles.contains(where: { sameBytes($0, request.role) }) {
            return Etcdserverpb_AuthUserGrantRoleResponse()
        }
        user.roles.append(request.role)
        user.roles.sort(by: bytesPrecede)
        users[name] = user

        commitRevision()
        refreshPermissions()
        return Etcdserverpb_AuthUserGrantRoleResponse()
    }

    /// UserRevokeRole. While auth is on, `root` cannot lose role `root`.
    public mutating func userRevokeRole(_ request: Etcdserverpb_AuthUserRevokeRoleRequest) throws(AuthError)
        -> Etcdserverpb_AuthUserRevokeRoleResponse
    {
        if isEnabled && sameBytes(request.name, rootName) && sameBytes(request.role, rootName) {
            throw .invalidAuthMgmt
        }
        let name = Data(request.name.utf8)
        guard let user = users[name] else { throw .userNotFound }
        let remaining = user.roles.filter { !sameBytes($0, request.role) }
        guard remaining.count != user.roles.count else { throw .roleNotGranted }

        // etcd rebuilds the user from name, password and options, so unknown fields are dropped here too.
        var updated = Authpb_User()
        updated.name = user.name
        updated.password = user.password
        if user.hasOptions { updated.options = user.options }
        updated.roles = remaining
        users[name] = updated

        commitRevision()
        refreshPermissions()
        return Etcdserverpb_AuthUserRevokeRoleResponse()
    }

    /// UserGet: the user's roles, in stored order. Who may ask is decided in ``apply(_:requester:index:tokens:)``.
    public func userGet(_ request: Etcdserverpb_AuthUserGetRequest) throws(AuthError)
        -> Etcdserverpb_AuthUserGetResponse
    {
        guard let user = user(named: request.name) else { throw .userNotFound }
        var response = Etcdserverpb_AuthUserGetResponse()
        response.roles = user.roles
        return response
    }

    /// UserList: every user name, in byte order.
    public func userList() -> Etcdserverpb_AuthUserListResponse {
        var response = Etcdserverpb_AuthUserListResponse()
        response.users = allUsers.map { String(decoding: $0.name, as: UTF8.self) }
        return response
    }

    /// etcd 3.5's `selectPassword` at apply: the hash travels base64-encoded in `hashed_password`. A request that
    /// still carries the plaintext is refused (see ``AuthError/passwordNotHashed``); a hash that is not base64 is
    /// etcd's `ErrNoPasswordUser`. Like Go's decoder, line breaks inside the base64 text are ignored.
    static func storedPassword(password: String, hashed: String) throws(AuthError) -> Data {
        if !password.isEmpty && hashed.isEmpty { throw .passwordNotHashed }
        let text = hashed.filter { $0 != "\r" && $0 != "\n" && $0 != "\r\n" }
        guard let decoded = Data(base64Encoded: text) else { throw .noPasswordUser }
        return decoded
    }
}
