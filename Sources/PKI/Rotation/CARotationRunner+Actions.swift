import Foundation
import X509

/// The idempotent actions of a CA rotation. Each checks what is already done before doing anything, which is what
/// makes a step safe to repeat after a crash.
extension CARotationRunner {
    func performLocked(
        _ action: CARotation.Action,
        state: CARotation,
        now: Date,
        nextCASource: URL?,
        using rng: inout some RandomNumberGenerator
    ) throws -> String {
        switch action {
        case .stageNextCA: return try stageNextCA(now: now, source: nextCASource, using: &rng)
        case .addNextCAToBundle: return try addToBundle(layout.caCertificate(kind, .next))
        case .promoteNextCA: return try promoteNextCA(state: state)
        case .reissueLeaves: return try reissueLeaves(now: now, using: &rng)
        case .removePreviousCAFromBundle: return try removePreviousFromBundle(state: state)
        case .deletePreviousCA: return try deletePreviousCA()
        }
    }

    func stageNextCA(now: Date, source: URL?, using rng: inout some RandomNumberGenerator) throws -> String {
        if let staged = try CAStore.load(kind, generation: .next, layout: layout) {
            guard staged.isManaged else {
                throw PKIError.rotation(
                    "\(layout.caCertificate(kind, .next).path) has no key \(layout.caKey(kind, .next).path); "
                        + "copy both files of the staged CA")
            }
            return "reusing staged CA \(staged.certificate.subject)"
        }
        guard let current = try CAStore.load(kind, layout: layout) else {
            throw PKIError.missingFile(
                path: layout.caCertificate(kind).path, hint: "there is no CA to rotate; start the member first")
        }
        let authority: CertificateAuthority
        if let source {
            let certificate = try PEMCodec.certificate(at: source.appendingPathComponent("\(kind.rawValue)-ca.crt"))
            let key = try PEMCodec.privateKey(at: source.appendingPathComponent("\(kind.rawValue)-ca.key"))
            authority = try CertificateAuthority(certificate: certificate, privateKey: key)
        } else {
            let algorithm = keyAlgorithm ?? KeyAlgorithm(publicKey: current.certificate.publicKey) ?? .ecdsaP256
            // Old and new CA must be told apart by name in every message, even when created in the same second.
            var commonName =
                "quorum-\(kind.rawValue)-ca@\(Int(IssuanceDefaults.wholeSeconds(now).timeIntervalSince1970))"
            if current.certificate.subject.commonName == commonName { commonName += "-r2" }
            authority = try CertificateAuthority.generate(
                commonName: commonName, keyAlgorithm: algorithm, validity: caValidity, now: now, using: &rng)
        }
        guard authority.certificate != current.certificate else {
            throw PKIError.rotation("the staged CA is the current CA; supply a new one")
        }
        try CAStore.write(authority, kind: kind, generation: .next, layout: layout)
        return "staged new CA \(authority.certificate.subject) in \(layout.caCertificate(kind, .next).path)"
    }

    func addToBundle(_ caURL: URL) throws -> String {
        let certificate = try PEMCodec.certificate(at: caURL)
        var bundle =
            try CAStore.loadBundle(kind, layout: layout)
            ?? TrustBundle(certificates: [], name: layout.trustBundle(kind).path)
        guard !bundle.contains(certificate) else { return "\(bundle.name) already trusts \(certificate.subject)" }
        bundle.append(certificate)
        try CAStore.writeBundle(bundle, kind: kind, layout: layout)
        return "added \(certificate.subject) to \(bundle.name) (\(bundle.certificates.count) CAs trusted)"
    }

    func promoteNextCA(state: CARotation) throws -> String {
        guard let oldFingerprint = state.previousCAFingerprint, let newFingerprint = state.newCAFingerprint else {
            throw PKIError.rotation("rotation state lacks CA fingerprints; was it edited by hand?")
        }
        let nextCert = layout.caCertificate(kind, .next)
        guard let next = try CAStore.load(kind, generation: .next, layout: layout) else {
            // Already promoted by an earlier, interrupted run: only the clean-up may be left.
            let current = try PEMCodec.certificate(at: layout.caCertificate(kind))
            guard current.sha256Fingerprint == newFingerprint else {
                throw PKIError.rotation(
                    "\(nextCert.path) is gone but the current CA is not the staged one; the CA folder was changed by hand"
                )
            }
            try AtomicFileWriter.remove(layout.caKey(kind, .next), keepPrevious: false)
            return "\(current.subject) is already the signing CA"
        }
        guard let nextAuthority = next.authority, next.certificate.sha256Fingerprint == newFingerprint else {
            throw PKIError.rotation("\(nextCert.path) is not the CA that was staged; re-stage it")
        }
        try keepCurrentAsPrevious(oldFingerprint: oldFingerprint)
        // Certificate before key: an interruption leaves a detectable mismatch whose repair is to run this again.
        try AtomicFileWriter.write(
            PEMCodec.pem(for: nextAuthority.certificate), to: layout.caCertificate(kind),
            mode: AtomicFileWriter.certificateMode, keepPrevious: false)
        try AtomicFileWriter.write(
            PEMCodec.pem(for: nextAuthority.privateKey), to: layout.caKey(kind), mode: AtomicFileWriter.privateKeyMode,
            keepPrevious: false)
        try AtomicFileWriter.remove(nextCert, keepPrevious: false)
        try AtomicFileWriter.remove(layout.caKey(kind, .next), keepPrevious: false)
        return "\(nextAuthority.certificate.subject) is now the signing CA; previous CA kept in "
            + layout.caCertificate(kind, .previous).path
    }

    func keepCurrentAsPrevious(oldFingerprint: String) throws {
        if let previous = try? CAStore.load(kind, generation: .previous, layout: layout), previous.isManaged,
            previous.certificate.sha256Fingerprint == oldFingerprint
        {
            return
        }
        guard let current = try CAStore.load(kind, layout: layout), let authority = current.authority,
            current.certificate.sha256Fingerprint == oldFingerprint
        else {
            throw PKIError.rotation(
                "cannot keep the old \(kind.rawValue) CA: \(layout.caCertificate(kind).path) is not the CA being "
                    + "rotated out")
        }
        try CAStore.write(authority, kind: kind, generation: .previous, layout: layout)
    }

    func reissueLeaves(now: Date, using rng: inout some RandomNumberGenerator) throws -> String {
        guard let authority = try CAStore.load(kind, layout: layout)?.authority else {
            throw PKIError.certificateAuthorityKeyMissing(
                usage: kind.usage, path: layout.caKey(kind).path, dataDir: layout.dataDirectory.path)
        }
        var reissued: [String] = []
        for usage in PKILayout.leafUsages(signedBy: kind) {
            let material = LeafMaterial.load(certificate: layout.certificate(for: usage), key: layout.key(for: usage))
            guard let leaf = material.certificate else { continue }  // ensure() issues missing leaves at start-up
            let current =
                Self.isSigned(leaf, by: authority.certificate)
                && material.privateKey.map { KeyPairCheck.matches(certificate: leaf, privateKey: $0) } == true
            if current { continue }
            _ = try LeafProvisioner.provision(
                usage, request: request(replacing: leaf, usage: usage), authority: authority, layout: layout, now: now,
                using: &rng)
            reissued.append(layout.certificate(for: usage).lastPathComponent)
        }
        return reissued.isEmpty
            ? "all \(kind.rawValue) leaves already signed by \(authority.certificate.subject)"
            : "re-issued \(reissued.joined(separator: ", ")) from \(authority.certificate.subject)"
    }

    /// The same names, usage and key type as the leaf being replaced, so a rotation never changes identities.
    func request(replacing leaf: Certificate, usage: CertificateUsage) -> LeafRequest {
        let profile: LeafProfile = usage == .clientAdmin ? .client : (usage == .peer ? .peer : .server)
        let lifetime = leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore)
        let validity = leafLifetime?.seconds ?? max(1, lifetime - IssuanceDefaults.backdate(forValidity: lifetime))
        return LeafRequest(
            names: SubjectNames(certificate: leaf), profile: profile, validity: validity,
            keyAlgorithm: KeyAlgorithm(publicKey: leaf.publicKey) ?? .ecdsaP256)
    }

    func removePreviousFromBundle(state: CARotation) throws -> String {
        guard let oldFingerprint = state.previousCAFingerprint else {
            throw PKIError.rotation("rotation state lacks the previous CA fingerprint")
        }
        guard var bundle = try CAStore.loadBundle(kind, layout: layout) else {
            throw PKIError.missingFile(path: layout.trustBundle(kind).path, hint: "the trust bundle vanished")
        }
        let stale = bundle.certificates.filter { $0.sha256Fingerprint == oldFingerprint }
        guard !stale.isEmpty else { return "\(bundle.name) no longer trusts the previous CA" }
        for certificate in stale { bundle.remove(certificate) }
        guard !bundle.certificates.isEmpty else {
            throw PKIError.rotation("refusing to empty \(bundle.name)")
        }
        try CAStore.writeBundle(bundle, kind: kind, layout: layout)
        return "removed \(stale[0].subject) from \(bundle.name)"
    }

    func deletePreviousCA() throws -> String {
        try AtomicFileWriter.remove(layout.caKey(kind, .previous), keepPrevious: false)
        try AtomicFileWriter.remove(layout.caCertificate(kind, .previous), keepPrevious: false)
        return "deleted the previous \(kind.rawValue) CA and its key"
    }

    func previousCACertificate() throws -> Certificate? {
        let url = layout.caCertificate(kind, .previous)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try PEMCodec.certificate(at: url)
    }
}
