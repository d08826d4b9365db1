import Auth
import EtcdProto
import Foundation
import Node

/// What a transport knows of who sent a request: the token it carried (gRPC metadata `token`, the gateway's
/// `Authorization` header) and the common name of the verified client certificate of its connection.
public struct Credentials: Sendable, Equatable {
    public var token: String?
    public var commonName: String?

    public init(token: String? = nil, commonName: String? = nil) {
        self.token = token
        self.commonName = commonName
    }
}

/// On whose behalf a handler method runs.
public enum Caller: Sendable, Equatable {
    /// The member itself (auto compaction, health probes, requests a peer forwards): no checks, as etcd's
    /// `WithRoot` or its checks that pass on a context without credentials.
    case member
    /// A client, with the identity its credentials resolved to (nil: none given, or auth is off).
    case client(AuthInfo?)

    /// A client while auth is off: every check passes.
    public static let anyone = Caller.client(nil)

    var info: AuthInfo? {
        if case .client(let info) = self { return info }
        return nil
    }
}

extension EtcdHandler {
    // MARK: Identity

    /// Resolves credentials to a caller (etcd's `AuthInfoFromCtx`). Answers at once in the common cases; a simple
    /// token assigned at an index this member has not applied yet waits for that index first. `completion` runs
    /// on the caller's thread or on the apply loop's.
    public func resolve(
        _ credentials: Credentials?, completion: @escaping @Sendable (Result<Caller, EtcdError>) -> Void
    ) {
        guard let credentials, node.auth.isEnabled else { return completion(.success(.anyone)) }
        if let token = credentials.token, let index = SimpleTokenProvider.index(of: Self.bare(token)),
            index > node.applied
        {
            node.waitApplied(index) { error in
                if let error { return completion(.failure(error)) }
                completion(Result { () throws(EtcdError) in try self.resolveNow(credentials) })
            }
            return
        }
        completion(Result { () throws(EtcdError) in try resolveNow(credentials) })
    }

    /// The async form of `resolve(_:completion:)`.
    public func resolve(_ credentials: Credentials?) async throws(EtcdError) -> Caller {
        guard let credentials, node.auth.isEnabled else { return .anyone }
        return try await withCheckedContinuation { continuation in
            resolve(credentials) { continuation.resume(returning: $0) }
        }.get()
    }

    private func resolveNow(_ credentials: Credentials) throws(EtcdError) -> Caller {
        do throws(AuthError) {
            return .client(try node.auth.resolve(token: credentials.token, commonName: credentials.commonName))
        } catch {
            throw EtcdError(error)
        }
    }

    private static func bare(_ token: String) -> String {
        token.hasPrefix("Bearer ") ? String(token.dropFirst("Bearer ".count)) : token
    }

    // MARK: Checks

    /// A key-independent requirement (`ServerCall`): role root, or some identity.
    public func authorize(_ call: ServerCall, _ caller: Caller) throws(EtcdError) {
        guard case .client(let info) = caller, node.auth.isEnabled else { return }
        do throws(AuthError) {
            try node.auth.store.checkCall(call, info)
        } catch {
            switch call {
            case .defragment, .snapshot, .hash, .hashKV:
                // etcd's maintenance server returns the auth package's own error, which no table maps to a gRPC
                // status: clients see code Unknown and `auth: permission denied` (etcd 3.4 and 3.5 alike).
                let bare = error.message.hasPrefix("etcdserver: ") ? error.message.dropFirst(12) : error.message[...]
                throw EtcdError(.unknown, "auth: \(bare)")
            default:
                throw EtcdError(error)
            }
        }
    }

    /// Runs a check on the current store, for a client while auth is on.
    func check(_ caller: Caller, _ body: (AuthStore, AuthInfo?) throws(AuthError) -> Void) throws(EtcdError) {
        guard case .client(let info) = caller, node.auth.isEnabled else { return }
        do throws(AuthError) {
            try body(node.auth.store, info)
        } catch {
            throw EtcdError(error)
        }
    }

    /// Carries the caller in a proposal: the apply loop checks writes against it.
    func stamp(_ request: inout Quorumpb_RaftRequest, _ caller: Caller) {
        switch caller {
        case .member:
            request.internal = true
        case .client(let info?):
            request.authUsername = info.username
            request.authRevision = info.revision
        case .client(nil):
            break
        }
    }

    /// The keys attached to a lease (nil: no such lease).
    func leaseKeys(_ id: Int64) -> [Data]? {
        node.leases.timeToLive(id)?.keys
    }

    // MARK: The Auth service

    /// Proposes an auth operation on behalf of `caller` and returns its response, stamped with this member's
    /// header. etcd sends every auth operation through the log, reads included, and checks who may run it when
    /// it is applied (`needAdminPermission`).
    func proposeAuth<Response: AuthResponseMessage>(
        _ caller: Caller, _ fill: (inout Quorumpb_RaftRequest) -> Void,
        _ extract: @escaping @Sendable (AuthResponse) -> Response?
    ) async throws(EtcdError) -> Response {
        var request = Quorumpb_RaftRequest()
        fill(&request)
        stamp(&request, caller)
        guard case .auth(let applied, let header) = try await propose(request), var response = extract(applied) else {
            throw unexpected()
        }
        response.header = node.header(revision: header.revision)
        return response
    }

    public func authEnable(_ caller: Caller) async throws(EtcdError) -> Etcdserverpb_AuthEnableResponse {
        try await proposeAuth(caller, { $0.authEnable = .init() }) {
            if case .authEnable(let r) = $0 { return r } else { return nil }
        }
    }

    public func authDisable(_ caller: Caller) async throws(EtcdError) -> Etcdserverpb_AuthDisableResponse {
        try await proposeAuth(caller, { $0.authDisable = .init() }) {
            if case .authDisable(let r) = $0 { return r } else { return nil }
        }
    }

    public func authStatus(_ caller: Caller) async throws(EtcdError) -> Etcdserverpb_AuthStatusResponse {
        try await proposeAuth(caller, { $0.authStatus = .init() }) {
            if case .authStatus(let r) = $0 { return r } else { return nil }
        }
    }

    /// Authenticate as etcd 3.5 does it: the password is checked here, off the apply loop (bcrypt is slow on
    /// purpose), against the store as applied so far; then the token is assigned through the log. If the store
    /// changed in between (a password changed, the user went), the whole exchange is repeated.
    public func authenticate(_ r: Etcdserverpb_AuthenticateRequest) async throws(EtcdError)
        -> Etcdserverpb_AuthenticateResponse
    {
        for _ in 0..<8 {
            let store = node.auth.store
            let checked = try await Self.offLoop { () throws(AuthError) -> UInt64 in
                try store.checkPassword(name: r.name, password: r.password)
            }
            let prefix = node.auth.generatePrefix()
            do throws(EtcdError) {
                return try await proposeAuth(
                    .member,
                    { request in
                        request.authAuthenticate.name = r.name
                        request.authAuthenticate.simpleTokenPrefix = prefix
                        request.authRevision = checked
                    }
                ) {
                    if case .authenticate(let r) = $0 { return r } else { return nil }
                }
            } catch {
                if error == EtcdError(AuthError.authOldRevision) { continue }
                throw error
            }
        }
        throw EtcdError(AuthError.authOldRevision)
    }

    public func userAdd(_ r: Etcdserverpb_AuthUserAddRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_AuthUserAddResponse
    {
        // etcd hashes on the member that receives the request, so plaintext never enters the log.
        let original = r
        let hasher = node.auth.hasher
        let request = try await Self.offLoop { () throws(AuthError) -> Etcdserverpb_AuthUserAddRequest in
            var request = original
            try AuthProposal.prepare(&request, hasher: hasher)
            return request
        }
        return try await proposeAuth(caller, { $0.authUserAdd = request }) {
            if case .userAdd(let r) = $0 { return r } else { return nil }
        }
    }

    public func userChangePassword(_ r: Etcdserverpb_AuthUserChangePasswordRequest, _ caller: Caller)
        async throws(EtcdError) -> Etcdserverpb_AuthUserChangePasswordResponse
    {
        let hasher = node.auth.hasher
        let original = r
        let request = try await Self.offLoop { () throws(AuthError) -> Etcdserverpb_AuthUserChangePasswordRequest in
            var request = original
            try AuthProposal.prepare(&request, hasher: hasher)
            return request
        }
        return try await proposeAuth(caller, { $0.authUserChangePassword = request }) {
            if case .userChangePassword(let r) = $0 { return r } else { return nil }
        }
    }

    public func userGet(_ r: Etcdserverpb_AuthUserGetRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_AuthUserGetResponse
    {
        try await proposeAuth(caller, { $0.authUserGet = r }) {
            if case .userGet(let r) = $0 { return r } else { return nil }
        }
    }

    public func userList(_ caller: Caller) async throws(EtcdError) -> Etcdserverpb_AuthUserListResponse {
        try await proposeAuth(caller, { $0.authUserList = .init() }) {
            if case .userList(let r) = $0 { return r } else { return nil }
        }
    }

    public func userDelete(_ r: Etcdserverpb_AuthUserDeleteRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_AuthUserDeleteResponse
    {
        try await proposeAuth(caller, { $0.authUserDelete = r }) {
            if case .userDelete(let r) = $0 { return r } else { return nil }
        }
    }

    public func userGrantRole(_ r: Etcdserverpb_AuthUserGrantRoleRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_AuthUserGrantRoleResponse
    {
        try await proposeAuth(caller, { $0.authUserGrantRole = r }) {
            if case .userGrantRole(let r) = $0 { return r } else { return nil }
        }
    }

    public func userRevokeRole(_ r: Etcdserverpb_AuthUserRevokeRoleRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_AuthUserRevokeRoleResponse
    {
        try await proposeAuth(caller, { $0.authUserRevokeRole = r }) {
            if case .userRevokeRole(let r) = $0 { return r } else { return nil }
        }
    }

    public func roleAdd(_ r: Etcdserverpb_AuthRoleAddRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_AuthRoleAddResponse
    {
        try await proposeAuth(caller, { $0.authRoleAdd = r }) {
            if case .roleAdd(let r) = $0 { return r } else { return nil }
        }
    }

    public func roleGet(_ r: Etcdserverpb_AuthRoleGetRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_AuthRoleGetResponse
    {
        try await proposeAuth(caller, { $0.authRoleGet = r }) {
            if case .roleGet(let r) = $0 { return r } else { return nil }
        }
    }

    public func roleList(_ caller: Caller) async throws(EtcdError) -> Etcdserverpb_AuthRoleListResponse {
        try await proposeAuth(caller, { $0.authRoleList = .init() }) {
            if case .roleList(let r) = $0 { return r } else { return nil }
        }
    }

    public func roleDelete(_ r: Etcdserverpb_AuthRoleDeleteRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_AuthRoleDeleteResponse
    {
        try await proposeAuth(caller, { $0.authRoleDelete = r }) {
            if case .roleDelete(let r) = $0 { return r } else { return nil }
        }
    }

    public func roleGrantPermission(_ r: Etcdserverpb_AuthRoleGrantPermissionRequest, _ caller: Caller)
        async throws(EtcdError) -> Etcdserverpb_AuthRoleGrantPermissionResponse
    {
        try await proposeAuth(caller, { $0.authRoleGrantPermission = r }) {
            if case .roleGrantPermission(let r) = $0 { return r } else { return nil }
        }
    }

    public func roleRevokePermission(_ r: Etcdserverpb_AuthRoleRevokePermissionRequest, _ caller: Caller)
        async throws(EtcdError) -> Etcdserverpb_AuthRoleRevokePermissionResponse
    {
        try await proposeAuth(caller, { $0.authRoleRevokePermission = r }) {
            if case .roleRevokePermission(let r) = $0 { return r } else { return nil }
        }
    }

    /// Runs slow work (bcrypt) on a thread of its own, keeping it off the event loops and the cooperative pool.
    static func offLoop<T: Sendable>(_ body: @escaping @Sendable () throws(AuthError) -> T) async throws(EtcdError)
        -> T
    {
        let result: Result<T, AuthError> = await withCheckedContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async {
                continuation.resume(returning: Result { () throws(AuthError) -> T in try body() })
            }
        }
        do {
            return try result.get()
        } catch {
            throw EtcdError(error)
        }
    }
}

/// The auth responses, which all carry a header.
protocol AuthResponseMessage: Sendable {
    var header: Etcdserverpb_ResponseHeader { get set }
}

extension Etcdserverpb_AuthEnableResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthDisableResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthStatusResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthenticateResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthUserAddResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthUserGetResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthUserListResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthUserDeleteResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthUserChangePasswordResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthUserGrantRoleResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthUserRevokeRoleResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthRoleAddResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthRoleGetResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthRoleListResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthRoleDeleteResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthRoleGrantPermissionResponse: AuthResponseMessage {}
extension Etcdserverpb_AuthRoleRevokePermissionResponse: AuthResponseMessage {}
