import EtcdProto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Role management, applied in log order on every member (etcd 3.5's `authStore.Role*`).
extension AuthStore {
    /// RoleAdd. A new role has no permissions, so the permission cache need not change.
    public mutating func roleAdd(_ request: Etcdserverpb_AuthRoleAddRequest) throws(AuthError)
        -> Etcdserverpb_AuthRoleAddResponse
    {
        guard !request.name.isEmpty else { throw .roleEmpty }
        let name = Data(request.name.utf8)
        guard roles[name] == nil else { throw .roleAlreadyExist }
        var role = Authpb_Role()
        role.name = name
        roles[name] = role
        commitRevision()
        return Etcdserverpb_AuthRoleAddResponse()
    }

    /// RoleDelete. While auth is on, role `root` cannot be deleted. The role is revoked from every user holding it.
    public mutating func roleDelete(_ request: Etcdserverpb_AuthRoleDeleteRequest) throws(AuthError)
        -> Etcdserverpb_AuthRoleDeleteResponse
    {
        if isEnabled && sameBytes(request.role, rootName) { throw .invalidAuthMgmt }
        let name = Data(request.role.utf8)
        guard roles.removeValue(forKey: name) != nil else { throw .roleNotFound }

        for (userName, user) in users {
            let remaining = user.roles.filter { !sameBytes($0, request.role) }
            guard remaining.count != user.roles.count else { continue }
            var updated = Authpb_User()
            updated.name = user.name
            updated.password = user.password
            if user.hasOptions { updated.options = user.options }
            updated.roles = remaining
            users[userName] = updated
        }

        commitRevision()
        refreshPermissions()
        return Etcdserverpb_AuthRoleDeleteResponse()
    }

    /// RoleGrantPermission. The permission must be present (`permission not given`) and name a usable range
    /// (etcd 3.5's `isValidPermissionRange`: a non-empty key, and an empty range end, `"\0"`, or a range end
    /// above the key; anything else is `invalid auth management`).
    ///
    /// Permissions stay sorted by key. As in etcd, an existing permission with the same key and range end only
    /// changes its type, found by looking at the first permission whose key is not below the new key; a second
    /// permission on the same key with another range end is appended after the existing ones.
    public mutating func roleGrantPermission(_ request: Etcdserverpb_AuthRoleGrantPermissionRequest) throws(AuthError)
        -> Etcdserverpb_AuthRoleGrantPermissionResponse
    {
        guard request.hasPerm else { throw .permissionNotGiven }
        let permission = request.perm
        guard Self.isValidPermissionRange(key: permission.key, rangeEnd: permission.rangeEnd) else {
            throw .invalidAuthMgmt
        }
        let name = Data(request.name.utf8)
        guard var role = roles[name] else { throw .roleNotFound }

        let index =
            role.keyPermission.firstIndex { !$0.key.lexicographicallyPrecedes(permission.key) }
            ?? role.keyPermission.endIndex
        if index < role.keyPermission.endIndex && role.keyPermission[index].key == permission.key
            && role.keyPermission[index].rangeEnd == permission.rangeEnd
        {
            role.keyPermission[index].permType = permission.permType
        } else {
            var added = Authpb_Permission()
            added.key = permission.key
            added.rangeEnd = permission.rangeEnd
            added.permType = permission.permType
            role.keyPermission.append(added)
            // Stable, so equal keys keep their grant order (Go's sort.Sort is stable for the short lists roles hold).
            role.keyPermission = role.keyPermission.enumerated()
                .sorted { lhs, rhs in
                    if lhs.element.key == rhs.element.key { return lhs.offset < rhs.offset }
                    return lhs.element.key.lexicographicallyPrecedes(rhs.element.key)
                }
                .map(\.element)
        }
        roles[name] = role

        commitRevision()
        refreshPermissions()
        return Etcdserverpb_AuthRoleGrantPermissionResponse()
    }

    /// RoleRevokePermission: removes every permission with exactly this key and range end, whatever its type.
    public mutating func roleRevokePermission(_ request: Etcdserverpb_AuthRoleRevokePermissionRequest) throws(AuthError)
        -> Etcdserverpb_AuthRoleRevokePermissionResponse
    {
        let name = Data(request.role.utf8)
        guard let role = roles[name] else { throw .roleNotFound }
        let remaining = role.keyPermission.filter { $0.key != request.key || $0.rangeEnd != request.rangeEnd }
        guard remaining.count != role.keyPermission.count else { throw .permissionNotGranted }

        var updated = Authpb_Role()
        updated.name = role.name
        updated.keyPermission = remaining
        roles[name] = updated

        commitRevision()
        refreshPermissions()
        return Etcdserverpb_AuthRoleRevokePermissionResponse()
    }

    /// RoleGet: the role's permissions, in stored (key) order. Who may ask is decided in
    /// ``apply(_:requester:index:tokens:)``.
    public func roleGet(_ request: Etcdserverpb_AuthRoleGetRequest) throws(AuthError)
        -> Etcdserverpb_AuthRoleGetResponse
    {
        guard let role = role(named: request.role) else { throw .roleNotFound }
        var response = Etcdserverpb_AuthRoleGetResponse()
        response.perm = role.keyPermission
        return response
    }

    /// RoleList: every role name, in byte order.
    public func roleList() -> Etcdserverpb_AuthRoleListResponse {
        var response = Etcdserverpb_AuthRoleListResponse()
        response.roles = allRoles.map { String(decoding: $0.name, as: UTF8.self) }
        return response
    }

    /// etcd 3.5's `isValidPermissionRange`.
    static func isValidPermissionRange(key: Data, rangeEnd: Data) -> Bool {
        guard !key.isEmpty else { return false }
        if rangeEnd.isEmpty { return true }
        if key.lexicographicallyPrecedes(rangeEnd) { return true }
        return rangeEnd.count == 1 && rangeEnd.first == 0
    }
}
