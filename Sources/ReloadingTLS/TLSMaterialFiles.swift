import Foundation
import PKI
import X509

#if canImport(Glibc)
    import Glibc
#endif

/// The files one side of a member serves from and verifies against.
public struct TLSFileSet: Sendable, Equatable {
    public var certificate: URL
    public var key: URL
    /// The CA bundle the other side's certificate must chain to; nil when nothing is verified.
    public var trustBundle: URL?
    public var crl: URL?
    /// Set when the files live in a managed PKI directory: they are then read under the PKI lock, so a renewal in
    /// progress (key written, certificate not yet) is never half-read.
    public var layout: PKILayout?

    public init(certificate: URL, key: URL, trustBundle: URL? = nil, crl: URL? = nil, layout: PKILayout? = nil) {
        self.certificate = certificate
        self.key = key
        self.trustBundle = trustBundle
        self.crl = crl
        self.layout = layout
    }

    /// Every file whose change must trigger a reload. A CRL path is watched even while it does not exist, so that
    /// `quorumctl certs revoke` creating `clients/crl.pem` takes effect without a restart.
    var watched: [URL] { [certificate, key] + [trustBundle, crl].compactMap { $0 } }
}

/// One consistent snapshot of a side's TLS files, parsed and checked.
public struct LoadedTLSMaterial: Sendable {
    /// The served chain, leaf first.
    public var chain: [Certificate]
    public var privateKeyPEM: String
    public var trustBundle: TrustBundle?
    public var crl: ChainVerifier.NamedCRL?
    /// SHA-256 over every input file's bytes: equal fingerprints mean nothing to reload.
    public var fingerprint: String

    public var leaf: Certificate { chain[0] }

    /// Reads and validates the files. Throws with a message naming the file when a file is missing or unreadable,
    /// or when the key does not belong to the certificate (typically: one of the two was replaced, the other not yet).
    public static func load(_ files: TLSFileSet) throws -> LoadedTLSMaterial {
        if let layout = files.layout {
            return try PKILock.withLock(layout) { try loadUnlocked(files) }
        }
        return try loadUnlocked(files)
    }

    private static func loadUnlocked(_ files: TLSFileSet) throws -> LoadedTLSMaterial {
        let certificatePEM = try PEMCodec.readText(at: files.certificate)
        let keyPEM = try PEMCodec.readText(at: files.key)
        let chain = try PEMCodec.certificates(fromPEM: certificatePEM, source: files.certificate.path)
        guard let leaf = chain.first else {
            throw PKIError.invalidPEM(source: files.certificate.path, reason: "no certificate in file")
        }
        let key = try PEMCodec.privateKey(fromPEM: keyPEM, source: files.key.path)
        guard KeyPairCheck.matches(certificate: leaf, privateKey: key) else {
            throw PKIError.keyMismatch(certificate: "\(leaf.subject) (\(files.certificate.path))", path: files.key.path)
        }
        var hashed = Array(certificatePEM.utf8) + Array(keyPEM.utf8)
        var bundle: TrustBundle?
        if let url = files.trustBundle {
            let text = try PEMCodec.readText(at: url)
            bundle = try TrustBundle(pem: text, name: url.path)
            hashed += Array(text.utf8)
        }
        var crl: ChainVerifier.NamedCRL?
        if let url = files.crl, FileManager.default.fileExists(atPath: url.path) {
            let parsed = try CertificateRevocationList.load(from: url)
            crl = ChainVerifier.NamedCRL(parsed, name: url.path)
            hashed += parsed.derBytes
        }
        return LoadedTLSMaterial(
            chain: chain, privateKeyPEM: keyPEM, trustBundle: bundle, crl: crl,
            fingerprint: Fingerprint.sha256(derBytes: hashed))
    }
}

/// Cheap change detection for watched files: device, inode, size and modification time of each, following symlinks.
///
/// Following symlinks matters for Kubernetes secrets, which are replaced by swapping a `..data` symlink: the path
/// stays the same but `stat` sees a different inode. Atomic rename-into-place (cert-manager, Quorum itself) changes
/// the inode too, and in-place rewrites change size or mtime.
package struct FileStamp: Equatable, Sendable {
    private var entries: [String]

    package init(_ urls: [URL]) {
        entries = urls.map { url in
            var info = stat()
            guard stat(url.path, &info) == 0 else { return "\(url.path):absent" }
            return
                "\(url.path):\(info.st_dev):\(info.st_ino):\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        }
    }
}
