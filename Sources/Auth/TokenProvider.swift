/// Issues and resolves the tokens clients send after Authenticate: etcd's `TokenProvider` interface.
///
/// A provider is member-local state, not part of the replicated ``AuthStore``: simple tokens are assigned on every
/// member when the Authenticate entry is applied (so each member knows them) but expire by the member's own clock;
/// JWTs need no state at all. The store calls ``enable()``, ``disable()`` and ``invalidateUser(_:)`` where etcd
/// does, so the apply loop passes its provider to those apply functions.
public protocol TokenProvider: Sendable {
    /// etcd's `genTokenPrefix`, run by the member that proposes an Authenticate: the random part of a simple token
    /// (16 letters), empty for other providers. It travels in the proposal so that every member assigns the same
    /// token.
    func generatePrefix<R: RandomNumberGenerator>(using generator: inout R) -> String

    /// etcd's `assign`, run on every member when an Authenticate entry is applied at Raft index `index`.
    mutating func assign(username: String, revision: UInt64, index: UInt64, prefix: String) throws(AuthError) -> String

    /// etcd's `info`: who a token belongs to, or nil when it is unknown, expired, forged or malformed.
    /// `currentRevision` is the store's auth revision (what a simple token resolves to).
    mutating func info(token: String, currentRevision: UInt64) -> AuthInfo?

    /// Auth was turned on (also when a store that is on is loaded).
    mutating func enable()
    /// Auth was turned off: tokens issued so far must stop working.
    mutating func disable()
    /// The user was deleted or changed its password: its tokens must stop working.
    mutating func invalidateUser(_ username: String)
}

extension TokenProvider {
    /// The prefix from the system's random source (production).
    public func generatePrefix() -> String {
        var generator = SystemRandomNumberGenerator()
        return generatePrefix(using: &generator)
    }
}

/// etcd's `tokenNop`, used when `--auth-token` is empty: Authenticate always fails and no token is ever valid.
public struct NopTokenProvider: TokenProvider {
    public init() {}

    public func generatePrefix<R: RandomNumberGenerator>(using generator: inout R) -> String { "" }

    public mutating func assign(username: String, revision: UInt64, index: UInt64, prefix: String) throws(AuthError)
        -> String
    {
        throw .authFailed
    }

    public mutating func info(token: String, currentRevision: UInt64) -> AuthInfo? { nil }
    public mutating func enable() {}
    public mutating func disable() {}
    public mutating func invalidateUser(_ username: String) {}
}
