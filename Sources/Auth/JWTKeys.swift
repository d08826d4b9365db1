import Crypto
import X509
import _CryptoExtras

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The JWT signing algorithms etcd 3.5 accepts in `sign-method=`: golang-jwt's RSA (PKCS#1 v1.5), RSA-PSS, ECDSA
/// and HMAC families. golang-jwt also knows `EdDSA` and `none`, but etcd's `jwtOptions.Key` has no key for them,
/// so etcd refuses them at start-up; so does Quorum.
public enum JWTSignMethod: String, Sendable, CaseIterable {
    case rs256 = "RS256", rs384 = "RS384", rs512 = "RS512"
    case ps256 = "PS256", ps384 = "PS384", ps512 = "PS512"
    case es256 = "ES256", es384 = "ES384", es512 = "ES512"
    case hs256 = "HS256", hs384 = "HS384", hs512 = "HS512"

    enum Family { case rsa, rsaPSS, ecdsa, hmac }

    var family: Family {
        switch self {
        case .rs256, .rs384, .rs512: return .rsa
        case .ps256, .ps384, .ps512: return .rsaPSS
        case .es256, .es384, .es512: return .ecdsa
        case .hs256, .hs384, .hs512: return .hmac
        }
    }

    /// The ECDSA curve an ES method signs with (golang-jwt refuses a key on another curve).
    var curve: ECCurve? {
        switch self {
        case .es256: return .p256
        case .es384: return .p384
        case .es512: return .p521
        default: return nil
        }
    }
}

/// The NIST curves of the ES methods.
enum ECCurve: Sendable, Equatable { case p256, p384, p521 }

/// A key loaded from the `priv-key`/`pub-key` files, as etcd's `jwtOptions.Key` chooses it.
enum JWTKey: Sendable {
    case rsaPrivate(_RSA.Signing.PrivateKey)
    case rsaPublic(_RSA.Signing.PublicKey)
    case ecPrivate(ECPrivateKey)
    case ecPublic(ECPublicKey)
    case hmac(SymmetricKey)

    /// Whether the key can only verify (etcd's `verifyOnly`: a public key alone was given).
    var isVerifyOnly: Bool {
        switch self {
        case .rsaPublic, .ecPublic: return true
        case .rsaPrivate, .ecPrivate, .hmac: return false
        }
    }

    /// etcd's `jwtOptions.Key`: an RSA/PSS method needs an RSA key, ES an EC key, HS the private key's bytes as
    /// the shared secret. With both files the private key is used (its public half verifies); the public file only
    /// matters when alone (verify-only). etcd's mismatch test between the two is kept as it is: it reports
    /// `public and private keys don't match` only when every component differs (RSA: exponent and modulus; EC:
    /// curve, x and y), so pairs etcd accepts are accepted here too.
    init(method: JWTSignMethod, privateKey: [UInt8], publicKey: [UInt8]) throws(AuthConfigurationError) {
        switch method.family {
        case .rsa, .rsaPSS:
            let priv = privateKey.isEmpty ? nil : try Self.rsaPrivateKey(privateKey)
            let pub = publicKey.isEmpty ? nil : try Self.rsaPublicKey(publicKey)
            guard let priv else {
                guard let pub else { throw .missingKey }
                self = .rsaPublic(pub)
                return
            }
            if let pub, let mine = try? priv.publicKey.getKeyPrimitives(), let theirs = try? pub.getKeyPrimitives(),
                mine.publicExponent != theirs.publicExponent && mine.modulus != theirs.modulus
            {
                throw .keyMismatch
            }
            self = .rsaPrivate(priv)
        case .ecdsa:
            let priv = privateKey.isEmpty ? nil : try ECPrivateKey(pem: privateKey)
            let pub = publicKey.isEmpty ? nil : try ECPublicKey(pem: publicKey)
            guard let priv else {
                guard let pub else { throw .missingKey }
                self = .ecPublic(pub)
                return
            }
            if let pub {
                let (x1, y1) = priv.publicKey.coordinates
                let (x2, y2) = pub.coordinates
                if priv.curve != pub.curve && x1 != x2 && y1 != y2 { throw .keyMismatch }
            }
            self = .ecPrivate(priv)
        case .hmac:
            guard !privateKey.isEmpty else { throw .missingKey }
            self = .hmac(SymmetricKey(data: privateKey))
        }
    }

    /// golang-jwt's `ParseRSAPrivateKeyFromPEM` (PKCS#1 or PKCS#8). Keys from 1024 bits are accepted, as Go accepts
    /// them, so that a configuration etcd runs with runs here too.
    private static func rsaPrivateKey(_ pem: [UInt8]) throws(AuthConfigurationError) -> _RSA.Signing.PrivateKey {
        guard let text = pemText(pem) else { throw .keyMustBePEM }
        do {
            return try _RSA.Signing.PrivateKey(unsafePEMRepresentation: text)
        } catch {
            throw .notRSAPrivateKey
        }
    }

    /// golang-jwt's `ParseRSAPublicKeyFromPEM` (a PKIX `PUBLIC KEY`; PKCS#1 `RSA PUBLIC KEY` is accepted too), or
    /// as there a certificate's key (etcd's own tests give the server certificate as `pub-key`).
    private static func rsaPublicKey(_ pem: [UInt8]) throws(AuthConfigurationError) -> _RSA.Signing.PublicKey {
        guard let text = pemText(pem) else { throw .keyMustBePEM }
        if let key = try? _RSA.Signing.PublicKey(unsafePEMRepresentation: text) { return key }
        if let certificate = try? Certificate(pemEncoded: text), let key = _RSA.Signing.PublicKey(certificate.publicKey)
        {
            return key
        }
        throw .notRSAPublicKey
    }
}

/// The PEM text of a key file, or nil when the file holds no PEM block (Go's `pem.Decode` finds none); text around
/// the block is dropped, as Go skips it.
func pemText(_ bytes: [UInt8]) -> String? {
    func find(_ needle: String, from start: Int) -> Int? {
        let needle = Array(needle.utf8)
        guard bytes.count >= needle.count, start <= bytes.count - needle.count else { return nil }
        return (start...(bytes.count - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
    guard let begin = find("-----BEGIN ", from: 0), let end = find("-----END ", from: begin + 11),
        let close = find("-----", from: end + 9)
    else { return nil }
    return String(decoding: bytes[begin..<(close + 5)], as: UTF8.self)
}

/// An ECDSA private key on one of the ES curves.
enum ECPrivateKey: Sendable {
    case p256(P256.Signing.PrivateKey)
    case p384(P384.Signing.PrivateKey)
    case p521(P521.Signing.PrivateKey)

    /// golang-jwt's `ParseECPrivateKeyFromPEM` (SEC 1 `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`), on any ES curve.
    init(pem bytes: [UInt8]) throws(AuthConfigurationError) {
        guard let text = pemText(bytes) else { throw .keyMustBePEM }
        if let key = try? P256.Signing.PrivateKey(pemRepresentation: text) {
            self = .p256(key)
        } else if let key = try? P384.Signing.PrivateKey(pemRepresentation: text) {
            self = .p384(key)
        } else if let key = try? P521.Signing.PrivateKey(pemRepresentation: text) {
            self = .p521(key)
        } else {
            throw .notECPrivateKey
        }
    }

    var curve: ECCurve {
        switch self {
        case .p256: return .p256
        case .p384: return .p384
        case .p521: return .p521
        }
    }

    var publicKey: ECPublicKey {
        switch self {
        case .p256(let key): return .p256(key.publicKey)
        case .p384(let key): return .p384(key.publicKey)
        case .p521(let key): return .p521(key.publicKey)
        }
    }
}

/// An ECDSA public key on one of the ES curves.
enum ECPublicKey: Sendable {
    case p256(P256.Signing.PublicKey)
    case p384(P384.Signing.PublicKey)
    case p521(P521.Signing.PublicKey)

    /// golang-jwt's `ParseECPublicKeyFromPEM` (a PKIX `PUBLIC KEY`, or a certificate's key).
    init(pem bytes: [UInt8]) throws(AuthConfigurationError) {
        guard let text = pemText(bytes) else { throw .keyMustBePEM }
        let certified = (try? Certificate(pemEncoded: text))?.publicKey
        if let key = try? P256.Signing.PublicKey(pemRepresentation: text) {
            self = .p256(key)
        } else if let key = try? P384.Signing.PublicKey(pemRepresentation: text) {
            self = .p384(key)
        } else if let key = try? P521.Signing.PublicKey(pemRepresentation: text) {
            self = .p521(key)
        } else if let certified, let key = P256.Signing.PublicKey(certified) {
            self = .p256(key)
        } else if let certified, let key = P384.Signing.PublicKey(certified) {
            self = .p384(key)
        } else if let certified, let key = P521.Signing.PublicKey(certified) {
            self = .p521(key)
        } else {
            throw .notECPublicKey
        }
    }

    var curve: ECCurve {
        switch self {
        case .p256: return .p256
        case .p384: return .p384
        case .p521: return .p521
        }
    }

    /// The affine coordinates (from the uncompressed point `04 || x || y`).
    var coordinates: (x: [UInt8], y: [UInt8]) {
        let point: Data
        switch self {
        case .p256(let key): point = key.x963Representation
        case .p384(let key): point = key.x963Representation
        case .p521(let key): point = key.x963Representation
        }
        let bytes = [UInt8](point.dropFirst())
        let half = bytes.count / 2
        return (Array(bytes[..<half]), Array(bytes[half...]))
    }
}

extension AuthConfigurationError {
    /// golang-jwt's key parsing errors, reported by etcd at start-up.
    static let keyMustBePEM = AuthConfigurationError("invalid key: Key must be a PEM encoded PKCS1 or PKCS8 key")
    static let notRSAPrivateKey = AuthConfigurationError("key is not a valid RSA private key")
    static let notRSAPublicKey = AuthConfigurationError("key is not a valid RSA public key")
    static let notECPrivateKey = AuthConfigurationError("key is not a valid ECDSA private key")
    static let notECPublicKey = AuthConfigurationError("key is not a valid ECDSA public key")
}
