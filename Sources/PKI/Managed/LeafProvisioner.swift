import Foundation
import X509

/// Issues one leaf and writes it to its place in the layout.
///
/// Key first, certificate second: a crash in between leaves the old certificate next to a new key, which the next
/// renewal check reports as a key mismatch and repairs; the reverse order could leave a certificate whose key is gone.
enum LeafProvisioner {
    static func provision(
        _ usage: CertificateUsage,
        request: LeafRequest,
        authority: CertificateAuthority,
        layout: PKILayout,
        now: Date,
        using rng: inout some RandomNumberGenerator
    ) throws -> IssuedCertificate {
        let issued = try LeafIssuer(authority: authority).issue(request, now: now, using: &rng)
        let certificateURL = layout.certificate(for: usage)
        try AtomicFileWriter.ensureDirectory(certificateURL.deletingLastPathComponent())
        try AtomicFileWriter.write(
            issued.privateKeyPEM, to: layout.key(for: usage), mode: AtomicFileWriter.privateKeyMode)
        try AtomicFileWriter.write(issued.certificatePEM, to: certificateURL, mode: AtomicFileWriter.certificateMode)
        return issued
    }
}
