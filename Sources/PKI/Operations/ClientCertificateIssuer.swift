import Foundation
import X509

/// `quorumctl certs issue-client NAME --validity D`: a client certificate signed by a member's clients CA.
///
/// Written as `<out>/<name>.crt`, `<out>/<name>.key` (0600) and `<out>/ca.crt` (the current clients trust bundle), the
/// three files `etcdctl --cert --key --cacert` needs.
public enum ClientCertificateIssuer {
    public struct Result: Sendable {
        public var issued: IssuedCertificate
        public var certificatePath: URL
        public var keyPath: URL
        public var trustBundlePath: URL
    }

    public static func issue(
        user: String,
        validity: LeafLifetime = .default,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        organization: String? = nil,
        dataDirectory: URL,
        outputDirectory: URL,
        now: Date
    ) throws -> Result {
        var rng = SystemRandomNumberGenerator()
        return try issue(
            user: user, validity: validity, keyAlgorithm: keyAlgorithm, organization: organization,
            dataDirectory: dataDirectory, outputDirectory: outputDirectory, now: now, using: &rng)
    }

    public static func issue(
        user: String,
        validity: LeafLifetime = .default,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        organization: String? = nil,
        dataDirectory: URL,
        outputDirectory: URL,
        now: Date,
        using rng: inout some RandomNumberGenerator
    ) throws -> Result {
        guard !user.isEmpty, !user.contains("/") else {
            throw PKIError.issuance("client name \"\(user)\" must be non-empty and contain no '/'")
        }
        let layout = PKILayout(dataDirectory: dataDirectory)
        return try PKILock.withLock(layout) {
            guard let ca = try CAStore.load(.clients, layout: layout) else {
                throw PKIError.missingFile(
                    path: layout.caCertificate(.clients).path, hint: "is --data-dir the member's data directory?")
            }
            guard let authority = ca.authority else {
                throw PKIError.certificateAuthorityKeyMissing(
                    usage: .caClients, path: layout.caKey(.clients).path, dataDir: dataDirectory.path)
            }
            if now > authority.certificate.notValidAfter {
                throw PKIError.certificateAuthorityExpired(
                    usage: .caClients, path: ca.certificatePath, notAfter: authority.certificate.notValidAfter,
                    now: now, dataDir: dataDirectory.path)
            }
            let request = LeafRequest.client(
                user: user, validity: validity.seconds, keyAlgorithm: keyAlgorithm, organization: organization)
            let issued = try LeafIssuer(authority: authority).issue(request, now: now, using: &rng)
            try AtomicFileWriter.ensureDirectory(outputDirectory)
            let keyPath = outputDirectory.appendingPathComponent("\(user).key")
            let certificatePath = outputDirectory.appendingPathComponent("\(user).crt")
            let bundlePath = outputDirectory.appendingPathComponent("ca.crt")
            try AtomicFileWriter.write(issued.privateKeyPEM, to: keyPath, mode: AtomicFileWriter.privateKeyMode)
            try AtomicFileWriter.write(
                issued.certificatePEM, to: certificatePath, mode: AtomicFileWriter.certificateMode)
            let bundle =
                try CAStore.loadBundle(.clients, layout: layout)
                ?? TrustBundle(certificates: [authority.certificate], name: bundlePath.path)
            try AtomicFileWriter.write(bundle.pem, to: bundlePath, mode: AtomicFileWriter.certificateMode)
            return Result(
                issued: issued, certificatePath: certificatePath, keyPath: keyPath, trustBundlePath: bundlePath)
        }
    }
}
