import Foundation

/// `quorumctl pki init`: creates the cluster's two CAs once, in a directory to hand to every member.
///
/// A multi-member cluster must share its CAs (peers verify each other against `peers/ca.crt`), so they are made once
/// here rather than by each member at first start. The output directory uses the same file names as `<data-dir>/pki/ca/`
/// (`clients-ca.crt|key`, `peers-ca.crt|key`) so it can be copied there verbatim or passed to the server as its CA
/// source directory.
public enum PKIInit {
    public struct Result: Sendable, Equatable {
        public var certificateAuthorities: [CAKind: CertificateStatus]
        public var outputDirectory: URL
    }

    public static func run(
        outputDirectory: URL,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        validity: TimeInterval = IssuanceDefaults.caValidity,
        overwrite: Bool = false,
        now: Date
    ) throws -> Result {
        var rng = SystemRandomNumberGenerator()
        return try run(
            outputDirectory: outputDirectory, keyAlgorithm: keyAlgorithm, validity: validity, overwrite: overwrite,
            now: now, using: &rng)
    }

    public static func run(
        outputDirectory: URL,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        validity: TimeInterval = IssuanceDefaults.caValidity,
        overwrite: Bool = false,
        now: Date,
        using rng: inout some RandomNumberGenerator
    ) throws -> Result {
        try AtomicFileWriter.ensureDirectory(outputDirectory)
        var statuses: [CAKind: CertificateStatus] = [:]
        for kind in CAKind.allCases {
            let certificateURL = outputDirectory.appendingPathComponent("\(kind.rawValue)-ca.crt")
            let keyURL = outputDirectory.appendingPathComponent("\(kind.rawValue)-ca.key")
            if !overwrite, FileManager.default.fileExists(atPath: certificateURL.path) {
                throw PKIError.issuance(
                    "\(certificateURL.path) already exists; refusing to replace a CA that members may already trust "
                        + "(use rotate-ca to replace a CA)")
            }
            let authority = try CertificateAuthority.generate(
                kind: kind, keyAlgorithm: keyAlgorithm, validity: validity, now: now, using: &rng)
            try AtomicFileWriter.write(
                PEMCodec.pem(for: authority.privateKey), to: keyURL, mode: AtomicFileWriter.privateKeyMode)
            try AtomicFileWriter.write(
                PEMCodec.pem(for: authority.certificate), to: certificateURL, mode: AtomicFileWriter.certificateMode)
            statuses[kind] = CertificateStatus(
                usage: kind.usage, path: certificateURL.path, certificate: authority.certificate, managed: true)
        }
        return Result(certificateAuthorities: statuses, outputDirectory: outputDirectory)
    }
}
