import Foundation
import X509

/// The PEM text the Server hands to NIOSSL, read as one consistent snapshot.
///
/// Reading `server.key` and `server.crt` separately could pair a freshly written key with the previous certificate if
/// a renewal runs in between; loading under the PKI lock and checking that each key matches its certificate means a
/// TLS reload either gets a matching pair or a clear error, never a context that fails every handshake.
public struct TLSMaterial: Sendable, Equatable {
    /// A certificate, its key and the bundle used to verify the other side.
    public struct Identity: Sendable, Equatable {
        public var certificatePEM: String
        public var privateKeyPEM: String
        public var trustBundlePEM: String
        /// notAfter of the certificate, so the caller can schedule the next reload check.
        public var notAfter: Date
    }

    /// `clients/server.crt|key` with `clients/ca.crt`.
    public var client: Identity
    /// `peers/peer.crt|key` with `peers/ca.crt`.
    public var peer: Identity
    /// `clients/crl.pem` when present.
    public var clientCRLPEM: String?

    public static func load(dataDirectory: URL) throws -> TLSMaterial {
        let layout = PKILayout(dataDirectory: dataDirectory)
        return try PKILock.withLock(layout) {
            let crlPath = layout.clientsCRL.path
            return TLSMaterial(
                client: try identity(.clientServer, layout: layout),
                peer: try identity(.peer, layout: layout),
                clientCRLPEM: FileManager.default.fileExists(atPath: crlPath)
                    ? try PEMCodec.readText(at: layout.clientsCRL) : nil)
        }
    }

    private static func identity(_ usage: CertificateUsage, layout: PKILayout) throws -> Identity {
        let certificateURL = layout.certificate(for: usage)
        let keyURL = layout.key(for: usage)
        let certificatePEM = try PEMCodec.readText(at: certificateURL)
        let privateKeyPEM = try PEMCodec.readText(at: keyURL)
        let certificate = try PEMCodec.certificate(fromPEM: certificatePEM, source: certificateURL.path)
        let key = try PEMCodec.privateKey(fromPEM: privateKeyPEM, source: keyURL.path)
        guard KeyPairCheck.matches(certificate: certificate, privateKey: key) else {
            throw PKIError.keyMismatch(
                certificate: "\(certificate.subject) (\(certificateURL.path))", path: keyURL.path)
        }
        let bundleURL = layout.trustBundle(usage.authority)
        let trustBundlePEM = try PEMCodec.readText(at: bundleURL)
        _ = try PEMCodec.certificates(fromPEM: trustBundlePEM, source: bundleURL.path)
        return Identity(
            certificatePEM: certificatePEM, privateKeyPEM: privateKeyPEM, trustBundlePEM: trustBundlePEM,
            notAfter: certificate.notValidAfter)
    }
}
