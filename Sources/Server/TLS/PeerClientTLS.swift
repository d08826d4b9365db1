import GRPCNIOTransportHTTP2
import NIOCore
import NIOSSL
import PKI
import X509

/// Dialling other members with grpc-swift's Posix client transport, from the same reloadable peer material.
///
/// `transportSecurity(for:)` is evaluated for every new connection, so each dial presents the peer certificate and
/// trusts the peer bundle current at that moment (renewals and CA rotations apply to the next reconnect, like they
/// apply to the next accepted connection), and the server's chain is checked by `TLSVerifier` (bundle, CRL, SAN
/// against the dialled host, `--peer-cert-allowed-cn`/`-hostname`) so a refused dial is logged with its reason.
extension ReloadingTLSContext: PeerClientSecurity {
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
        let policy = TLSVerificationPolicy(
            role: .verifyingServer, allowedCN: options.allowedCN, allowedHostname: options.allowedHostname)
        let sink = self.sink
        let side = options.side
        tls.customVerificationCallback = { presented, promise in
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
