/// An error of etcd's authentication layer, with the gRPC status code and the exact message etcd 3.5 sends.
///
/// Clients (clientv3, etcdctl, kube-apiserver) match on these strings, so they are part of the wire contract.
/// This target sits below `Node`, so it cannot use `Node.EtcdError`; the integrator maps `code.rawValue` and
/// `message` one to one. The codes and texts come from etcd's `api/v3rpc/rpctypes/error.go` and the
/// `toGRPCErrorMap` of `etcdserver/api/v3rpc/util.go`; an auth error that etcd leaves out of that map reaches the
/// client as `Unknown` with the bare `auth: ...` text, and so does it here.
public struct AuthError: Error, Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The gRPC status codes auth errors use, as numbers on the wire.
    public enum Code: Int, Sendable, Hashable {
        case unknown = 2
        case invalidArgument = 3
        case permissionDenied = 7
        case failedPrecondition = 9
        case `internal` = 13
        case unauthenticated = 16
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static let rootUserNotExist = AuthError(.failedPrecondition, "etcdserver: root user does not exist")
    public static let rootRoleNotExist = AuthError(.failedPrecondition, "etcdserver: root user does not have root role")
    public static let userAlreadyExist = AuthError(.failedPrecondition, "etcdserver: user name already exists")
    public static let userEmpty = AuthError(.invalidArgument, "etcdserver: user name is empty")
    public static let userNotFound = AuthError(.failedPrecondition, "etcdserver: user name not found")
    public static let roleAlreadyExist = AuthError(.failedPrecondition, "etcdserver: role name already exists")
    public static let roleNotFound = AuthError(.failedPrecondition, "etcdserver: role name not found")
    public static let roleEmpty = AuthError(.invalidArgument, "etcdserver: role name is empty")
    public static let authFailed = AuthError(
        .invalidArgument, "etcdserver: authentication failed, invalid user ID or password")
    public static let permissionNotGiven = AuthError(.invalidArgument, "etcdserver: permission not given")
    public static let permissionDenied = AuthError(.permissionDenied, "etcdserver: permission denied")
    public static let roleNotGranted = AuthError(.failedPrecondition, "etcdserver: role is not granted to the user")
    public static let permissionNotGranted = AuthError(
        .failedPrecondition, "etcdserver: permission is not granted to the role")
    public static let authNotEnabled = AuthError(.failedPrecondition, "etcdserver: authentication is not enabled")
    public static let invalidAuthToken = AuthError(.unauthenticated, "etcdserver: invalid auth token")
    public static let invalidAuthMgmt = AuthError(.invalidArgument, "etcdserver: invalid auth management")
    public static let authOldRevision = AuthError(.invalidArgument, "etcdserver: revision of auth store is old")

    /// etcd 3.5 returns `auth.ErrNoPasswordUser` from Authenticate for a user added with `--no-password`, and from
    /// UserAdd/UserChangePassword when the hashed password is not valid base64. The error is missing from
    /// `toGRPCErrorMap`, so clients see code Unknown and the `auth:` text.
    public static let noPasswordUser = AuthError(
        .unknown, "auth: authentication failed, password was given for no password user")
    /// Authenticate on a member whose JWT provider has only a public key (`auth.ErrVerifyOnly`, unmapped: Unknown).
    public static let verifyOnly = AuthError(.unknown, "auth: token signing attempted with verify-only key")
    /// Go's bcrypt (golang.org/x/crypto ≥ 0.22, as etcd 3.5.33 builds with) refuses to hash more than 72 bytes.
    public static let passwordTooLong = AuthError(.unknown, "bcrypt: password length exceeds 72 bytes")
    /// JWT signing with a key that does not fit the sign method (golang-jwt's `ErrInvalidKey`, unmapped: Unknown).
    public static let invalidKey = AuthError(.unknown, "key is invalid")

    /// A plaintext password reached apply. etcd 3.5 would bcrypt it there, with a member-local random salt;
    /// Quorum hashes on the proposing member instead (``AuthProposal``), so that every member stores the same
    /// bytes, and refuses the request identically on every member if that step was skipped.
    public static let passwordNotHashed = AuthError(.internal, "auth: password reached apply without being hashed")

    /// A failure of the system's crypt library or random source: the member cannot hash or check passwords.
    public static func `internal`(_ message: String) -> AuthError { AuthError(.internal, message) }
}

/// A configuration error of the `--auth-token` option or its key files, found at start-up (never sent to clients).
public struct AuthConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }

    public static let invalidAuthOptions = AuthConfigurationError("auth: invalid auth options")
    public static let missingKey = AuthConfigurationError("auth: missing key data")
    public static let keyMismatch = AuthConfigurationError("auth: public and private keys don't match")
}
