import Auth
import EtcdAPI
import EtcdProto
import GRPCCore
import Node

/// etcdserverpb.Auth: etcd 3.5's authentication and role-based access control. Every operation goes through the
/// log (see `EtcdHandler+Auth.swift`); who may run it is decided where it is applied.
struct AuthService: Etcdserverpb_Auth.SimpleServiceProtocol {
    let handler: EtcdHandler

    func authEnable(request: Etcdserverpb_AuthEnableRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthEnableResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.authEnable(caller)
        }
    }

    func authDisable(request: Etcdserverpb_AuthDisableRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthDisableResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.authDisable(caller)
        }
    }

    func authStatus(request: Etcdserverpb_AuthStatusRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthStatusResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.authStatus(caller)
        }
    }

    func authenticate(request: Etcdserverpb_AuthenticateRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthenticateResponse
    {
        try await rpc { () async throws(EtcdError) in try await handler.authenticate(request) }
    }

    func userAdd(request: Etcdserverpb_AuthUserAddRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserAddResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.userAdd(request, caller)
        }
    }

    func userGet(request: Etcdserverpb_AuthUserGetRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserGetResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.userGet(request, caller)
        }
    }

    func userList(request: Etcdserverpb_AuthUserListRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserListResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.userList(caller)
        }
    }

    func userDelete(request: Etcdserverpb_AuthUserDeleteRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserDeleteResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.userDelete(request, caller)
        }
    }

    func userChangePassword(request: Etcdserverpb_AuthUserChangePasswordRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserChangePasswordResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.userChangePassword(request, caller)
        }
    }

    func userGrantRole(request: Etcdserverpb_AuthUserGrantRoleRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserGrantRoleResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.userGrantRole(request, caller)
        }
    }

    func userRevokeRole(request: Etcdserverpb_AuthUserRevokeRoleRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserRevokeRoleResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.userRevokeRole(request, caller)
        }
    }

    func roleAdd(request: Etcdserverpb_AuthRoleAddRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleAddResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.roleAdd(request, caller)
        }
    }

    func roleGet(request: Etcdserverpb_AuthRoleGetRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleGetResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.roleGet(request, caller)
        }
    }

    func roleList(request: Etcdserverpb_AuthRoleListRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleListResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.roleList(caller)
        }
    }

    func roleDelete(request: Etcdserverpb_AuthRoleDeleteRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleDeleteResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.roleDelete(request, caller)
        }
    }

    func roleGrantPermission(request: Etcdserverpb_AuthRoleGrantPermissionRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleGrantPermissionResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.roleGrantPermission(request, caller)
        }
    }

    func roleRevokePermission(request: Etcdserverpb_AuthRoleRevokePermissionRequest, context: ServerContext)
        async throws -> Etcdserverpb_AuthRoleRevokePermissionResponse
    {
        try await rpc { () async throws(EtcdError) in
            let caller = try await handler.currentCaller()
            return try await handler.roleRevokePermission(request, caller)
        }
    }
}
