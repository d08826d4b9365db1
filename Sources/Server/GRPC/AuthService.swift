import EtcdAPI
import EtcdProto
import GRPCCore

/// etcdserverpb.Auth: authentication is not enabled on Quorum yet. Status reports it disabled; the management
/// calls answer Unimplemented rather than pretending to store users.
struct AuthService: Etcdserverpb_Auth.SimpleServiceProtocol {
    let handler: EtcdHandler

    private func unsupported() -> RPCError {
        RPCError(code: .unimplemented, message: "etcdserver: authentication is not supported by this Quorum version")
    }

    func authEnable(request: Etcdserverpb_AuthEnableRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthEnableResponse
    { throw unsupported() }

    func authDisable(request: Etcdserverpb_AuthDisableRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthDisableResponse
    {
        var response = Etcdserverpb_AuthDisableResponse()
        response.header = handler.node.header(revision: handler.node.store.revisions.current)
        return response
    }

    func authStatus(request: Etcdserverpb_AuthStatusRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthStatusResponse
    {
        var response = Etcdserverpb_AuthStatusResponse()
        response.header = handler.node.header(revision: handler.node.store.revisions.current)
        response.enabled = false
        return response
    }

    func authenticate(request: Etcdserverpb_AuthenticateRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthenticateResponse
    {
        throw RPCError(code: .failedPrecondition, message: "etcdserver: authentication is not enabled")
    }

    func userAdd(request: Etcdserverpb_AuthUserAddRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserAddResponse
    { throw unsupported() }

    func userGet(request: Etcdserverpb_AuthUserGetRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserGetResponse
    { throw unsupported() }

    func userList(request: Etcdserverpb_AuthUserListRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserListResponse
    { throw unsupported() }

    func userDelete(request: Etcdserverpb_AuthUserDeleteRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserDeleteResponse
    { throw unsupported() }

    func userChangePassword(request: Etcdserverpb_AuthUserChangePasswordRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserChangePasswordResponse
    { throw unsupported() }

    func userGrantRole(request: Etcdserverpb_AuthUserGrantRoleRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserGrantRoleResponse
    { throw unsupported() }

    func userRevokeRole(request: Etcdserverpb_AuthUserRevokeRoleRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserRevokeRoleResponse
    { throw unsupported() }

    func roleAdd(request: Etcdserverpb_AuthRoleAddRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleAddResponse
    { throw unsupported() }

    func roleGet(request: Etcdserverpb_AuthRoleGetRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleGetResponse
    { throw unsupported() }

    func roleList(request: Etcdserverpb_AuthRoleListRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleListResponse
    { throw unsupported() }

    func roleDelete(request: Etcdserverpb_AuthRoleDeleteRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleDeleteResponse
    { throw unsupported() }

    func roleGrantPermission(request: Etcdserverpb_AuthRoleGrantPermissionRequest, context: ServerContext)
        async throws -> Etcdserverpb_AuthRoleGrantPermissionResponse
    { throw unsupported() }

    func roleRevokePermission(request: Etcdserverpb_AuthRoleRevokePermissionRequest, context: ServerContext)
        async throws -> Etcdserverpb_AuthRoleRevokePermissionResponse
    { throw unsupported() }
}
