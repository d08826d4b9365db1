import Foundation
import X509

/// The individual checks behind `Doctor.examine`, accumulating findings.
struct DoctorChecks {
    let input: Doctor.Input
    let inventory: CertificateInventory
    var findings: [DoctorFinding] = []

    init(input: Doctor.Input, inventory: CertificateInventory) {
        self.input = input
        self.inventory = inventory
    }

    private var dataDir: String { inventory.layout.dataDirectory.path }
    private var now: Date { input.now }
    private var rotate: String { "quorumctl certs rotate-ca --data-dir \(dataDir)" }
    private var renew: String {
        "quorumctl certs renew --data-dir \(dataDir) (or restart the member: it renews at start-up)"
    }
    private let clockFix = "synchronise clocks on every member (chronyc tracking / timedatectl status), then retry"

    private mutating func add(
        _ severity: DoctorFinding.Severity, _ code: String, _ subject: String, _ message: String, fix: String
    ) {
        findings.append(DoctorFinding(severity: severity, code: code, subject: subject, message: message, fix: fix))
    }

    // MARK: CAs

    mutating func checkAuthorities() {
        for ca in inventory.authorities {
            guard let certificate = ca.certificate else {
                if ca.generation == .current {
                    add(
                        .error, "file-missing", ca.relativePath, ca.error ?? "CA certificate missing",
                        fix:
                            "copy the cluster CA created by `quorumctl pki init` into \(inventory.layout.caDirectory.path)"
                    )
                }
                continue
            }
            let subject = ca.relativePath
            if ca.hasKey && !ca.keyMatches {
                add(
                    .error, "key-mismatch", subject, "CA private key does not match \(certificate.subject)",
                    fix: "re-run \(rotate) to finish an interrupted rotation, or restore the key from its .prev copy")
            }
            if !ca.hasKey && ca.generation == .current {
                add(
                    .info, "ca-externally-managed", subject,
                    "no CA private key here; certificates signed by \(certificate.subject) are not renewed automatically",
                    fix: "none needed if an external PKI renews them; otherwise run \(rotate)")
            }
            checkCAValidity(certificate, subject: subject)
        }
    }

    private mutating func checkCAValidity(_ certificate: Certificate, subject: String) {
        let notAfter = certificate.notValidAfter
        if now > notAfter {
            add(
                .error, "ca-expired", subject,
                "CA \(certificate.subject) expired at \(RFC3339.string(notAfter)) (now \(RFC3339.string(now)))",
                fix: rotate)
        } else if now < certificate.notValidBefore {
            add(
                .error, "ca-not-yet-valid", subject,
                "CA \(certificate.subject) is not yet valid until \(RFC3339.string(certificate.notValidBefore))",
                fix: clockFix)
        } else if notAfter.timeIntervalSince(now) < input.warningWindow {
            add(
                .warning, "ca-near-expiry", subject,
                "CA \(certificate.subject) expires at \(RFC3339.string(notAfter)) "
                    + "(in \(ResidualTime.format(notAfter.timeIntervalSince(now))))",
                fix: "schedule a rotation now: \(rotate)")
        }
    }

    mutating func checkBundles() {
        for kind in CAKind.allCases {
            let path = inventory.relative(inventory.layout.trustBundle(kind))
            if let error = inventory.bundleErrors[kind] {
                add(.error, "bundle-unreadable", path, error, fix: renew)
                continue
            }
            for certificate in inventory.bundles[kind]?.certificates ?? [] where now > certificate.notValidAfter {
                add(
                    .warning, "bundle-ca-expired", path,
                    "trust bundle still lists \(certificate.subject), expired at \(RFC3339.string(certificate.notValidAfter))",
                    fix: "finish the CA rotation (\(rotate)) or remove the expired CA from \(path)")
            }
        }
    }

    // MARK: Leaves

    mutating func checkLeaves() {
        for leaf in inventory.leaves {
            let subject = leaf.relativePath
            switch leaf.material.state {
            case .missing:
                add(.error, "file-missing", subject, "\(leaf.material.certificatePath) does not exist", fix: renew)
            case .unreadable(let error):
                add(.error, "file-unreadable", subject, error, fix: "restore \(subject).prev or run \(renew)")
            case .present(let certificate, let key):
                checkLeaf(certificate, key: key, entry: leaf)
            }
        }
    }

    private mutating func checkLeaf(
        _ certificate: Certificate, key: Certificate.PrivateKey?, entry: CertificateInventory.LeafEntry
    ) {
        let subject = entry.relativePath
        let kind = entry.usage.authority
        if let key, !KeyPairCheck.matches(certificate: certificate, privateKey: key) {
            add(
                .error, "key-mismatch", subject, "private key \(entry.material.keyPath) does not match the certificate",
                fix: "restore both \(subject).prev and its key's .prev, or run \(renew)")
        } else if key == nil {
            add(
                .error, "key-missing", subject, entry.material.keyError ?? "\(entry.material.keyPath) does not exist",
                fix: renew)
        }
        for problem in ChainVerifier.validityProblems(certificate, at: now) {
            if case .expired = problem {
                add(.error, "leaf-expired", subject, problem.description, fix: renew)
            } else {
                add(.error, "leaf-not-yet-valid", subject, problem.description, fix: clockFix)
            }
        }
        if let bundle = inventory.bundles[kind] {
            let result = ChainVerifier.verify(certificate, against: bundle, at: now)
            for problem in result.problems where Self.isTrustProblem(problem) {
                add(
                    .error, "chain-untrusted", subject, problem.description,
                    fix: "re-issue it from the current CA: \(renew)")
            }
        }
        checkNames(certificate, entry: entry)
        checkRenewal(certificate, entry: entry)
        if entry.usage == .clientAdmin, let crl = inventory.crl, crl.isRevoked(certificate) {
            add(
                .error, "revoked", subject,
                ChainProblem.revoked(serialHex: certificate.serialNumber.hexString, crl: "clients/crl.pem").description,
                fix: "quorumctl certs renew --data-dir \(dataDir) to issue a new admin certificate")
        }
    }

    private mutating func checkNames(_ certificate: Certificate, entry: CertificateInventory.LeafEntry) {
        let urls: [String]
        switch entry.usage {
        case .clientServer: urls = input.advertiseClientURLs
        case .peer: urls = input.advertisePeerURLs
        default: return
        }
        let names = SubjectNames(certificate: certificate)
        for host in urls.compactMap(SubjectNames.host(ofURL:)) where !names.covers(host: host) {
            add(
                .error, "san-mismatch", entry.relativePath,
                ChainProblem.hostNotInSAN(host: host, has: names.allNames).description
                    + "; clients dialling \(host) fail with \"x509: certificate is valid for …, not \(host)\"",
                fix: "restart the member with its current advertise URLs (the certificate is re-issued when names "
                    + "change) or run \(renew)")
        }
    }

    private mutating func checkRenewal(_ certificate: Certificate, entry: CertificateInventory.LeafEntry) {
        let remaining = certificate.notValidAfter.timeIntervalSince(now)
        guard remaining > 0 else { return }
        let lifetime = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
        let expires = "expires at \(RFC3339.string(certificate.notValidAfter)) (in \(ResidualTime.format(remaining)))"
        if inventory.isManaged(certificate, kind: entry.usage.authority) {
            let capped =
                inventory.currentCA(entry.usage.authority)?.certificate?.notValidAfter == certificate.notValidAfter
            if remaining < lifetime / 3, !capped {
                add(
                    .warning, "renewal-overdue", entry.relativePath,
                    "managed certificate \(expires) but should have been renewed after two thirds of its lifetime",
                    fix: "check the member's log for \"renewing … failed\" events, then run \(renew)")
            }
        } else if remaining < input.warningWindow {
            add(
                .warning, "unmanaged-leaf-near-expiry", entry.relativePath,
                "certificate \(certificate.subject) \(expires) and is not signed by a CA this member holds the key "
                    + "for (issued by \(certificate.issuer)), so nothing will renew it",
                fix: "replace it before it expires, or bring it under management: \(rotate)")
        }
    }

    // MARK: Other members

    mutating func checkMembers() {
        for member in input.members {
            let subject = "member \(member.name)"
            checkSkew(member, subject: subject)
            if let answer = member.refusedOurCertificate {
                checkRefusal(member, answer: answer, subject: subject)
            }
            let chain: [Certificate]
            do {
                chain = try PEMCodec.certificates(fromPEM: member.chainPEM, source: subject)
            } catch {
                add(.error, "member-chain-unreadable", subject, "\(error)", fix: "check the member's TLS configuration")
                continue
            }
            guard let bundle = inventory.bundles[member.kind] else { continue }
            let result = ChainVerifier.verify(
                chain[0], intermediates: Array(chain.dropFirst()), against: bundle, at: now, host: member.host)
            for problem in result.problems {
                let code: String
                switch problem {
                case .expired: code = "member-certificate-expired"
                case .notYetValid: code = "member-certificate-not-yet-valid"
                case .hostNotInSAN: code = "san-mismatch"
                default: code = "member-chain-untrusted"
                }
                add(
                    .error, code, subject, problem.description,
                    fix: code == "member-chain-untrusted"
                        ? "make both members trust the same CA: compare \(bundle.name) on each, and finish any CA "
                            + "rotation on all members (quorumctl certs rotate-ca)"
                        : "run quorumctl certs doctor on \(member.name)")
            }
        }
    }

    /// The member refused this member's peer certificate: name the certificate and, from what this side can see,
    /// the likely reason (its own validity, or a CA the cluster's bundle may not hold).
    private mutating func checkRefusal(_ member: Doctor.MemberObservation, answer: String, subject: String) {
        let ours = inventory.leaves.first { $0.usage == .peer }
        guard let entry = ours, case .present(let certificate, _) = entry.material.state else {
            add(
                .error, "refused-by-member", subject, "refuses this member's peer certificate: \(answer)",
                fix: "check \(ours?.material.certificatePath ?? "peers/peer.crt")")
            return
        }
        var message =
            "refuses this member's peer certificate \(certificate.subject) (serial "
            + "\(certificate.serialNumber.hexString), issued by \(certificate.issuer), valid until "
            + "\(RFC3339.string(certificate.notValidAfter))): \(answer)"
        let fix: String
        if let problem = ChainVerifier.validityProblems(certificate, at: now).first {
            message += "; \(problem)"
            fix = "quorumctl certs renew --data-dir \(input.dataDirectory.path) --usage peer"
        } else {
            message += "; it does not trust the CA that signed it"
            fix =
                "make \(member.name) trust \(certificate.issuer): stage the same CA rotation on every member "
                + "(quorumctl certs rotate-ca --next-ca-dir DIR) before re-issuing on any"
        }
        add(.error, "refused-by-member", subject, message, fix: fix)
    }

    private mutating func checkSkew(_ member: Doctor.MemberObservation, subject: String) {
        guard let reported = member.reportedTime else { return }
        let skew = reported.timeIntervalSince(member.observedAt ?? now)
        let magnitude = abs(skew)
        guard magnitude > input.clockSkewWarning else { return }
        let direction = skew > 0 ? "ahead of" : "behind"
        let message = "clock is \(String(format: "%.1f", magnitude))s \(direction) this member's"
        if magnitude > input.clockSkewError {
            add(
                .error, "clock-skew", subject,
                message + "; beyond the \(Int(input.clockSkewError))s certificate backdate, so newly issued "
                    + "certificates are rejected as not yet valid", fix: clockFix)
        } else {
            add(.warning, "clock-skew", subject, message + "; leases and leader election are affected", fix: clockFix)
        }
    }

    static func isTrustProblem(_ problem: ChainProblem) -> Bool {
        switch problem {
        case .unknownAuthority, .signatureMismatch, .issuerNotCertificateAuthority: return true
        default: return false
        }
    }
}
