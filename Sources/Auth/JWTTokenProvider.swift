import Crypto
import GoSyntax
import _CryptoExtras

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// etcd's `--auth-token jwt,sign-method=...,priv-key=...,pub-key=...,ttl=...`: signed, stateless tokens.
///
/// A token is `base64url(header).base64url(claims).base64url(signature)` with header `{"alg":...,"typ":"JWT"}` and
/// claims `{"exp":<unix seconds>,"revision":<auth revision>,"username":...}`, byte for byte what etcd's golang-jwt
/// writes, so tokens from etcd members verify here and the other way round. Any member holding the key can
/// resolve any token; a token carries the auth revision it was issued at, so after an auth change requests made
/// with it fail with `revision of auth store is old` until the client authenticates again. Tokens are not
/// revoked by user deletion or password change (etcd's JWT provider keeps no state); they expire.
public struct JWTTokenProvider: TokenProvider {
    /// etcd's `DefaultTTL` for JWTs.
    public static let defaultTTL: Duration = .seconds(300)

    public let signMethod: JWTSignMethod
    public let ttl: Duration
    let key: JWTKey
    private let clock: AuthClock

    /// Whether only a public key was given: such a member verifies tokens but cannot issue them.
    public var isVerifyOnly: Bool { key.isVerifyOnly }

    /// Builds the provider from the `jwt` parameters, as etcd's `newTokenProviderJWT`: `ttl` is a Go duration
    /// (default 5m), key files are read with `readFile`, and `sign-method` is required. A bad `ttl`, an unreadable
    /// file or an unknown method is `auth: invalid auth options`; unknown parameters are ignored (etcd logs them).
    public init(
        parameters: [String: String], clock: AuthClock = .system, readFile: (String) throws -> [UInt8]
    ) throws(AuthConfigurationError) {
        var ttl = Self.defaultTTL
        if let text = parameters["ttl"], !text.isEmpty {
            guard let parsed = GoDuration.parse(text) else { throw .invalidAuthOptions }
            ttl = parsed
        }
        var publicKey: [UInt8] = []
        var privateKey: [UInt8] = []
        do {
            if let path = parameters["pub-key"], !path.isEmpty { publicKey = try readFile(path) }
            if let path = parameters["priv-key"], !path.isEmpty { privateKey = try readFile(path) }
        } catch {
            throw .invalidAuthOptions
        }
        let methodName = parameters["sign-method"] ?? ""
        guard let method = JWTSignMethod(rawValue: methodName) else {
            switch methodName {
            case "EdDSA": throw AuthConfigurationError("unsupported signing method: *jwt.SigningMethodEd25519")
            case "none": throw AuthConfigurationError("unsupported signing method: *jwt.signingMethodNone")
            default: throw .invalidAuthOptions
            }
        }
        try self.init(method: method, privateKey: privateKey, publicKey: publicKey, ttl: ttl, clock: clock)
    }

    /// Builds the provider from key bytes (PEM for RSA and EC, the raw secret for HMAC).
    public init(
        method: JWTSignMethod, privateKey: [UInt8], publicKey: [UInt8], ttl: Duration = JWTTokenProvider.defaultTTL,
        clock: AuthClock = .system
    ) throws(AuthConfigurationError) {
        self.signMethod = method
        self.ttl = ttl
        self.key = try JWTKey(method: method, privateKey: privateKey, publicKey: publicKey)
        self.clock = clock
    }

    /// JWTs need no prefix.
    public func generatePrefix<R: RandomNumberGenerator>(using generator: inout R) -> String { "" }

    /// etcd's `assign`: a token for `username` at auth revision `revision`, expiring `ttl` from now (Unix seconds,
    /// rounded down as Go rounds).
    public mutating func assign(username: String, revision: UInt64, index: UInt64, prefix: String) throws(AuthError)
        -> String
    {
        guard !key.isVerifyOnly else { throw .verifyOnly }
        let expiry = (clock.now() + ttl).components
        let exp = expiry.attoseconds < 0 ? expiry.seconds - 1 : expiry.seconds
        let header = "{\"alg\":\"\(signMethod.rawValue)\",\"typ\":\"JWT\"}"
        let claims = "{\"exp\":\(exp),\"revision\":\(revision),\"username\":\(JWTEncoding.goJSONString(username))}"
        let signingInput = JWTEncoding.base64URL(header.utf8) + "." + JWTEncoding.base64URL(claims.utf8)
        let signature = try JWTSigner.sign(Array(signingInput.utf8), method: signMethod, key: key)
        return signingInput + "." + JWTEncoding.base64URL(signature)
    }

    /// etcd's `info`, with golang-jwt v4's parser: three segments; a header whose `alg` is exactly this member's
    /// method; claims that are a JSON object whose `exp` (if present) is still ahead, and whose `iat`/`nbf` (if
    /// present) are not; a valid signature; then a string `username` and a numeric `revision`. The revision is the
    /// token's own, not `currentRevision`.
    public mutating func info(token: String, currentRevision: UInt64) -> AuthInfo? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
            let headerBytes = JWTEncoding.decodeBase64URL(parts[0]),
            let header = JWTEncoding.decodeObject(headerBytes),
            case .string(let alg)? = header["alg"], alg == signMethod.rawValue,
            let claimBytes = JWTEncoding.decodeBase64URL(parts[1]),
            let claims = JWTEncoding.decodeObject(claimBytes),
            Self.timeClaimsValid(claims, now: clock.unixSeconds),
            let signature = JWTEncoding.decodeBase64URL(parts[2]),
            JWTSigner.verify(signature, for: Array((parts[0] + "." + parts[1]).utf8), method: signMethod, key: key),
            case .string(let username)? = claims["username"],
            case .number(let revision)? = claims["revision"],
            revision >= 0, revision < 18_446_744_073_709_551_616.0
        else { return nil }
        return AuthInfo(username: username, revision: UInt64(revision))
    }

    /// golang-jwt v4's `MapClaims.Valid`: `exp` must be after now, `iat` and `nbf` not after now; each is optional
    /// but, when present, must be a number.
    static func timeClaimsValid(_ claims: [String: JSONValue], now: Int64) -> Bool {
        let now = Double(now)
        if let exp = claims["exp"] {
            guard case .number(let value) = exp, now < value else { return false }
        }
        for name in ["iat", "nbf"] {
            if let claim = claims[name] {
                guard case .number(let value) = claim, now >= value else { return false }
            }
        }
        return true
    }

    // A JWT provider keeps no per-user or per-enablement state.
    public mutating func enable() {}
    public mutating func disable() {}
    public mutating func invalidateUser(_ username: String) {}
}

/// The signature step of each JWT method, all done by swift-crypto.
enum JWTSigner {
    static func sign(_ input: [UInt8], method: JWTSignMethod, key: JWTKey) throws(AuthError) -> [UInt8] {
        do {
            switch (method.family, key) {
            case (.rsa, .rsaPrivate(let key)):
                return Array(
                    try rsaSign(input, method: method, key: key, padding: .insecurePKCS1v1_5).rawRepresentation)
            case (.rsaPSS, .rsaPrivate(let key)):
                return Array(try rsaSign(input, method: method, key: key, padding: .PSS).rawRepresentation)
            case (.ecdsa, .ecPrivate(let key)):
                switch (method.curve, key) {
                case (.p256?, .p256(let key)): return Array(try key.signature(for: input).rawRepresentation)
                case (.p384?, .p384(let key)): return Array(try key.signature(for: input).rawRepresentation)
                case (.p521?, .p521(let key)): return Array(try key.signature(for: input).rawRepresentation)
                default: throw AuthError.invalidKey
                }
            case (.hmac, .hmac(let key)):
                switch method {
                case .hs384: return Array(HMAC<SHA384>.authenticationCode(for: input, using: key))
                case .hs512: return Array(HMAC<SHA512>.authenticationCode(for: input, using: key))
                default: return Array(HMAC<SHA256>.authenticationCode(for: input, using: key))
                }
            default:
                throw AuthError.invalidKey
            }
        } catch let error as AuthError {
            throw error
        } catch {
            throw .internal("auth: failed to sign a JWT token")
        }
    }

    private static func rsaSign(
        _ input: [UInt8], method: JWTSignMethod, key: _RSA.Signing.PrivateKey, padding: _RSA.Signing.Padding
    ) throws -> _RSA.Signing.RSASignature {
        switch method {
        case .rs384, .ps384: return try key.signature(for: SHA384.hash(data: input), padding: padding)
        case .rs512, .ps512: return try key.signature(for: SHA512.hash(data: input), padding: padding)
        default: return try key.signature(for: SHA256.hash(data: input), padding: padding)
        }
    }

    static func verify(_ signature: [UInt8], for input: [UInt8], method: JWTSignMethod, key: JWTKey) -> Bool {
        switch (method.family, key) {
        case (.rsa, .rsaPrivate(let key)):
            return rsaVerify(signature, input, method: method, key: key.publicKey, padding: .insecurePKCS1v1_5)
        case (.rsa, .rsaPublic(let key)):
            return rsaVerify(signature, input, method: method, key: key, padding: .insecurePKCS1v1_5)
        case (.rsaPSS, .rsaPrivate(let key)):
            return rsaVerify(signature, input, method: method, key: key.publicKey, padding: .PSS)
        case (.rsaPSS, .rsaPublic(let key)):
            return rsaVerify(signature, input, method: method, key: key, padding: .PSS)
        case (.ecdsa, .ecPrivate(let key)):
            return ecVerify(signature, input, method: method, key: key.publicKey)
        case (.ecdsa, .ecPublic(let key)):
            return ecVerify(signature, input, method: method, key: key)
        case (.hmac, .hmac):
            guard let expected = try? sign(input, method: method, key: key) else { return false }
            // Constant time, as Go's hmac.Equal.
            guard expected.count == signature.count else { return false }
            return zip(expected, signature).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
        default:
            return false
        }
    }

    private static func rsaVerify(
        _ signature: [UInt8], _ input: [UInt8], method: JWTSignMethod, key: _RSA.Signing.PublicKey,
        padding: _RSA.Signing.Padding
    ) -> Bool {
        let signature = _RSA.Signing.RSASignature(rawRepresentation: signature)
        switch method {
        case .rs384, .ps384: return key.isValidSignature(signature, for: SHA384.hash(data: input), padding: padding)
        case .rs512, .ps512: return key.isValidSignature(signature, for: SHA512.hash(data: input), padding: padding)
        default: return key.isValidSignature(signature, for: SHA256.hash(data: input), padding: padding)
        }
    }

    /// ES signatures are `r || s`, each as wide as the curve (golang-jwt refuses any other length).
    private static func ecVerify(_ signature: [UInt8], _ input: [UInt8], method: JWTSignMethod, key: ECPublicKey)
        -> Bool
    {
        switch (method.curve, key) {
        case (.p256?, .p256(let key)):
            guard signature.count == 64, let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else {
                return false
            }
            return key.isValidSignature(sig, for: input)
        case (.p384?, .p384(let key)):
            guard signature.count == 96, let sig = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else {
                return false
            }
            return key.isValidSignature(sig, for: input)
        case (.p521?, .p521(let key)):
            guard signature.count == 132, let sig = try? P521.Signing.ECDSASignature(rawRepresentation: signature)
            else { return false }
            return key.isValidSignature(sig, for: input)
        default:
            return false
        }
    }
}
