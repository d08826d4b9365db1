/// Who a request comes from, as etcd 3.5's `EtcdServer.AuthInfoFromCtx` decides it.
extension AuthStore {
    /// Resolves the identity of a request.
    ///
    /// - While auth is off there is no identity (nil) and every check passes: everyone acts as root.
    /// - A token, when sent (gRPC metadata `token`, or `authorization` from the HTTP gateway, with an optional
    ///   `Bearer ` prefix), wins: it must resolve through `tokens`, or the request fails with
    ///   `invalid auth token` (Unauthenticated) even if a client certificate would have identified the user.
    /// - Otherwise, with `--client-cert-auth`, the common name of the verified client certificate is the user, at
    ///   the store's current revision. The caller passes nil when there is no verified chain, when client-cert auth
    ///   is off, and for requests relayed by the gRPC gateway (etcd ignores the gateway's own certificate).
    /// - Otherwise nil: checks then fail with `user name is empty`.
    public func resolveIdentity(
        token: String?, clientCertificateCommonName: String?, tokens: inout some TokenProvider
    ) throws(AuthError) -> AuthInfo? {
        guard isEnabled else { return nil }
        if let token {
            let bare = token.hasPrefix("Bearer ") ? String(token.dropFirst("Bearer ".count)) : token
            guard let info = tokens.info(token: bare, currentRevision: revision) else { throw .invalidAuthToken }
            return info
        }
        if let commonName = clientCertificateCommonName {
            return AuthInfo(username: commonName, revision: revision)
        }
        return nil
    }
}
