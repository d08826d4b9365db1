import GRPCNIOTransportHTTP2
import NIOCore
import NIOSSL
import PKI
import ReloadingTLS
import X509

/// Dialling other members from the same reloadable peer material the listener serves.
///
/// Each maker reads the material current when it is called: `makeTLSHandler` for every connection the Raft link
/// dials, `transportSecurity` once per grpc-swift client, which keeps it for every connection it ever makes. So the
/// peer transport re-makes its clients and re-dials its links when `materialGeneration` moves (renewal, CA rotation,
/// CRL change); see `PeerSender` and `RaftLinkState`. The server's chain is checked by `TLSVerifier` (bundle, CRL,
/// SAN against the dialled host, `--peer-cert-allowed-cn`/`-hostname`) so a refused dial is logged with its reason.
extension ReloadingTLSContext: PeerClientSecurity {
    public var materialGeneration: Int { reloadCount }

    public func onMaterialChange(_ body: @escaping @Sendable () -> Void) { onReload(body) }

    public var presentedIdentity: PresentedIdentity? {
        let material = self.material
        let leaf = material.leaf
        let description =
            "certificate \(leaf.subject) (serial \(leaf.serialNumber.hexString), valid until "
            + "\(RFC3339.string(leaf.notValidAfter)), file \(files.certificate.path))"
        // What the other members would find, judged by the bundle this member has: they share it in a cluster.
        let problem: String?
        switch TLSVerifier.verify(
            chain: material.chain, bundle: material.trustBundle, crl: material.crl,
            policy: TLSVerificationPolicy(role: .verifyingClient))
        {
        case .success: problem = nil
        case .failure(let rejection): problem = rejection.message
        }
        return PresentedIdentity(description: description, problem: problem)
    }

    public func transportSecurity(for url: ListenURL) -> HTTP2ClientTransport.Posix.TransportSecurity {
        guard url.isTLS else { return .plaintext }
        return .tls(clientTLS(host: url.host))
    }

    public func makeTLSHandler(for url: ListenURL) throws -> NIOSSLClientHandler? {
        guard url.isTLS else { return nil }
        return try makeClientHandler(host: url.host)
    }

    /// The client TLS configuration for one dial to `host`.
    public func clientTLS(host: String) -> HTTP2ClientTransport.Posix.TransportSecurity.TLS {
        let material = self.material
        let chain = material.chain.compactMap { try? $0.derBytes }.map {
            TLSConfig.CertificateSource.bytes($0, format: .der)
        }
        let roots = (material.trustBundle?.certificates ?? []).compactMap { try? $0.derBytes }.map {
            TLSConfig.CertificateSource.bytes($0, format: .der)
        }
        var tls = HTTP2ClientTransport.Posix.TransportSecurity.TLS(
            certificateChain: chain,
            privateKey: .bytes(Array(material.privateKeyPEM.utf8), format: .pem),
            serverCertificateVerification: .noHostnameVerification,
            trustRoots: .certificates(roots))
        // Allowed CN and hostname are the accepting side's business (see `makeClientHandler`).
        let policy = TLSVerificationPolicy(role: .verifyingServer)
        let sink = self.sink
        let side = options.side
        let verify = options.verifyDialledPeer
        tls.customVerificationCallback = { presented, promise in
            guard verify else {
                return promise.succeed(.certificateVerified(VerificationMetadata(ValidatedCertificateChain(presented))))
            }
            switch TLSVerifier.verify(
                presented: presented, bundle: material.trustBundle, crl: material.crl, policy: policy,
                expectedHost: host)
            {
            case .success:
                promise.succeed(.certificateVerified(VerificationMetadata(ValidatedCertificateChain(presented))))
            case .failure(let rejection):
                sink.handshakeFailed(rejection, side: side + "-dial", remote: nil)
                promise.succeed(.failed)
            }
        }
        return tls
    }
}
