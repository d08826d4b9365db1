import EtcdProto

/// Every auth operation etcd 3.5 sends through Raft, as the apply loop receives it.
///
/// etcd proposes all of them, reads included (UserGet, RoleList, AuthStatus...), so that they are answered from
/// the state every member agrees on and checked against the proposer's identity at apply time.
public enum AuthRequest: Sendable {
    case authEnable
    case authDisable
    case authStatus
    /// `simpleTokenPrefix` is what the proposer's ``TokenProvider/generatePrefix()`` returned.
    case authenticate(name: String, simpleTokenPrefix: String)
    case userAdd(Etcdserverpb_AuthUserAddRequest)
    case userDelete(Etcdserverpb_AuthUserDeleteRequest)
    case userChangePassword(Etcdserverpb_AuthUserChangePasswordRequest)
    case userGrantRole(Etcdserverpb_AuthUserGrantRoleRequest)
    case userRevokeRole(Etcdserverpb_AuthUserRevokeRoleRequest)
    case userGet(Etcdserverpb_AuthUserGetRequest)
    case userList
    case roleAdd(Etcdserverpb_AuthRoleAddRequest)
    case roleDelete(Etcdserverpb_AuthRoleDeleteRequest)
    case roleGrantPermission(Etcdserverpb_AuthRoleGrantPermissionRequest)
    case roleRevokePermission(Etcdserverpb_AuthRoleRevokePermissionRequest)
    case roleGet(Etcdserverpb_AuthRoleGetRequest)
    case roleList

    /// etcd's `needAdminPermission`: the operations only role `root` may apply while auth is on. UserGet and
    /// RoleGet are also open to a user asking about itself or a role it holds; Authenticate is open to all.
    public var needsAdminPermission: Bool {
        switch self {
        case .authenticate, .userGet, .roleGet: return false
        default: return true
        }
    }
}

/// The response of an applied ``AuthRequest``, without its header (the integrator fills cluster, member,
/// revision and term as for every response).
public enum AuthResponse: Sendable {
    case authEnable(Etcdserverpb_AuthEnableResponse)
    case authDisable(Etcdserverpb_AuthDisableResponse)
    case authStatus(Etcdserverpb_AuthStatusResponse)
    case authenticate(Etcdserverpb_AuthenticateResponse)
    case userAdd(Etcdserverpb_AuthUserAddResponse)
    case userDelete(Etcdserverpb_AuthUserDeleteResponse)
    case userChangePassword(Etcdserverpb_AuthUserChangePasswordResponse)
    case userGrantRole(Etcdserverpb_AuthUserGrantRoleResponse)
    case userRevokeRole(Etcdserverpb_AuthUserRevokeRoleResponse)
    case userGet(Etcdserverpb_AuthUserGetResponse)
    case userList(Etcdserverpb_AuthUserListResponse)
    case roleAdd(Etcdserverpb_AuthRoleAddResponse)
    case roleDelete(Etcdserverpb_AuthRoleDeleteResponse)
    case roleGrantPermission(Etcdserverpb_AuthRoleGrantPermissionResponse)
    case roleRevokePermission(Etcdserverpb_AuthRoleRevokePermissionResponse)
    case roleGet(Etcdserverpb_AuthRoleGetResponse)
    case roleList(Etcdserverpb_AuthRoleListResponse)
}

extension AuthStore {
    /// Applies one auth entry of the log, as etcd's `authApplierV3` does: first the admin check for the
    /// operations that need it (against `requester`, the identity the proposer resolved; nil for none), then the
    /// operation. `index` is the entry's Raft index (it numbers simple tokens).
    ///
    /// UserGet and RoleGet follow etcd's special rule: a non-root user may read itself and the roles it holds.
    public mutating func apply(
        _ request: AuthRequest, requester: AuthInfo?, index: UInt64, tokens: inout some TokenProvider
    ) throws(AuthError) -> AuthResponse {
        // etcd's applier starts from an empty AuthInfo when the proposal carried no identity.
        let requester = requester ?? AuthInfo(username: "", revision: 0)
        if request.needsAdminPermission {
            try isAdminPermitted(requester)
        }
        switch request {
        case .authEnable:
            return .authEnable(try authEnable(tokens: &tokens))
        case .authDisable:
            return .authDisable(authDisable(tokens: &tokens))
        case .authStatus:
            return .authStatus(authStatus())
        case .authenticate(let name, let prefix):
            return .authenticate(try authenticate(name: name, simpleTokenPrefix: prefix, index: index, tokens: &tokens))
        case .userAdd(let r):
            return .userAdd(try userAdd(r))
        case .userDelete(let r):
            return .userDelete(try userDelete(r, tokens: &tokens))
        case .userChangePassword(let r):
            return .userChangePassword(try userChangePassword(r, tokens: &tokens))
        case .userGrantRole(let r):
            return .userGrantRole(try userGrantRole(r))
        case .userRevokeRole(let r):
            return .userRevokeRole(try userRevokeRole(r))
        case .userGet(let r):
            do throws(AuthError) {
                try isAdminPermitted(requester)
            } catch {
                guard sameBytes(requester.username, r.name) else { throw error }
            }
            return .userGet(try userGet(r))
        case .userList:
            return .userList(userList())
        case .roleAdd(let r):
            return .roleAdd(try roleAdd(r))
        case .roleDelete(let r):
            return .roleDelete(try roleDelete(r))
        case .roleGrantPermission(let r):
            return .roleGrantPermission(try roleGrantPermission(r))
        case .roleRevokePermission(let r):
            return .roleRevokePermission(try roleRevokePermission(r))
        case .roleGet(let r):
            do throws(AuthError) {
                try isAdminPermitted(requester)
            } catch {
                guard hasRole(user: requester.username, role: r.role) else { throw error }
            }
            return .roleGet(try roleGet(r))
        case .roleList:
            return .roleList(roleList())
        }
    }
}
