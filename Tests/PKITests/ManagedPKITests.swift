import Foundation
import TestSupport
import Testing
import X509

@testable import PKI

@Suite("ManagedPKI.ensure")
struct ManagedPKITests {
    @Test("first start creates the etcd-manager layout with 0600 keys and 0700 directories")
    func firstStart() throws {
        let dir = TemporaryDirectory()
        let pki = Fixtures.managed(Fixtures.configuration(dir.url))
        var rng = SeededRandom(seed: 1)
        let report = try pki.ensure(now: Fixtures.epoch, using: &rng)
        let layout = pki.layout

        #expect(
            Files.tree(layout.root) == [
                ".lock", "ca", "ca/clients-ca.crt", "ca/clients-ca.key", "ca/peers-ca.crt", "ca/peers-ca.key",
                "clients", "clients/admin.crt", "clients/admin.key", "clients/ca.crt", "clients/server.crt",
                "clients/server.key", "peers", "peers/ca.crt", "peers/peer.crt", "peers/peer.key",
            ])
        for key in [layout.serverKey, layout.adminKey, layout.peerKey, layout.caKey(.clients), layout.caKey(.peers)] {
            #expect(Files.mode(key) == 0o600, "\(key.path)")
        }
        for directory in layout.allDirectories { #expect(Files.mode(directory) == 0o700, "\(directory.path)") }
        #expect(Files.mode(layout.serverCertificate) == 0o644)

        let created = report.events.filter { if case .createdCA = $0 { return true } else { return false } }
        #expect(created.count == 2)
        let issued = report.events.compactMap { event -> CertificateUsage? in
            if case .issued(let usage, _, _, _, let reasons) = event,
                reasons.first == .missing(path: pki.layout.certificate(for: usage).path)
            {
                return usage
            }
            return nil
        }
        #expect(issued == [.clientServer, .clientAdmin, .peer])
        #expect(report.tlsMaterialChanged)
        #expect(report.paths.serverCertificate == layout.serverCertificate)
        #expect(report.paths.clientCRL == nil)
        #expect(report.certificates.map(\.usage) == [.clientServer, .clientAdmin, .peer, .caClients, .caPeers])
        #expect(report.certificates.allSatisfy { $0.managed })
        #expect(report.warnings.isEmpty)
        #expect(report.nextCheck == Fixtures.epoch + 3600)

        // The files chain up and serve the configured names, per openssl.
        let clientsBundle = try TrustBundle.load(from: layout.trustBundle(.clients))
        let server = try PEMCodec.certificate(at: layout.serverCertificate)
        #expect(
            ChainVerifier.verify(
                server, against: clientsBundle, at: Fixtures.epoch, host: "10.0.0.1", requiredUsage: .serverAuth
            ).isValid)
        let peer = try PEMCodec.certificate(at: layout.peerCertificate)
        #expect(!ChainVerifier.verify(peer, against: clientsBundle, at: Fixtures.epoch).isValid)  // separate CAs
        let admin = try PEMCodec.certificate(at: layout.adminCertificate)
        #expect(admin.subject.commonName == "root")
        let verify = try OpenSSL.run([
            "verify", "-attime", String(Int(Fixtures.epoch.timeIntervalSince1970 + 60)), "-CAfile",
            layout.trustBundle(.peers).path, layout.peerCertificate.path,
        ])
        #expect(verify.status == 0, "\(verify.combined)")
    }

    @Test("second start changes nothing; a forced renewal keeps the old files as .prev")
    func idempotentAndPrev() throws {
        let dir = TemporaryDirectory()
        let pki = Fixtures.managed(Fixtures.configuration(dir.url))
        var rng = SeededRandom(seed: 2)
        _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
        let before = try String(contentsOf: pki.layout.serverCertificate, encoding: .utf8)
        let again = try pki.ensure(now: Fixtures.epoch + 60, using: &rng)
        #expect(again.events.isEmpty)
        #expect(!again.tlsMaterialChanged)
        #expect(try String(contentsOf: pki.layout.serverCertificate, encoding: .utf8) == before)

        let forced = try pki.ensure(now: Fixtures.epoch + 120, forceRenewal: [.clientServer], using: &rng)
        #expect(forced.events.count == 1)
        guard case .issued(.clientServer, _, _, _, [.forced]) = forced.events.first else {
            Issue.record("unexpected \(forced.events)")
            return
        }
        let prev = PKILayout.previousCopy(of: pki.layout.serverCertificate)
        #expect(try String(contentsOf: prev, encoding: .utf8) == before)
        #expect(Files.mode(PKILayout.previousCopy(of: pki.layout.serverKey)) == 0o600)
        #expect(!Files.tree(pki.layout.root).contains { $0.contains(".tmp") })
    }

    @Test("renewal happens at 2/3 of the leaf lifetime as the injected clock advances")
    func renewalOverTime() throws {
        let dir = TemporaryDirectory()
        let lifetime = try LeafLifetime(parsing: "30d")
        let pki = Fixtures.managed(Fixtures.configuration(dir.url, lifetime: lifetime))
        var rng = SeededRandom(seed: 3)
        _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
        let first = try PEMCodec.certificate(at: pki.layout.serverCertificate)
        let due = first.notValidBefore + (first.notValidAfter.timeIntervalSince(first.notValidBefore)) * 2 / 3
        #expect(try pki.ensure(now: due - 1, using: &rng).events.isEmpty)
        let renewed = try pki.ensure(now: due, using: &rng)
        let usages = renewed.events.compactMap { event -> CertificateUsage? in
            if case .issued(let usage, _, _, _, let reasons) = event, case .nearExpiry = reasons.first { return usage }
            return nil
        }
        #expect(Set(usages) == [.clientServer, .clientAdmin, .peer])
        let second = try PEMCodec.certificate(at: pki.layout.serverCertificate)
        #expect(second.serialNumber != first.serialNumber)
        #expect(second.notValidAfter == IssuanceDefaults.wholeSeconds(due) + lifetime.seconds)
    }

    @Test("advertise URL change re-issues only the affected certificate")
    func sanChange() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 4)
        _ = try Fixtures.managed(Fixtures.configuration(dir.url)).ensure(now: Fixtures.epoch, using: &rng)
        let moved = Fixtures.managed(Fixtures.configuration(dir.url, clientURLs: ["https://10.0.0.7:2379"]))
        let report = try moved.ensure(now: Fixtures.epoch + 10, using: &rng)
        #expect(report.events.count == 1)
        guard case .issued(.clientServer, _, _, _, let reasons) = report.events.first else {
            Issue.record("unexpected \(report.events)")
            return
        }
        #expect(reasons == [.namesChanged(missing: ["10.0.0.7"], unexpected: ["10.0.0.1"])])
        #expect(report.events[0].description.contains("because subject alternative names changed"))
    }

    @Test("an expired CA stops ensure with the file, the date and the fix command")
    func expiredCA() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 5)
        let pki = Fixtures.managed(Fixtures.configuration(dir.url, caValidity: 30 * Fixtures.day))
        _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
        let later = Fixtures.epoch + 31 * Fixtures.day
        #expect {
            try pki.ensure(now: later, using: &rng)
        } throws: { error in
            let message = "\(error)"
            return message.contains("\(pki.layout.caCertificate(.clients).path) expired at 2025-01-31T00:00:00Z")
                && message.contains("(now 2025-02-01T00:00:00Z)")
                && message.contains("quorumctl certs rotate-ca --data-dir \(pki.layout.dataDirectory.path)")
        }
    }

    @Test("a CA inside the warning window is reported loudly, with the rotate command")
    func caWarning() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 6)
        let config = Fixtures.configuration(
            dir.url, lifetime: try LeafLifetime(parsing: "7d"), caValidity: 365 * Fixtures.day)
        let pki = Fixtures.managed(config)
        let quiet = try pki.ensure(now: Fixtures.epoch, using: &rng)
        #expect(quiet.warnings.isEmpty)
        let loud = try pki.ensure(now: Fixtures.epoch + 300 * Fixtures.day, using: &rng)
        #expect(loud.warnings.count == 2)
        #expect(loud.warnings[0].contains("clients CA certificate"))
        #expect(loud.warnings[0].contains("(in 65d)"))
        #expect(loud.warnings[0].contains("quorumctl certs rotate-ca --data-dir"))
    }

    @Test("without createCAsIfMissing a member refuses to invent its own CA, and imports one from pki init")
    func sharedCAs() throws {
        let dir = TemporaryDirectory()
        #expect {
            try Fixtures.managed(Fixtures.configuration(dir.url, createCAs: false)).ensure(now: Fixtures.epoch)
        } throws: { error in
            "\(error)".contains("quorumctl pki init")
        }
        var rng = SeededRandom(seed: 7)
        let bundleDir = dir.fileURL("cluster-ca")
        let initResult = try PKIInit.run(outputDirectory: bundleDir, now: Fixtures.epoch, using: &rng)
        #expect(Files.mode(bundleDir.appendingPathComponent("clients-ca.key")) == 0o600)
        #expect(throws: PKIError.self) { try PKIInit.run(outputDirectory: bundleDir, now: Fixtures.epoch, using: &rng) }

        let member1 = Fixtures.managed(Fixtures.configuration(dir.fileURL("m1"), createCAs: false, caSource: bundleDir))
        let member2 = Fixtures.managed(
            Fixtures.configuration(dir.fileURL("m2"), name: "member-2", createCAs: false, caSource: bundleDir))
        let r1 = try member1.ensure(now: Fixtures.epoch, using: &rng)
        _ = try member2.ensure(now: Fixtures.epoch, using: &rng)
        #expect(r1.events.contains(.importedCA(.peers, from: bundleDir.path)))
        // Each member's peer certificate verifies against the other's peer bundle.
        let peer2 = try PEMCodec.certificate(at: member2.layout.peerCertificate)
        let bundle1 = try TrustBundle.load(from: member1.layout.trustBundle(.peers))
        #expect(ChainVerifier.verify(peer2, against: bundle1, at: Fixtures.epoch, requiredUsage: .clientAuth).isValid)
        #expect(
            r1.certificates.first { $0.usage == .caPeers }?.serialHex
                == initResult.certificateAuthorities[.peers]?.serialHex)
    }

    @Test("externally managed CA: leaves are verified, not renewed, and the warning says so")
    func externalCA() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 8)
        let pki = Fixtures.managed(Fixtures.configuration(dir.url, lifetime: try LeafLifetime(parsing: "10d")))
        _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
        try FileManager.default.removeItem(at: pki.layout.caKey(.clients))
        let report = try pki.ensure(now: Fixtures.epoch + 9 * Fixtures.day, using: &rng)
        #expect(report.warnings.contains { $0.contains("externally managed and will NOT be renewed") })
        let blocked = report.events.filter { if case .renewalBlocked = $0 { return true } else { return false } }
        #expect(blocked.count == 2)  // server and admin; the peers CA still has its key
        #expect(
            report.events.contains { if case .issued(.peer, _, _, _, _) = $0 { return true } else { return false } })
        #expect(report.certificates.first { $0.usage == .clientServer }?.managed == false)
    }

    @Test("a corrupted server key is replaced at the next start")
    func corruptKey() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 9)
        let pki = Fixtures.managed(Fixtures.configuration(dir.url))
        _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
        try "garbage".write(to: pki.layout.serverKey, atomically: true, encoding: .utf8)
        let report = try pki.ensure(now: Fixtures.epoch + 5, using: &rng)
        guard case .issued(.clientServer, _, _, _, let reasons) = report.events.first, case .unreadable = reasons.first
        else {
            Issue.record("unexpected \(report.events)")
            return
        }
        let key = try PEMCodec.privateKey(at: pki.layout.serverKey)
        #expect(
            KeyPairCheck.matches(
                certificate: try PEMCodec.certificate(at: pki.layout.serverCertificate), privateKey: key))
    }

    @Test("issue-client writes an etcdctl-ready set; revoke adds it to the CRL")
    func clientIssueAndRevoke() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 10)
        let pki = Fixtures.managed(Fixtures.configuration(dir.url))
        _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
        let out = dir.fileURL("out")
        let result = try ClientCertificateIssuer.issue(
            user: "kube-apiserver", validity: try LeafLifetime(parsing: "90d"), dataDirectory: dir.url,
            outputDirectory: out, now: Fixtures.epoch, using: &rng)
        #expect(Files.mode(result.keyPath) == 0o600)
        let bundle = try TrustBundle.load(from: result.trustBundlePath)
        let certificate = try PEMCodec.certificate(at: result.certificatePath)
        #expect(certificate.notValidAfter == Fixtures.epoch + 90 * Fixtures.day)
        #expect(
            ChainVerifier.verify(certificate, against: bundle, at: Fixtures.epoch, requiredUsage: .clientAuth).isValid)

        let serial = try #require(ClientCertificateRevoker.parseSerial("serial=" + certificate.serialNumber.hexString))
        #expect(serial == certificate.serialNumber)
        let crl1 = try ClientCertificateRevoker.revoke(
            serials: [serial], dataDirectory: dir.url, now: Fixtures.epoch + 60)
        let crl2 = try ClientCertificateRevoker.revoke(
            serials: [serial], dataDirectory: dir.url, now: Fixtures.epoch + 120)
        #expect(crl1.crlNumber == 1 && crl2.crlNumber == 2)
        #expect(crl2.entries.count == 1)
        let report = try pki.ensure(now: Fixtures.epoch + 180, using: &rng)
        #expect(report.paths.clientCRL == pki.layout.clientsCRL)
        let crl = try CertificateRevocationList.load(from: pki.layout.clientsCRL)
        let verdict = ChainVerifier.verify(
            certificate, against: bundle, at: Fixtures.epoch + 180,
            revocation: .init(crl, name: pki.layout.clientsCRL.path))
        #expect(verdict.explanation == "serial \(serial.hexString) is revoked by CRL \(pki.layout.clientsCRL.path)")
    }

    @Test("one-second leaves renew on schedule under an injected clock")
    func shortLivedLeaves() throws {
        let dir = TemporaryDirectory()
        let lifetime = try LeafLifetime(parsing: "3s")
        var rng = SeededRandom(seed: 5)
        let pki = Fixtures.managed(Fixtures.configuration(dir.url, lifetime: lifetime))
        let first = try pki.ensure(now: Fixtures.epoch, using: &rng)
        #expect(first.warnings.contains { $0.contains("below 1h") })
        #expect(first.nextCheck == Fixtures.epoch + 2)
        var serials: [String] = []
        for offset in 0...4 {
            let report = try pki.ensure(now: Fixtures.epoch + TimeInterval(offset), using: &rng)
            serials.append(report.certificates.first { $0.usage == .clientServer }!.serialHex)
        }
        // Issued at t=0, kept at t=1, renewed at t=2 (2/3 of 3s), kept at t=3, renewed at t=4.
        #expect(
            serials[0] == serials[1] && serials[1] != serials[2] && serials[2] == serials[3] && serials[3] != serials[4]
        )
        let served = try PEMCodec.certificate(at: pki.layout.serverCertificate)
        #expect(served.notValidAfter.timeIntervalSince(served.notValidBefore) == 3)
    }

    @Test("TLS material is loaded as a matching snapshot, and a mismatched pair is refused")
    func tlsMaterial() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 11)
        let pki = Fixtures.managed(Fixtures.configuration(dir.url))
        let report = try pki.ensure(now: Fixtures.epoch, using: &rng)
        let material = try TLSMaterial.load(dataDirectory: dir.url)
        #expect(
            material.client.certificatePEM == (try String(contentsOf: report.paths.serverCertificate, encoding: .utf8)))
        #expect(try PEMCodec.certificates(fromPEM: material.peer.trustBundlePEM).count == 1)
        #expect(material.clientCRLPEM == nil)
        #expect(material.client.notAfter == Fixtures.epoch + 365 * Fixtures.day)
        try FileManager.default.removeItem(at: pki.layout.serverKey)
        try FileManager.default.copyItem(at: pki.layout.peerKey, to: pki.layout.serverKey)
        #expect {
            try TLSMaterial.load(dataDirectory: dir.url)
        } throws: { error in
            "\(error)".hasPrefix("private key does not match certificate CN=member-1")
        }
    }
}
