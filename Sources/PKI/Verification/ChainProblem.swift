import Foundation

/// One reason a certificate chain is not acceptable, phrased for the operator who has to fix it.
///
/// The wording deliberately mirrors what Go's crypto/x509 says ("expired", "not yet valid", "signed by unknown
/// authority") so people searching etcd issues find the same terms, but adds the facts Go leaves out: which
/// certificate, which time, which bundle, which names.
public enum ChainProblem: Sendable, Equatable, CustomStringConvertible {
    case expired(subject: String, notAfter: Date, now: Date)
    case notYetValid(subject: String, notBefore: Date, now: Date)
    case unknownAuthority(issuer: String, bundle: String)
    /// A CA with the right name is in the bundle but its key did not sign the certificate (typically a re-created CA
    /// with the same name).
    case signatureMismatch(subject: String, issuer: String, bundle: String)
    case issuerNotCertificateAuthority(issuer: String)
    case hostNotInSAN(host: String, has: [String])
    case missingExtendedKeyUsage(subject: String, usage: String)
    case revoked(serialHex: String, crl: String)
    case crlExpired(crl: String, nextUpdate: Date, now: Date)
    case crlSignatureInvalid(crl: String, issuer: String)

    public var description: String {
        switch self {
        case .expired(let subject, let notAfter, let now):
            return "certificate \(subject) expired at \(RFC3339.string(notAfter)) (now \(RFC3339.string(now)))"
        case .notYetValid(let subject, let notBefore, let now):
            return "certificate \(subject) is not yet valid until \(RFC3339.string(notBefore)) "
                + "(now \(RFC3339.string(now))); check clocks"
        case .unknownAuthority(let issuer, let bundle):
            return "signed by an unknown authority: issuer \(issuer) is not in \(bundle)"
        case .signatureMismatch(let subject, let issuer, let bundle):
            return "signed by an unknown authority: \(bundle) has a CA named \(issuer) but it did not sign "
                + "\(subject) (the CA was probably re-created; re-issue the certificate or fix the bundle)"
        case .issuerNotCertificateAuthority(let issuer):
            return "issuer \(issuer) is not a certificate authority (basicConstraints CA:FALSE)"
        case .hostNotInSAN(let host, let has):
            let list = has.isEmpty ? "no SANs" : has.joined(separator: ", ")
            return "SAN does not contain \(host) (has: \(list))"
        case .missingExtendedKeyUsage(let subject, let usage):
            return "certificate \(subject) is not valid for \(usage) (extended key usage missing)"
        case .revoked(let serialHex, let crl):
            return "serial \(serialHex) is revoked by CRL \(crl)"
        case .crlExpired(let crl, let nextUpdate, let now):
            return "CRL \(crl) is stale: nextUpdate was \(RFC3339.string(nextUpdate)) (now \(RFC3339.string(now)))"
        case .crlSignatureInvalid(let crl, let issuer):
            return "CRL \(crl) claims issuer \(issuer) but is not signed by that CA; ignoring a possibly forged list"
        }
    }
}
