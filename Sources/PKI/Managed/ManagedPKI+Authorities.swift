import Foundation
import X509

/// CA handling for `ManagedPKI.ensure`: create or import missing CAs, refuse expired ones, warn about ageing ones, and
/// keep the trust bundles containing the signing CA.
extension ManagedPKI {
    func prepareCA(
        _ kind: CAKind,
        now: Date,
        events: inout [PKIEvent],
        using rng: inout some RandomNumberGenerator
    ) throws -> LoadedCA {
        if let loaded = try CAStore.load(kind, layout: layout) { return loaded }
        if let source = configuration.caSourceDirectory, try CAStore.importCA(kind, from: source, into: layout) {
            events.append(.importedCA(kind, from: source.path))
            if let loaded = try CAStore.load(kind, layout: layout) { return loaded }
        }
        guard configuration.createCAsIfMissing else {
            throw PKIError.missingFile(
                path: layout.caCertificate(kind).path,
                hint: "create the cluster CAs once with `quorumctl pki init --out DIR` and copy DIR into "
                    + "\(layout.caDirectory.path) on every member (or pass it as the CA source directory)")
        }
        let authority = try CertificateAuthority.generate(
            kind: kind, keyAlgorithm: configuration.caKeyAlgorithm, validity: configuration.caValidity, now: now,
            using: &rng)
        try CAStore.write(authority, kind: kind, generation: .current, layout: layout)
        events.append(
            .createdCA(
                kind, path: layout.caCertificate(kind).path, subject: authority.certificate.subject.description,
                notAfter: authority.certificate.notValidAfter))
        return LoadedCA(
            kind: kind, certificate: authority.certificate, authority: authority,
            certificatePath: layout.caCertificate(kind).path)
    }

    func checkValidity(of ca: LoadedCA, now: Date, warnings: inout [String], nextCheck: inout Date) throws {
        let certificate = ca.certificate
        if now > certificate.notValidAfter {
            throw PKIError.certificateAuthorityExpired(
                usage: ca.kind.usage, path: ca.certificatePath, notAfter: certificate.notValidAfter, now: now,
                dataDir: layout.dataDirectory.path)
        }
        if now < certificate.notValidBefore {
            throw PKIError.certificateAuthorityNotYetValid(
                usage: ca.kind.usage, path: ca.certificatePath, notBefore: certificate.notValidBefore, now: now)
        }
        let warnFrom = certificate.notValidAfter - configuration.effectiveCAWarningWindow
        if now >= warnFrom {
            warnings.append(
                "\(ca.kind.rawValue) CA certificate \(ca.certificatePath) expires at "
                    + "\(RFC3339.string(certificate.notValidAfter)) (in "
                    + "\(ResidualTime.format(certificate.notValidAfter.timeIntervalSince(now)))); "
                    + "rotate it now: quorumctl certs rotate-ca --data-dir \(layout.dataDirectory.path)")
        } else {
            nextCheck = min(nextCheck, warnFrom)
        }
        if !ca.isManaged {
            warnings.append(
                "\(ca.kind.rawValue) CA \(ca.certificatePath) has no private key here: certificates it signs are "
                    + "externally managed and will NOT be renewed automatically")
        }
    }

    func prepareBundle(_ kind: CAKind, ca: LoadedCA, events: inout [PKIEvent]) throws -> TrustBundle {
        var bundle =
            try CAStore.loadBundle(kind, layout: layout)
            ?? TrustBundle(certificates: [], name: layout.trustBundle(kind).path)
        if !bundle.contains(ca.certificate) {
            bundle.append(ca.certificate)
            try CAStore.writeBundle(bundle, kind: kind, layout: layout)
            events.append(
                .trustBundleUpdated(
                    kind, path: layout.trustBundle(kind).path, added: ca.certificate.subject.description))
        }
        return bundle
    }
}
