import EtcdProto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What the member that receives a UserAdd or UserChangePassword does before proposing it, as etcd 3.5's
/// `EtcdServer.UserAdd`/`UserChangePassword` do: bcrypt the password there, put the base64 of the hash in
/// `hashed_password` and clear `password`.
///
/// Hashing before proposal keeps the slow, randomized step out of the apply loop, keeps plaintext out of the Raft
/// log, and makes every member store the same bytes.
public enum AuthProposal {
    /// UserAdd: unless the user is added with `no_password`, the password (even an empty one) is hashed and any
    /// `hashed_password` the client sent is replaced.
    public static func prepare<R: RandomNumberGenerator>(
        _ request: inout Etcdserverpb_AuthUserAddRequest, hasher: Bcrypt, using generator: inout R
    ) throws(AuthError) {
        guard !request.hasOptions || !request.options.noPassword else { return }
        let hashed = try hasher.hash(password: request.password, using: &generator)
        request.hashedPassword = Data(hashed.utf8).base64EncodedString()
        request.password = ""
    }

    /// UserChangePassword: a non-empty password is hashed; an empty one leaves whatever `hashed_password` the client
    /// sent (etcd lets a client set a ready-made hash this way).
    public static func prepare<R: RandomNumberGenerator>(
        _ request: inout Etcdserverpb_AuthUserChangePasswordRequest, hasher: Bcrypt, using generator: inout R
    ) throws(AuthError) {
        guard !request.password.isEmpty else { return }
        let hashed = try hasher.hash(password: request.password, using: &generator)
        request.hashedPassword = Data(hashed.utf8).base64EncodedString()
        request.password = ""
    }

    /// UserAdd with salts from the system's random source (production).
    public static func prepare(_ request: inout Etcdserverpb_AuthUserAddRequest, hasher: Bcrypt) throws(AuthError) {
        var generator = SystemRandomNumberGenerator()
        try prepare(&request, hasher: hasher, using: &generator)
    }

    /// UserChangePassword with salts from the system's random source (production).
    public static func prepare(
        _ request: inout Etcdserverpb_AuthUserChangePasswordRequest, hasher: Bcrypt
    ) throws(AuthError) {
        var generator = SystemRandomNumberGenerator()
        try prepare(&request, hasher: hasher, using: &generator)
    }
}
