import Foundation
@_spi(FixedExpiryValidationTime) import X509

/// A second opinion from swift-certificates' RFC 5280 verifier.
///
/// `ChainVerifier` explains failures; this confirms a positive verdict with an independent, standards-complete
/// implementation (critical-extension handling, name constraints, path length). The Server target can use the same
/// call in a custom peer-verification callback.
public enum RFC5280Check {
    public static func isTrusted(
        _ leaf: Certificate,
        intermediates: [Certificate] = [],
        bundle: TrustBundle,
        at now: Date
    ) async -> Bool {
        var verifier = Verifier(rootCertificates: CertificateStore(bundle.certificates)) {
            RFC5280Policy(fixedExpiryValidationTime: now)
        }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates))
        if case .validCertificate = result { return true }
        return false
    }
}
