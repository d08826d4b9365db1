import Foundation
import X509

/// A flat, printable view of a certificate: what `openssl x509 -noout -text` tells an operator, as data.
///
/// Reports, logs, JSON output and metrics labels are all built from this view so they agree with each other.
public struct CertificateInfo: Sendable, Equatable, Codable {
    public var subject: String
    public var issuer: String
    public var commonName: String?
    public var serialHex: String
    public var notBefore: Date
    public var notAfter: Date
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var isCertificateAuthority: Bool
    public var isSelfSigned: Bool
    /// "ECDSA P-256", "RSA 2048", or the library's description of anything else.
    public var keyAlgorithm: String
    /// Dotted names of the extended key usages, e.g. `serverAuth`, `clientAuth`.
    public var extendedKeyUsages: [String]
    public var sha256Fingerprint: String
    public var subjectKeyIdentifier: String?
    public var authorityKeyIdentifier: String?

    public init(_ certificate: Certificate) {
        subject = certificate.subject.description
        issuer = certificate.issuer.description
        commonName = certificate.subject.commonName
        serialHex = certificate.serialNumber.hexString
        notBefore = certificate.notValidBefore
        notAfter = certificate.notValidAfter
        let names = SubjectNames(certificate: certificate)
        dnsNames = names.dnsNames
        ipAddresses = names.ipAddresses.map(\.description)
        isCertificateAuthority = certificate.isCertificateAuthority
        isSelfSigned =
            certificate.subject == certificate.issuer
            && certificate.publicKey.isValidSignature(certificate.signature, for: certificate)
        keyAlgorithm =
            KeyAlgorithm(publicKey: certificate.publicKey)?.description
            ?? String(describing: certificate.publicKey)
        extendedKeyUsages = ((try? certificate.extensions.extendedKeyUsage).map { Array($0) } ?? []).map(Self.name)
        sha256Fingerprint = certificate.sha256Fingerprint
        subjectKeyIdentifier = (try? certificate.extensions.subjectKeyIdentifier).map {
            Fingerprint.hex($0.keyIdentifier)
        }
        authorityKeyIdentifier = (try? certificate.extensions.authorityKeyIdentifier)?.keyIdentifier.map {
            Fingerprint.hex($0)
        }
    }

    /// Lifetime from notBefore to notAfter.
    public var lifetime: TimeInterval { notAfter.timeIntervalSince(notBefore) }

    /// Time left at `now` (negative once expired).
    public func remaining(at now: Date) -> TimeInterval { notAfter.timeIntervalSince(now) }

    public func isValid(at now: Date) -> Bool { notBefore <= now && now <= notAfter }

    private static func name(_ usage: ExtendedKeyUsage.Usage) -> String {
        switch usage {
        case .serverAuth: return "serverAuth"
        case .clientAuth: return "clientAuth"
        case .codeSigning: return "codeSigning"
        case .emailProtection: return "emailProtection"
        case .timeStamping: return "timeStamping"
        case .ocspSigning: return "OCSPSigning"
        case .any: return "anyExtendedKeyUsage"
        default: return usage.description
        }
    }
}

/// Checks that a private key belongs to a certificate.
///
/// A key that does not match its certificate makes every TLS handshake fail with an opaque error, and is the classic
/// result of a half-finished manual renewal; Quorum checks it before serving and at every renewal check.
public enum KeyPairCheck {
    public static func matches(certificate: Certificate, privateKey: Certificate.PrivateKey) -> Bool {
        certificate.publicKey == privateKey.publicKey
    }
}
