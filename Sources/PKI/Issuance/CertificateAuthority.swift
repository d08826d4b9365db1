import Foundation
import X509

/// A CA certificate together with its private key: everything needed to sign leaves and CRLs.
///
/// A `CertificateAuthority` can only be built when the key matches the certificate, so code holding one never signs
/// something that will fail verification later.
public struct CertificateAuthority: Sendable, Equatable {
    public let certificate: Certificate
    public let privateKey: Certificate.PrivateKey

    public init(certificate: Certificate, privateKey: Certificate.PrivateKey) throws {
        guard certificate.publicKey == privateKey.publicKey else {
            throw PKIError.keyMismatch(certificate: certificate.subject.description, path: nil)
        }
        guard certificate.isCertificateAuthority else {
            throw PKIError.notACertificateAuthority(subject: certificate.subject.description)
        }
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// The subject key identifier leaves put in their authority key identifier.
    var keyIdentifier: ArraySlice<UInt8> {
        if let ski = try? certificate.extensions.subjectKeyIdentifier {
            return ski.keyIdentifier
        }
        return SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier
    }
}

extension Certificate {
    /// True when basicConstraints says CA:TRUE.
    public var isCertificateAuthority: Bool {
        guard let constraints = try? extensions.basicConstraints else { return false }
        if case .isCertificateAuthority = constraints { return true }
        return false
    }

    /// SHA-256 over the DER encoding: the identity of a certificate, stable across PEM re-encodings.
    public var sha256Fingerprint: String {
        Fingerprint.sha256(derBytes: (try? derBytes) ?? [])
    }
}
