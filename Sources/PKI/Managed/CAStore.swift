import Foundation
import X509

/// A CA as found in a member's data directory: always the certificate, and the key when this member may sign.
///
/// A CA without a key is an *externally managed* CA: the operator supplies leaves, Quorum verifies and reports them
/// but cannot renew them, and says so loudly.
struct LoadedCA: Sendable {
    let kind: CAKind
    let certificate: Certificate
    let authority: CertificateAuthority?
    let certificatePath: String

    var isManaged: Bool { authority != nil }
}

/// Reads, creates and imports the CA files of a data directory.
enum CAStore {
    /// Loads the current CA of `kind`; nil when the certificate file does not exist.
    static func load(_ kind: CAKind, layout: PKILayout) throws -> LoadedCA? {
        try load(kind, generation: .current, layout: layout)
    }

    static func load(_ kind: CAKind, generation: PKILayout.Generation, layout: PKILayout) throws -> LoadedCA? {
        let certificateURL = layout.caCertificate(kind, generation)
        let keyURL = layout.caKey(kind, generation)
        guard FileManager.default.fileExists(atPath: certificateURL.path) else { return nil }
        let certificate = try PEMCodec.certificate(at: certificateURL)
        guard FileManager.default.fileExists(atPath: keyURL.path) else {
            return LoadedCA(kind: kind, certificate: certificate, authority: nil, certificatePath: certificateURL.path)
        }
        let key = try PEMCodec.privateKey(at: keyURL)
        guard KeyPairCheck.matches(certificate: certificate, privateKey: key) else {
            throw PKIError.keyMismatch(
                certificate: "\(certificate.subject) (\(certificateURL.path))",
                path: keyURL.path + "; if a CA rotation was interrupted, re-run quorumctl certs rotate-ca --data-dir "
                    + layout.dataDirectory.path)
        }
        let authority = try CertificateAuthority(certificate: certificate, privateKey: key)
        return LoadedCA(
            kind: kind, certificate: certificate, authority: authority, certificatePath: certificateURL.path)
    }

    /// Writes a CA pair: key first, then certificate, so a crash in between leaves a key/cert mismatch that the next
    /// load reports, never a certificate whose key was lost.
    static func write(
        _ authority: CertificateAuthority, kind: CAKind, generation: PKILayout.Generation, layout: PKILayout
    )
        throws
    {
        try AtomicFileWriter.ensureDirectory(layout.caDirectory)
        try AtomicFileWriter.write(
            PEMCodec.pem(for: authority.privateKey), to: layout.caKey(kind, generation),
            mode: AtomicFileWriter.privateKeyMode)
        try AtomicFileWriter.write(
            PEMCodec.pem(for: authority.certificate), to: layout.caCertificate(kind, generation),
            mode: AtomicFileWriter.certificateMode)
    }

    /// Copies a CA (certificate and, when present, key) from a directory laid out like `pki/ca/`, e.g. the output of
    /// `quorumctl pki init`. Returns false when the source has no certificate for `kind`.
    static func importCA(_ kind: CAKind, from directory: URL, into layout: PKILayout) throws -> Bool {
        let source = PKILayout(dataDirectory: directory)
        let certificateURL = directory.appendingPathComponent(source.caCertificate(kind).lastPathComponent)
        let keyURL = directory.appendingPathComponent(source.caKey(kind).lastPathComponent)
        guard FileManager.default.fileExists(atPath: certificateURL.path) else { return false }
        let certificate = try PEMCodec.certificate(at: certificateURL)
        try AtomicFileWriter.ensureDirectory(layout.caDirectory)
        if FileManager.default.fileExists(atPath: keyURL.path) {
            let key = try PEMCodec.privateKey(at: keyURL)
            try write(
                try CertificateAuthority(certificate: certificate, privateKey: key), kind: kind, generation: .current,
                layout: layout)
        } else {
            try AtomicFileWriter.write(
                PEMCodec.pem(for: certificate), to: layout.caCertificate(kind), mode: AtomicFileWriter.certificateMode)
        }
        return true
    }

    static func loadBundle(_ kind: CAKind, layout: PKILayout) throws -> TrustBundle? {
        let url = layout.trustBundle(kind)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try TrustBundle.load(from: url)
    }

    @discardableResult
    static func writeBundle(_ bundle: TrustBundle, kind: CAKind, layout: PKILayout) throws -> AtomicFileWriter.Outcome {
        try AtomicFileWriter.write(bundle.pem, to: layout.trustBundle(kind), mode: AtomicFileWriter.certificateMode)
    }
}
