import Foundation
import X509

/// A set of trusted CA certificates with the name of the file they came from.
///
/// The name is carried so that a verification failure can say *which* bundle lacked the issuer
/// ("issuer … is not in /var/lib/quorum/pki/clients/ca.crt") instead of the anonymous "unknown authority".
public struct TrustBundle: Sendable, Equatable {
    public private(set) var certificates: [Certificate]
    public var name: String

    public init(certificates: [Certificate], name: String) {
        self.certificates = []
        self.name = name
        for certificate in certificates { append(certificate) }
    }

    public init(pem: String, name: String) throws {
        self.init(certificates: try PEMCodec.certificates(fromPEM: pem, source: name), name: name)
    }

    public static func load(from url: URL) throws -> TrustBundle {
        try TrustBundle(certificates: PEMCodec.certificates(at: url), name: url.path)
    }

    /// Adds a CA unless an identical certificate is already present, keeping bundle edits idempotent.
    public mutating func append(_ certificate: Certificate) {
        if !contains(certificate) { certificates.append(certificate) }
    }

    /// Removes every copy of a certificate (by DER identity).
    public mutating func remove(_ certificate: Certificate) {
        certificates.removeAll { $0 == certificate }
    }

    public func contains(_ certificate: Certificate) -> Bool {
        certificates.contains(certificate)
    }

    /// The CAs in this bundle whose key actually signed `certificate`.
    public func issuers(of certificate: Certificate) -> [Certificate] {
        certificates.filter { candidate in
            candidate.subject == certificate.issuer
                && candidate.publicKey.isValidSignature(certificate.signature, for: certificate)
        }
    }

    public var pem: String {
        get throws { try PEMCodec.pem(for: certificates) }
    }
}
