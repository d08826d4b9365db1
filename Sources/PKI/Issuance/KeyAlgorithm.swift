import Crypto
import Foundation
import X509
import _CryptoExtras

/// The key types Quorum issues.
///
/// ECDSA P-256 is the default because it is small, fast to generate and accepted by every etcd client; RSA 2048 exists
/// for clients and HSM policies that still require RSA. The set is deliberately closed so that every key we write can
/// be read back by the Server target's TLS stack.
public enum KeyAlgorithm: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case ecdsaP256 = "ecdsa-p256"
    case rsa2048 = "rsa-2048"

    /// Parses the spellings an operator is likely to type on the command line (`ecdsa`, `p256`, `rsa`, `rsa2048`).
    public init?(flagValue: String) {
        switch flagValue.lowercased() {
        case "ecdsa", "ec", "p256", "p-256", "ecdsa-p256", "ecdsap256": self = .ecdsaP256
        case "rsa", "rsa2048", "rsa-2048": self = .rsa2048
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .ecdsaP256: return "ECDSA P-256"
        case .rsa2048: return "RSA 2048"
        }
    }

    /// Generates a fresh private key. Key material always comes from the system's cryptographic RNG, never from an
    /// injected generator: test determinism must not weaken real keys.
    public func generatePrivateKey() throws -> Certificate.PrivateKey {
        switch self {
        case .ecdsaP256:
            return Certificate.PrivateKey(P256.Signing.PrivateKey())
        case .rsa2048:
            return Certificate.PrivateKey(try _RSA.Signing.PrivateKey(keySize: .bits2048))
        }
    }

    /// Identifies the algorithm of an existing public key, or nil when Quorum would not have issued it.
    public init?(publicKey: Certificate.PublicKey) {
        if P256.Signing.PublicKey(publicKey) != nil {
            self = .ecdsaP256
        } else if let rsa = _RSA.Signing.PublicKey(publicKey), rsa.keySizeInBits == 2048 {
            self = .rsa2048
        } else {
            return nil
        }
    }
}

extension Certificate.PrivateKey {
    /// The signature algorithm used with this key: SHA-256 for both EC and RSA (of any size, so imported RSA CAs work),
    /// which every TLS 1.2/1.3 peer supports.
    var signatureAlgorithm: Certificate.SignatureAlgorithm {
        _RSA.Signing.PublicKey(publicKey) == nil ? .ecdsaWithSHA256 : .sha256WithRSAEncryption
    }
}
