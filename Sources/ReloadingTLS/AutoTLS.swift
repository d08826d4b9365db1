import Foundation
import PKI
import X509

/// etcd's `--auto-tls` / `--peer-auto-tls`: a self-signed certificate under `<data-dir>/fixtures/{client,peer}/`.
///
/// Encrypts but does not authenticate (clients must skip verification), exactly as in etcd. The files are reused
/// while valid and carrying the wanted names, and regenerated at start-up otherwise, so an auto-TLS member never
/// starts with an expired certificate either.
package enum AutoTLS {
    package static func ensure(
        directory: URL, names: SubjectNames, validityYears: Int, keyAlgorithm: KeyAlgorithm, now: Date
    ) throws -> TLSFileSet {
        let certificateURL = directory.appendingPathComponent("cert.pem")
        let keyURL = directory.appendingPathComponent("key.pem")
        let files = TLSFileSet(certificate: certificateURL, key: keyURL)
        if let existing = try? LoadedTLSMaterial.load(files), existing.leaf.notValidAfter > now + 3_600,
            existing.leaf.notValidBefore <= now, SubjectNames(certificate: existing.leaf) == names
        {
            return files
        }
        var rng = SystemRandomNumberGenerator()
        let issued = try SelfSignedCertificate.make(
            names: names, validityYears: validityYears, keyAlgorithm: keyAlgorithm, now: now, using: &rng)
        try AtomicFileWriter.ensureDirectory(directory)
        try AtomicFileWriter.write(issued.privateKeyPEM, to: keyURL, mode: AtomicFileWriter.privateKeyMode)
        try AtomicFileWriter.write(issued.certificatePEM, to: certificateURL, mode: AtomicFileWriter.certificateMode)
        return files
    }
}
