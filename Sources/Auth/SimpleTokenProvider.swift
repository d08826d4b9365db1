/// etcd's `--auth-token simple`: opaque tokens `<16 random letters>.<Raft index>` held in member memory.
///
/// The letters come from the proposing member (``generatePrefix(using:)``) and the index is the Authenticate entry's
/// Raft index, so every member assigns the same token when it applies the entry and a client may use it on any of
/// them (after waiting, as etcd does, until the member has applied that index: ``index(of:)``). A token expires
/// `ttl` after it was last used (etcd resets the TTL on each successful lookup), and ends when its user is deleted
/// or changes password, or when auth is disabled. Tokens are not cryptographically signed: etcd warns about that.
public struct SimpleTokenProvider: TokenProvider {
    /// etcd's `defaultSimpleTokenLength` and its alphabet.
    public static let prefixLength = 16
    static let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
    /// etcd's `--auth-token-ttl` default (300 s), also used for a TTL of zero or less.
    public static let defaultTTL: Duration = .seconds(300)

    private struct Entry: Sendable {
        var username: String
        var deadline: Duration
    }

    public let ttl: Duration
    private let clock: AuthClock
    /// nil while auth is off: etcd's `simpleTokenKeeper` only exists while enabled, and tokens assigned without it
    /// are never stored.
    private var tokens: [String: Entry]?

    /// A provider for a store whose auth is off: AuthEnable calls ``enable()``, and so must the member after loading
    /// a store that is already on (etcd's `Recover`).
    public init(ttl: Duration = SimpleTokenProvider.defaultTTL, clock: AuthClock = .system) {
        self.ttl = ttl > .zero ? ttl : Self.defaultTTL
        self.clock = clock
        self.tokens = nil
    }

    public func generatePrefix<R: RandomNumberGenerator>(using generator: inout R) -> String {
        var letters: [UInt8] = []
        letters.reserveCapacity(Self.prefixLength)
        for _ in 0..<Self.prefixLength {
            letters.append(Self.letters[Int.random(in: 0..<Self.letters.count, using: &generator)])
        }
        return String(decoding: letters, as: UTF8.self)
    }

    /// etcd's `assign`: the token is `prefix.index`. Assigning a token that is already live is a broken invariant
    /// (etcd panics); here it fails the Authenticate instead.
    public mutating func assign(username: String, revision: UInt64, index: UInt64, prefix: String) throws(AuthError)
        -> String
    {
        let token = "\(prefix).\(index)"
        guard tokens != nil else { return token }
        purgeExpired()
        guard tokens?[token] == nil else { throw .internal("auth: simple token is already assigned") }
        tokens?[token] = Entry(username: username, deadline: clock.now() + ttl)
        return token
    }

    /// etcd's `info`: the token's user at the store's current revision, and its TTL starts again. An expired token
    /// is forgotten (etcd's keeper sweeps once a second; here expiry is exact: a token is valid through its
    /// deadline and not after).
    public mutating func info(token: String, currentRevision: UInt64) -> AuthInfo? {
        guard Self.index(of: token) != nil, let entry = tokens?[token] else { return nil }
        let now = clock.now()
        guard now <= entry.deadline else {
            tokens?[token] = nil
            return nil
        }
        tokens?[token]?.deadline = now + ttl
        return AuthInfo(username: entry.username, revision: currentRevision)
    }

    public mutating func enable() {
        if tokens == nil { tokens = [:] }
    }

    public mutating func disable() {
        tokens = nil
    }

    public mutating func invalidateUser(_ username: String) {
        tokens = tokens?.filter { !sameBytes($0.value.username, username) }
    }

    /// Forgets every expired token (etcd's once-a-second sweep); ``assign(username:revision:index:prefix:)`` calls
    /// it, and a member may call it periodically to bound memory.
    public mutating func purgeExpired() {
        let now = clock.now()
        tokens = tokens?.filter { now <= $0.value.deadline }
    }

    /// The number of live tokens (for metrics and tests).
    public var count: Int { tokens?.count ?? 0 }

    /// The Raft index a simple token was assigned at, or nil if the token is not shaped like one (etcd's
    /// `isValidSimpleToken`: exactly one dot, then a decimal unsigned 64-bit number). A member that has not yet
    /// applied that index waits for it before resolving the token.
    public static func index(of token: String) -> UInt64? {
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[1].isEmpty, parts[1].allSatisfy({ (0x30...0x39).contains($0) }) else {
            return nil
        }
        return UInt64(String(decoding: parts[1], as: UTF8.self))
    }
}
