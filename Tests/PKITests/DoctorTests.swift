import Foundation
import TestSupport
import Testing
import X509

@testable import PKI

@Suite("certs doctor")
struct DoctorTests {
    /// A member created at the fixture epoch.
    struct Member {
        let dir: TemporaryDirectory
        let pki: ManagedPKI
        var layout: PKILayout { pki.layout }

        init(seed: UInt64 = 1) throws {
            dir = TemporaryDirectory()
            var rng = SeededRandom(seed: seed)
            pki = Fixtures.managed(Fixtures.configuration(dir.url))
            _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
        }

        func examine(
            at now: Date, clientURLs: [String] = ["https://10.0.0.1:2379"], members: [Doctor.MemberObservation] = []
        )
            -> DoctorReport
        {
            Doctor.examine(
                Doctor.Input(
                    dataDirectory: dir.url, advertiseClientURLs: clientURLs,
                    advertisePeerURLs: ["https://10.0.0.1:2380"],
                    members: members, now: now))
        }
    }

    @Test("a healthy member has no findings")
    func healthy() throws {
        let member = try Member()
        let report = member.examine(at: Fixtures.epoch + Fixtures.day)
        #expect(report.findings == [])
        #expect(report.isHealthy)
        #expect(report.renderText() == "no problems found\n")
    }

    @Test("expired leaf")
    func expiredLeaf() throws {
        let member = try Member()
        let report = member.examine(at: Fixtures.epoch + 366 * Fixtures.day)
        let findings = report.findings(withCode: "leaf-expired")
        #expect(findings.map(\.subject) == ["clients/admin.crt", "clients/server.crt", "peers/peer.crt"])
        #expect(
            findings[1].message == "certificate CN=member-1 expired at 2026-01-01T00:00:00Z (now 2026-01-02T00:00:00Z)")
        #expect(findings[1].fix.hasPrefix("quorumctl certs renew --data-dir \(member.layout.dataDirectory.path)"))
        #expect(!report.isHealthy)
        #expect(
            report.renderText().contains("ERROR  leaf-expired: clients/server.crt: certificate CN=member-1 expired"))
    }

    @Test("not-yet-valid leaf points at clocks")
    func notYetValid() throws {
        let member = try Member()
        var rng = SeededRandom(seed: 3)
        _ = try member.pki.ensure(now: Fixtures.epoch + Fixtures.day, forceRenewal: [.clientServer], using: &rng)
        let report = member.examine(at: Fixtures.epoch + 3600)
        let finding = try #require(report.findings(withCode: "leaf-not-yet-valid").first)
        #expect(finding.subject == "clients/server.crt")
        #expect(finding.fix.contains("chronyc tracking"))
    }

    @Test("expired CA and CA near expiry")
    func caExpiry() throws {
        let member = try Member()
        let near = member.examine(at: Fixtures.epoch + (3650 - 30) * Fixtures.day)
        let warning = try #require(near.findings(withCode: "ca-near-expiry").first)
        #expect(warning.severity == .warning)
        #expect(warning.message.contains("(in 30d)"))
        #expect(warning.fix.contains("quorumctl certs rotate-ca --data-dir"))
        let expired = member.examine(at: Fixtures.epoch + 3651 * Fixtures.day)
        #expect(expired.findings(withCode: "ca-expired").map(\.subject) == ["ca/clients-ca.crt", "ca/peers-ca.crt"])
    }

    @Test("chain not matching the trust bundle")
    func untrustedChain() throws {
        let member = try Member()
        let foreign = try Fixtures.ca(at: Fixtures.epoch - 60, seed: 77)
        try AtomicFileWriter.write(
            PEMCodec.pem(for: foreign.certificate), to: member.layout.trustBundle(.clients), mode: 0o644)
        let report = member.examine(at: Fixtures.epoch + 60)
        let findings = report.findings(withCode: "chain-untrusted")
        #expect(findings.map(\.subject) == ["clients/admin.crt", "clients/server.crt"])
        #expect(
            findings[1].message.hasPrefix(
                "signed by an unknown authority: issuer CN=quorum-clients-ca@1735689600,O=Quorum is not in "))
        #expect(findings[1].message.hasSuffix("/pki/clients/ca.crt"))
        // A CA re-created under the same name is called out as such.
        let twin = try Fixtures.ca(seed: 78)
        try AtomicFileWriter.write(
            PEMCodec.pem(for: twin.certificate), to: member.layout.trustBundle(.clients), mode: 0o644)
        let twinReport = member.examine(at: Fixtures.epoch + 60)
        #expect(
            twinReport.findings(withCode: "chain-untrusted").allSatisfy {
                $0.message.contains("the CA was probably re-created")
            })
    }

    @Test("SAN not matching the advertise URLs")
    func sanMismatch() throws {
        let member = try Member()
        let report = member.examine(at: Fixtures.epoch + 60, clientURLs: ["https://etcd-a.internal:2379"])
        let finding = try #require(report.findings(withCode: "san-mismatch").first)
        #expect(finding.subject == "clients/server.crt")
        #expect(
            finding.message.hasPrefix(
                "SAN does not contain etcd-a.internal (has: localhost, node1, 10.0.0.1, 127.0.0.1, ::1)"))
    }

    @Test("key not matching certificate")
    func keyMismatch() throws {
        let member = try Member()
        try FileManager.default.copyItem(at: member.layout.adminKey, to: member.dir.fileURL("admin.key.copy"))
        try AtomicFileWriter.write(
            try String(contentsOf: member.dir.fileURL("admin.key.copy"), encoding: .utf8), to: member.layout.peerKey,
            mode: 0o600)
        let report = member.examine(at: Fixtures.epoch + 60)
        #expect(report.findings(withCode: "key-mismatch").map(\.subject) == ["peers/peer.crt"])
    }

    @Test("clock skew between members: warning above 1s, error above the 5-minute backdate")
    func clockSkew() throws {
        let member = try Member()
        let peerPEM = try String(contentsOf: member.layout.peerCertificate, encoding: .utf8)
        let now = Fixtures.epoch + 60
        let report = member.examine(
            at: now,
            members: [
                .init(name: "m2", chainPEM: peerPEM, reportedTime: now + 2.5),
                .init(name: "m3", chainPEM: peerPEM, reportedTime: now - 900),
                .init(name: "m4", chainPEM: peerPEM, reportedTime: now + 0.5),
            ])
        let skew = report.findings(withCode: "clock-skew")
        #expect(skew.map(\.subject) == ["member m3", "member m2"])
        #expect(skew[0].severity == .error)
        #expect(skew[0].message.hasPrefix("clock is 900.0s behind this member's"))
        #expect(skew[1].severity == .warning)
        #expect(skew[1].message.hasPrefix("clock is 2.5s ahead of this member's"))
    }

    @Test("other members' chains: untrusted and expired")
    func memberChains() throws {
        let member = try Member()
        let foreign = try Fixtures.leaf(
            from: try Fixtures.ca(.peers, seed: 66), profile: .peer, validity: 10 * Fixtures.day)
        let now = Fixtures.epoch + 20 * Fixtures.day
        let report = member.examine(
            at: now, members: [.init(name: "m2", chainPEM: try foreign.certificatePEM, host: "10.0.0.2")])
        #expect(report.findings(withCode: "member-chain-untrusted").count == 1)
        #expect(report.findings(withCode: "member-certificate-expired").count == 1)
        #expect(report.findings(withCode: "san-mismatch").first?.subject == "member m2")
    }

    @Test("managed leaf past its renewal point is flagged as overdue")
    func renewalOverdue() throws {
        let member = try Member()
        let report = member.examine(at: Fixtures.epoch + 300 * Fixtures.day)
        #expect(report.findings(withCode: "renewal-overdue").count == 3)
        #expect(report.isHealthy)  // warnings only
    }

    @Test("etcd-manager style: long-lived leaf from an external CA, not renewed, inside the warning window")
    func unmanagedLeaf() throws {
        let dir = TemporaryDirectory()
        let layout = PKILayout(dataDirectory: dir.url)
        let externalCA = try Fixtures.ca(seed: 88)
        let external = try Fixtures.leaf(from: externalCA, validity: 365 * Fixtures.day)
        for directory in layout.allDirectories { try AtomicFileWriter.ensureDirectory(directory) }
        try AtomicFileWriter.write(
            PEMCodec.pem(for: externalCA.certificate), to: layout.caCertificate(.clients), mode: 0o644)
        try AtomicFileWriter.write(
            PEMCodec.pem(for: externalCA.certificate), to: layout.trustBundle(.clients), mode: 0o644)
        try AtomicFileWriter.write(external.certificatePEM, to: layout.serverCertificate, mode: 0o644)
        try AtomicFileWriter.write(external.privateKeyPEM, to: layout.serverKey, mode: 0o600)
        let report = Doctor.examine(Doctor.Input(dataDirectory: dir.url, now: Fixtures.epoch + 300 * Fixtures.day))
        let finding = try #require(report.findings(withCode: "unmanaged-leaf-near-expiry").first)
        #expect(finding.subject == "clients/server.crt")
        #expect(finding.message.contains("(in 65d)"))
        #expect(finding.message.contains("nothing will renew it"))
        #expect(report.findings(withCode: "ca-externally-managed").first?.severity == .info)
        // The peers side is simply absent here, and says so.
        #expect(report.findings(withCode: "file-missing").map(\.subject).contains("peers/peer.crt"))
        let json = try report.renderJSON()
        #expect(json.contains("\"code\" : \"unmanaged-leaf-near-expiry\""))
    }
}
