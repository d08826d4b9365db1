import Foundation
import X509

/// Verifies a leaf certificate against a trust bundle and explains every failure in operator language.
///
/// This is Quorum's own synchronous check (path building by issuer name plus signature, validity of every
/// certificate in the path, CA flag, host name, extended key usage, revocation). It exists because the questions an
/// operator asks, "which file, which date, which name", are not answered by a yes/no verifier. The result lists *all*
/// problems rather than the first, so one `doctor` run shows everything that must be fixed.
public enum ChainVerifier {
    /// A revocation list together with the file it came from (for messages).
    public struct NamedCRL: Sendable {
        public var crl: CertificateRevocationList
        public var name: String

        public init(_ crl: CertificateRevocationList, name: String) {
            self.crl = crl
            self.name = name
        }
    }

    /// Upper bound on path length; Quorum itself never issues intermediates, but endpoints run by others may.
    static let maximumDepth = 5

    public static func verify(
        _ leaf: Certificate,
        intermediates: [Certificate] = [],
        against bundle: TrustBundle,
        at now: Date,
        host: String? = nil,
        requiredUsage: ExtendedKeyUsage.Usage? = nil,
        revocation: NamedCRL? = nil
    ) -> ChainVerification {
        var problems = validityProblems(leaf, at: now)
        let (chain, pathProblems) = buildPath(from: leaf, intermediates: intermediates, bundle: bundle, at: now)
        problems += pathProblems
        if let host, !SubjectNames(certificate: leaf).covers(host: host) {
            problems.append(.hostNotInSAN(host: host, has: SubjectNames(certificate: leaf).allNames))
        }
        if let requiredUsage, !allows(leaf, usage: requiredUsage) {
            problems.append(
                .missingExtendedKeyUsage(subject: leaf.subject.description, usage: String(describing: requiredUsage))
            )
        }
        if let revocation {
            problems += revocationProblems(leaf, anchor: chain.count > 1 ? chain.last : nil, revocation, at: now)
        }
        return ChainVerification(chain: chain, problems: problems, bundleName: bundle.name)
    }

    static func validityProblems(_ certificate: Certificate, at now: Date) -> [ChainProblem] {
        let subject = certificate.subject.description
        if now > certificate.notValidAfter {
            return [.expired(subject: subject, notAfter: certificate.notValidAfter, now: now)]
        }
        if now < certificate.notValidBefore {
            return [.notYetValid(subject: subject, notBefore: certificate.notValidBefore, now: now)]
        }
        return []
    }

    private static func buildPath(
        from leaf: Certificate,
        intermediates: [Certificate],
        bundle: TrustBundle,
        at now: Date
    ) -> ([Certificate], [ChainProblem]) {
        var chain = [leaf]
        var problems: [ChainProblem] = []
        var current = leaf
        for _ in 0..<maximumDepth {
            if bundle.contains(current) { return (chain, problems) }  // pinned or self-signed anchor
            let anchors = bundle.issuers(of: current)
            if let anchor = anchors.first(where: { validityProblems($0, at: now).isEmpty }) ?? anchors.first {
                chain.append(anchor)
                problems += validityProblems(anchor, at: now) + caProblems(anchor)
                return (chain, problems)
            }
            let next = intermediates.first { candidate in
                candidate.subject == current.issuer && candidate != current
                    && candidate.publicKey.isValidSignature(current.signature, for: current)
            }
            guard let intermediate = next else {
                let issuer = current.issuer.description
                if bundle.certificates.contains(where: { $0.subject == current.issuer }) {
                    problems.append(
                        .signatureMismatch(subject: current.subject.description, issuer: issuer, bundle: bundle.name)
                    )
                } else {
                    problems.append(.unknownAuthority(issuer: issuer, bundle: bundle.name))
                }
                return (chain, problems)
            }
            chain.append(intermediate)
            problems += validityProblems(intermediate, at: now) + caProblems(intermediate)
            current = intermediate
        }
        problems.append(.unknownAuthority(issuer: current.issuer.description, bundle: bundle.name))
        return (chain, problems)
    }

    private static func caProblems(_ issuer: Certificate) -> [ChainProblem] {
        issuer.isCertificateAuthority ? [] : [.issuerNotCertificateAuthority(issuer: issuer.subject.description)]
    }

    private static func allows(_ leaf: Certificate, usage: ExtendedKeyUsage.Usage) -> Bool {
        guard let eku = try? leaf.extensions.extendedKeyUsage else { return true }  // absent EKU means any usage
        return eku.contains(usage) || eku.contains(.any)
    }

    private static func revocationProblems(
        _ leaf: Certificate,
        anchor: Certificate?,
        _ revocation: NamedCRL,
        at now: Date
    ) -> [ChainProblem] {
        let crl = revocation.crl
        guard crl.issuer == leaf.issuer else { return [] }
        if let anchor, !crl.isSignatureValid(from: anchor) {
            return [.crlSignatureInvalid(crl: revocation.name, issuer: crl.issuer.description)]
        }
        var problems: [ChainProblem] = []
        if crl.entry(for: leaf.serialNumber) != nil {
            problems.append(.revoked(serialHex: leaf.serialNumber.hexString, crl: revocation.name))
        }
        if let nextUpdate = crl.nextUpdate, crl.isStale(at: now) {
            problems.append(.crlExpired(crl: revocation.name, nextUpdate: nextUpdate, now: now))
        }
        return problems
    }
}

/// The outcome of `ChainVerifier.verify`.
public struct ChainVerification: Sendable {
    /// Leaf first, trust anchor last when one was found.
    public let chain: [Certificate]
    public let problems: [ChainProblem]
    public let bundleName: String

    public var isValid: Bool { problems.isEmpty }

    /// The bundle CA that anchors the chain, when path building reached one.
    public var anchor: Certificate? { chain.count > 1 ? chain.last : nil }

    /// "ok" or the problems joined with "; ", suitable for a log line.
    public var explanation: String {
        problems.isEmpty ? "ok" : problems.map(\.description).joined(separator: "; ")
    }
}
