import Foundation
import SwiftASN1
import X509

/// Signs leaf certificates (serving, peer and client) with a CA.
///
/// Leaves get: a fresh key, a random 128-bit serial, notBefore backdated for clock skew but never before the CA's own
/// notBefore, notAfter capped at the CA's notAfter (a leaf outliving its CA would fail verification early anyway, and
/// capping makes the renewal policy see the real deadline), AKI/SKI, and key usage digitalSignature, plus
/// keyEncipherment only for RSA keys, where RSA key transport makes it meaningful; on EC keys it is invalid.
public struct LeafIssuer: Sendable {
    public let authority: CertificateAuthority

    public init(authority: CertificateAuthority) {
        self.authority = authority
    }

    public func issue(
        _ request: LeafRequest,
        now: Date,
        using rng: inout some RandomNumberGenerator
    ) throws -> IssuedCertificate {
        let key = try request.keyAlgorithm.generatePrivateKey()
        return try issue(request, publicKey: key.publicKey, privateKey: key, now: now, using: &rng)
    }

    /// Issues for an existing key, e.g. when a client brings its own key and only the certificate is re-signed.
    public func issue(
        _ request: LeafRequest,
        reusing privateKey: Certificate.PrivateKey,
        now: Date,
        using rng: inout some RandomNumberGenerator
    ) throws -> IssuedCertificate {
        try issue(request, publicKey: privateKey.publicKey, privateKey: privateKey, now: now, using: &rng)
    }

    private func issue(
        _ request: LeafRequest,
        publicKey: Certificate.PublicKey,
        privateKey: Certificate.PrivateKey,
        now: Date,
        using rng: inout some RandomNumberGenerator
    ) throws -> IssuedCertificate {
        guard request.validity >= 1 else { throw PKIError.issuance("leaf validity must be at least one second") }
        let caCertificate = authority.certificate
        let issuedAt = IssuanceDefaults.wholeSeconds(now)
        guard issuedAt < caCertificate.notValidAfter else {
            throw PKIError.issuance(
                "cannot issue for \(request.names.commonName): CA \(caCertificate.subject) expired at "
                    + RFC3339.string(caCertificate.notValidAfter)
            )
        }
        let notBefore = max(
            issuedAt - IssuanceDefaults.backdate(forValidity: request.validity),
            caCertificate.notValidBefore
        )
        let notAfter = min(issuedAt + request.validity, caCertificate.notValidAfter)
        let subject = try DistinguishedName {
            if let organization = request.organization {
                OrganizationName(organization)
            }
            CommonName(request.names.commonName)
        }
        let extensions = try makeExtensions(request, publicKey: publicKey)
        let certificate = try Certificate(
            version: .v3,
            serialNumber: SerialNumberGenerator.next(using: &rng),
            publicKey: publicKey,
            notValidBefore: notBefore,
            notValidAfter: notAfter,
            issuer: caCertificate.subject,
            subject: subject,
            signatureAlgorithm: authority.privateKey.signatureAlgorithm,
            extensions: extensions,
            issuerPrivateKey: authority.privateKey
        )
        return IssuedCertificate(certificate: certificate, privateKey: privateKey)
    }

    private func makeExtensions(_ request: LeafRequest, publicKey: Certificate.PublicKey) throws
        -> Certificate.Extensions
    {
        let isRSA = KeyAlgorithm(publicKey: publicKey) == .rsa2048
        var extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: isRSA))
            try ExtendedKeyUsage(request.profile.extendedKeyUsages)
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authority.keyIdentifier)
        }
        let sans = request.names.sanGeneralNames
        if !sans.isEmpty {
            try extensions.append(SubjectAlternativeNames(sans).makeCertificateExtension())
        }
        return extensions
    }
}

extension SubjectNames {
    /// The SAN entries in X.509 form: DNS names first, then IPs.
    var sanGeneralNames: [GeneralName] {
        dnsNames.map { GeneralName.dnsName($0) }
            + ipAddresses.map { GeneralName.ipAddress(ASN1OctetString(contentBytes: $0.bytes[...])) }
    }

    /// Reads the names a certificate actually carries.
    public init(certificate: Certificate) {
        var dns: [String] = []
        var ips: [IPAddress] = []
        if let sans = try? certificate.extensions.subjectAlternativeNames {
            for name in sans {
                switch name {
                case .dnsName(let value): dns.append(value)
                case .ipAddress(let octets):
                    if let ip = IPAddress(bytes: Array(octets.bytes)) { ips.append(ip) }
                default: continue
                }
            }
        }
        self.init(commonName: certificate.subject.commonName ?? "", dnsNames: dns, ipAddresses: ips)
    }
}
