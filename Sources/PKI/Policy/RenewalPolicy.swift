import Foundation
import X509

/// When to renew a leaf certificate. A pure function of the certificate, the desired identity and the time.
///
/// The rule: renew once less than `renewalFraction` (default 1/3) of the lifetime remains, moved earlier by up to
/// `jitterFraction` of the lifetime (default 10%) so that members do not all renew in the same minute. With the
/// one-year default a leaf is renewed about eight months in, leaving four months in which a failing renewal is visible
/// on dashboards before anything breaks, which is the opposite of the etcd-manager outage.
///
/// The same evaluation runs at start-up and periodically, and also renews immediately when the certificate is
/// missing, unreadable, expired, not yet valid, paired with the wrong key, signed by a CA that is not trusted any more
/// or is not the current signing CA (CA rotation), or no longer carries the names and usages the member wants.
public struct RenewalPolicy: Sendable, Equatable {
    public var renewalFraction: Double
    public var jitterFraction: Double
    /// Checks happen at least this often, so external changes (new bundle, operator edits) are noticed.
    public var maximumCheckInterval: TimeInterval
    /// Checks never happen more often than this, so a failing renewal cannot spin.
    public var minimumCheckInterval: TimeInterval

    public init(
        renewalFraction: Double = 1.0 / 3.0,
        jitterFraction: Double = 0.1,
        maximumCheckInterval: TimeInterval = 3_600,
        minimumCheckInterval: TimeInterval = 1
    ) {
        self.renewalFraction = min(max(renewalFraction, 0.01), 0.99)
        self.jitterFraction = min(max(jitterFraction, 0), 1 - self.renewalFraction)
        self.maximumCheckInterval = max(maximumCheckInterval, minimumCheckInterval)
        self.minimumCheckInterval = max(minimumCheckInterval, 0)
    }

    public static let `default` = RenewalPolicy()

    /// What the member wants its certificate to be.
    public struct Expectation: Sendable, Equatable {
        public var names: SubjectNames
        public var profile: LeafProfile
        public var keyAlgorithm: KeyAlgorithm?

        public init(names: SubjectNames, profile: LeafProfile, keyAlgorithm: KeyAlgorithm? = nil) {
            self.names = names
            self.profile = profile
            self.keyAlgorithm = keyAlgorithm
        }
    }

    /// The moment a certificate becomes due: notAfter − renewalFraction·lifetime − jitter·jitterFraction·lifetime.
    public func renewalTime(notBefore: Date, notAfter: Date, jitter: RenewalJitter) -> Date {
        let lifetime = notAfter.timeIntervalSince(notBefore)
        return notAfter - lifetime * renewalFraction - lifetime * jitterFraction * jitter.unit
    }

    public func evaluate(
        _ material: LeafMaterial,
        expecting expectation: Expectation,
        trustBundle: TrustBundle,
        signingCA: Certificate?,
        now: Date,
        jitter: RenewalJitter
    ) -> RenewalDecision {
        guard case .present(let certificate, let key) = material.state else {
            return renewNow([material.problem].compactMap { $0 }, now: now)
        }
        var reasons: [RenewalReason] = []
        if let key {
            if !KeyPairCheck.matches(certificate: certificate, privateKey: key) {
                reasons.append(.keyMismatch(path: material.keyPath))
            }
        } else if let keyError = material.keyError {
            reasons.append(.unreadable(path: material.keyPath, error: keyError))
        } else {
            reasons.append(.keyMissing(path: material.keyPath))
        }
        if now > certificate.notValidAfter { reasons.append(.expired(notAfter: certificate.notValidAfter)) }
        if now < certificate.notValidBefore { reasons.append(.notYetValid(notBefore: certificate.notValidBefore)) }
        reasons += issuerReasons(certificate, trustBundle: trustBundle, signingCA: signingCA)
        reasons += identityReasons(certificate, expectation: expectation)

        let renewAt = renewalTime(
            notBefore: certificate.notValidBefore, notAfter: certificate.notValidAfter, jitter: jitter)
        // Renewing cannot help when the CA's own expiry caps the leaf; the CA warning covers that case instead.
        let renewalExtends = signingCA.map { $0.notValidAfter > certificate.notValidAfter } ?? true
        if reasons.isEmpty, now >= renewAt, renewalExtends {
            reasons.append(.nearExpiry(notAfter: certificate.notValidAfter, renewAt: renewAt))
        }
        if !reasons.isEmpty { return renewNow(reasons, now: now, renewAt: renewAt) }
        let due = renewalExtends ? renewAt : certificate.notValidAfter
        return RenewalDecision(reasons: [], renewAt: renewAt, nextCheck: clampCheck(due, now: now))
    }

    private func issuerReasons(_ certificate: Certificate, trustBundle: TrustBundle, signingCA: Certificate?)
        -> [RenewalReason]
    {
        let issuers = trustBundle.issuers(of: certificate)
        if issuers.isEmpty {
            return [.issuerNotTrusted(issuer: certificate.issuer.description, bundle: trustBundle.name)]
        }
        if let signingCA, !issuers.contains(signingCA) {
            return [.issuedByPreviousCA(issuer: certificate.issuer.description, current: signingCA.subject.description)]
        }
        return []
    }

    private func identityReasons(_ certificate: Certificate, expectation: Expectation) -> [RenewalReason] {
        var reasons: [RenewalReason] = []
        let actual = SubjectNames(certificate: certificate)
        let wanted = expectation.names
        if actual.commonName != wanted.commonName {
            reasons.append(.commonNameChanged(from: actual.commonName, to: wanted.commonName))
        }
        let missing = wanted.allNames.filter { !actual.allNames.contains($0) }
        let unexpected = actual.allNames.filter { !wanted.allNames.contains($0) }
        if !missing.isEmpty || !unexpected.isEmpty {
            reasons.append(.namesChanged(missing: missing, unexpected: unexpected))
        }
        let usages = ((try? certificate.extensions.extendedKeyUsage).map { Array($0) }) ?? []
        if usages != expectation.profile.extendedKeyUsages {
            reasons.append(
                .usageChanged(
                    has: usages.map { String(describing: $0) },
                    wants: expectation.profile.extendedKeyUsages.map { String(describing: $0) }))
        }
        if let wantedAlgorithm = expectation.keyAlgorithm {
            let actualAlgorithm = KeyAlgorithm(publicKey: certificate.publicKey)
            if actualAlgorithm != wantedAlgorithm {
                reasons.append(
                    .keyAlgorithmChanged(
                        from: actualAlgorithm?.description ?? String(describing: certificate.publicKey),
                        to: wantedAlgorithm.description))
            }
        }
        return reasons
    }

    private func renewNow(_ reasons: [RenewalReason], now: Date, renewAt: Date? = nil) -> RenewalDecision {
        RenewalDecision(reasons: reasons, renewAt: renewAt, nextCheck: now + minimumCheckInterval)
    }

    private func clampCheck(_ due: Date, now: Date) -> Date {
        min(max(due, now + minimumCheckInterval), now + maximumCheckInterval)
    }
}
