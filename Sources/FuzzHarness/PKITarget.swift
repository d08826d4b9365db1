import Foundation
import PKI
import X509

/// Certificate material as a member loads it from `--cert-file`, `--key-file`, `--trusted-ca-file` and
/// `--client-crl-file` (and `quorumctl certs` reads it): the bytes are a file, read as a PEM certificate chain, a
/// PEM private key, a trust bundle and a CRL (PEM or DER); what parses is then described (`CertificateInfo`),
/// verified as a chain against itself with the CRL, and matched against the key.
enum PKITarget {
    /// A fixed time, so that an input verifies the same way on every run.
    static let now = Date(timeIntervalSince1970: 1_780_000_000)

    static func run(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        let chain = (try? PEMCodec.certificates(fromPEM: text)) ?? []
        let key = try? PEMCodec.privateKey(fromPEM: text)
        let bundle = try? TrustBundle(pem: text, name: "fuzz")
        let crl = try? CertificateRevocationList(bytes: bytes)
        for certificate in chain {
            _ = CertificateInfo(certificate)
            if let key { _ = KeyPairCheck.matches(certificate: certificate, privateKey: key) }
            if let crl {
                _ = crl.isRevoked(certificate)
                _ = crl.isSignatureValid(from: certificate)
            }
        }
        if let leaf = chain.first {
            _ = ChainVerifier.verify(
                leaf, intermediates: Array(chain.dropFirst()),
                against: bundle ?? TrustBundle(certificates: chain, name: "fuzz"), at: now, host: "127.0.0.1",
                requiredUsage: .serverAuth, revocation: crl.map { ChainVerifier.NamedCRL($0, name: "fuzz") })
        }
        if let key { _ = try? PEMCodec.pem(for: key) }
        if !chain.isEmpty { _ = try? PEMCodec.pem(for: chain) }
    }
}
