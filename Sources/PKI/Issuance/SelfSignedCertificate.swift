import Foundation
import X509

/// Self-signed certificates for etcd's `--auto-tls` and `--peer-auto-tls`.
///
/// These exist for compatibility and encrypted-but-unauthenticated test clusters, exactly as in etcd: peers and clients
/// cannot verify them, so they are never renewed by the managed PKI. Validity is whole years
/// (`--self-signed-cert-validity`, default 1) as etcd defines it.
public enum SelfSignedCertificate {
    public static func make(
        names: SubjectNames,
        validityYears: Int = 1,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        now: Date,
        using rng: inout some RandomNumberGenerator
    ) throws -> IssuedCertificate {
        guard validityYears >= 1 else {
            throw PKIError.issuance("--self-signed-cert-validity must be at least 1 year, got \(validityYears)")
        }
        let key = try keyAlgorithm.generatePrivateKey()
        let issuedAt = IssuanceDefaults.wholeSeconds(now)
        let notAfter = Calendar.utc.date(byAdding: .year, value: validityYears, to: issuedAt) ?? issuedAt
        let name = try DistinguishedName {
            OrganizationName("Quorum auto-tls")
            CommonName(names.commonName)
        }
        var extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: keyAlgorithm == .rsa2048))
            try ExtendedKeyUsage(LeafProfile.server.extendedKeyUsages)
            SubjectKeyIdentifier(hash: key.publicKey)
        }
        if !names.sanGeneralNames.isEmpty {
            try extensions.append(SubjectAlternativeNames(names.sanGeneralNames).makeCertificateExtension())
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: SerialNumberGenerator.next(using: &rng),
            publicKey: key.publicKey,
            notValidBefore: issuedAt - IssuanceDefaults.clockSkewAllowance,
            notValidAfter: notAfter,
            issuer: name,
            subject: name,
            signatureAlgorithm: key.signatureAlgorithm,
            extensions: extensions,
            issuerPrivateKey: key
        )
        return IssuedCertificate(certificate: certificate, privateKey: key)
    }
}

extension Calendar {
    /// A Gregorian calendar pinned to UTC: certificate times are UTC, and local time zones must never shift them.
    static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()
}
