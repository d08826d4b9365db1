import Foundation
import X509

extension CertificateAuthority {
    /// Creates a self-signed CA: basicConstraints CA:TRUE with pathLen 0 (Quorum never issues intermediates), key
    /// usage keyCertSign+cRLSign, and a subject key identifier for chain building.
    ///
    /// The common name carries the creation time (`quorum-clients-ca@1700000000`, the k3s/kubeadm convention) so the
    /// old and new CA of a rotation are distinguishable in every message and in `openssl` output.
    public static func generate(
        kind: CAKind,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        validity: TimeInterval = IssuanceDefaults.caValidity,
        now: Date,
        using rng: inout some RandomNumberGenerator
    ) throws -> CertificateAuthority {
        let issuedAt = IssuanceDefaults.wholeSeconds(now)
        let commonName = "quorum-\(kind.rawValue)-ca@\(Int(issuedAt.timeIntervalSince1970))"
        return try generate(
            commonName: commonName,
            keyAlgorithm: keyAlgorithm,
            validity: validity,
            now: now,
            using: &rng
        )
    }

    /// Creates a self-signed CA with an explicit common name.
    public static func generate(
        commonName: String,
        organization: String = "Quorum",
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        validity: TimeInterval = IssuanceDefaults.caValidity,
        now: Date,
        using rng: inout some RandomNumberGenerator
    ) throws -> CertificateAuthority {
        guard validity >= 1 else { throw PKIError.issuance("CA validity must be at least one second") }
        let issuedAt = IssuanceDefaults.wholeSeconds(now)
        let key = try keyAlgorithm.generatePrivateKey()
        let name = try DistinguishedName {
            OrganizationName(organization)
            CommonName(commonName)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: key.publicKey)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: SerialNumberGenerator.next(using: &rng),
            publicKey: key.publicKey,
            notValidBefore: issuedAt - IssuanceDefaults.backdate(forValidity: validity),
            notValidAfter: issuedAt + validity,
            issuer: name,
            subject: name,
            signatureAlgorithm: key.signatureAlgorithm,
            extensions: extensions,
            issuerPrivateKey: key
        )
        return try CertificateAuthority(certificate: certificate, privateKey: key)
    }
}
