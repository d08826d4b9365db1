import Foundation
import X509

/// Leaf handling for `ManagedPKI.ensure`: evaluate each leaf with the renewal policy and re-issue it when needed.
extension ManagedPKI {
    struct LeafOutcome {
        var status: CertificateStatus?
        var nextCheck: Date
        var fatal: PKIError?
    }

    func reconcile(
        _ usage: CertificateUsage,
        request: LeafRequest,
        ca: LoadedCA,
        bundle: TrustBundle,
        now: Date,
        forced: Bool,
        events: inout [PKIEvent],
        using rng: inout some RandomNumberGenerator
    ) -> LeafOutcome {
        let path = layout.certificate(for: usage).path
        let material = LeafMaterial.load(certificate: layout.certificate(for: usage), key: layout.key(for: usage))
        let policy = configuration.renewalPolicy
        var decision = policy.evaluate(
            material,
            expecting: .init(names: request.names, profile: request.profile, keyAlgorithm: request.keyAlgorithm),
            trustBundle: bundle, signingCA: ca.authority?.certificate, now: now, jitter: jitter)
        let reasons = decision.reasons + (forced && !decision.shouldRenew ? [.forced] : [])
        guard !reasons.isEmpty else {
            let status = material.certificate.map {
                CertificateStatus(
                    usage: usage, path: path, certificate: $0, managed: ca.isManaged, renewAt: decision.renewAt)
            }
            return LeafOutcome(status: status, nextCheck: decision.nextCheck)
        }
        guard let authority = ca.authority else {
            events.append(.renewalBlocked(usage, path: path, reasons: reasons))
            let status = material.certificate.map {
                CertificateStatus(usage: usage, path: path, certificate: $0, managed: false, renewAt: decision.renewAt)
            }
            let fatal: PKIError? =
                material.certificate == nil
                ? .missingFile(
                    path: path,
                    hint:
                        "the \(usage.authority.rawValue) CA is externally managed; install a certificate and key signed by it"
                )
                : nil
            return LeafOutcome(status: status, nextCheck: decision.nextCheck, fatal: fatal)
        }
        do {
            let issued = try LeafProvisioner.provision(
                usage, request: request, authority: authority, layout: layout, now: now, using: &rng)
            let certificate = issued.certificate
            events.append(
                .issued(
                    usage, path: path, serialHex: certificate.serialNumber.hexString,
                    notAfter: certificate.notValidAfter,
                    reasons: reasons))
            decision = policy.evaluate(
                LeafMaterial(certificate: certificate, privateKey: issued.privateKey),
                expecting: .init(names: request.names, profile: request.profile, keyAlgorithm: request.keyAlgorithm),
                trustBundle: bundle, signingCA: authority.certificate, now: now, jitter: jitter)
            return LeafOutcome(
                status: CertificateStatus(
                    usage: usage, path: path, certificate: certificate, managed: true, renewAt: decision.renewAt),
                nextCheck: decision.nextCheck)
        } catch {
            events.append(.renewalFailed(usage, path: path, error: "\(error)"))
            let unusable = material.certificate.map { now > $0.notValidAfter } ?? true
            let status = material.certificate.map {
                CertificateStatus(usage: usage, path: path, certificate: $0, managed: true, renewAt: decision.renewAt)
            }
            return LeafOutcome(
                status: status, nextCheck: now + policy.minimumCheckInterval,
                fatal: unusable ? (error as? PKIError ?? .issuance("\(error)")) : nil)
        }
    }
}
