import EtcdProto

/// Turning auth on and off, its status, and logging in (etcd 3.5's `AuthEnable`, `AuthDisable`, `AuthStatus`,
/// `CheckPassword` and `Authenticate`).
extension AuthStore {
    /// AuthEnable: needs user `root` holding role `root`. Enabling an enabled store is a no-op, and enabling never
    /// bumps the auth revision (etcd only re-reads it).
    public mutating func authEnable(tokens: inout some TokenProvider) throws(AuthError)
        -> Etcdserverpb_AuthEnableResponse
    {
        if isEnabled { return Etcdserverpb_AuthEnableResponse() }
        guard let root = user(named: rootName) else { throw .rootUserNotExist }
        guard root.hasRootRole else { throw .rootRoleNotExist }
        isEnabled = true
        tokens.enable()
        refreshPermissions()
        return Etcdserverpb_AuthEnableResponse()
    }

    /// AuthDisable: keeps every user and role, bumps the revision, and ends every token. Disabling a disabled store
    /// is a no-op that succeeds.
    public mutating func authDisable(tokens: inout some TokenProvider) -> Etcdserverpb_AuthDisableResponse {
        guard isEnabled else { return Etcdserverpb_AuthDisableResponse() }
        isEnabled = false
        commitRevision()
        tokens.disable()
        return Etcdserverpb_AuthDisableResponse()
    }

    /// AuthStatus: whether auth is on and the auth revision.
    public func authStatus() -> Etcdserverpb_AuthStatusResponse {
        var response = Etcdserverpb_AuthStatusResponse()
        response.enabled = isEnabled
        response.authRevision = revision
        return response
    }

    /// etcd's `CheckPassword`, run by the member that receives Authenticate, before it proposes anything: returns
    /// the auth revision the check saw. The integrator then proposes Authenticate (name and a fresh
    /// ``TokenProvider/generatePrefix()``) and, as etcd does, repeats the whole exchange when the store's revision
    /// has moved on by the time the entry is applied (a password may have changed in between).
    ///
    /// bcrypt is slow on purpose (tens of milliseconds at cost 10): call this outside the apply loop, on a copy.
    public func checkPassword(name: String, password: String) throws(AuthError) -> UInt64 {
        guard isEnabled else { throw .authNotEnabled }
        guard let user = user(named: name) else { throw .authFailed }
        if user.isNoPassword { throw .noPasswordUser }
        guard Bcrypt.verify(password: password, hash: user.password) else { throw .authFailed }
        return revision
    }

    /// Authenticate, applied on every member at Raft index `index` with the prefix the proposer generated: assigns
    /// the token. A `--no-password` user cannot log in (such users authenticate by client certificate).
    public func authenticate(
        name: String, simpleTokenPrefix: String, index: UInt64, tokens: inout some TokenProvider
    ) throws(AuthError) -> Etcdserverpb_AuthenticateResponse {
        guard isEnabled else { throw .authNotEnabled }
        guard let user = user(named: name) else { throw .authFailed }
        if user.isNoPassword { throw .authFailed }
        var response = Etcdserverpb_AuthenticateResponse()
        response.token = try tokens.assign(username: name, revision: revision, index: index, prefix: simpleTokenPrefix)
        return response
    }
}
