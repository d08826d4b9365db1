import Foundation
import TestSupport
import Testing
import X509

@testable import PKI

@Suite("check-expiration report")
struct ExpirationReportTests {
    @Test(
        "residual time reads like kubeadm",
        arguments: [
            (-1.0, "expired"), (0.0, "0s"), (59.0, "59s"), (90.0, "1m"), (3_599.0, "59m"), (84_240.0, "23h"),
            (31_492_800.0, "364d"), (315_360_000.0, "10y"), (34_560_000.0, "1y"),
        ] as [(Double, String)])
    func residual(seconds: Double, text: String) {
        #expect(ResidualTime.format(seconds) == text)
    }

    @Test("table and JSON for a fresh member")
    func freshMember() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 1)
        _ = try Fixtures.managed(Fixtures.configuration(dir.url)).ensure(now: Fixtures.epoch, using: &rng)
        let report = ExpirationReport(dataDirectory: dir.url, now: Fixtures.epoch + Fixtures.day)
        #expect(
            report.rows.map(\.name) == [
                "clients/server.crt", "clients/admin.crt", "peers/peer.crt", "ca/clients-ca.crt", "ca/peers-ca.crt",
            ])
        #expect(report.rows.allSatisfy { $0.status == .ok && $0.managed == true })
        #expect(report.rows[0].residualTime == "364d")
        #expect(report.rows[3].residualTime == "9y")
        #expect(report.rows[0].certificateAuthority == "quorum-clients-ca@1735689600")
        #expect(report.rows[3].certificateAuthority == "self-signed")
        #expect(!report.hasFailures)

        let table = report.renderTable()
        let lines = table.split(separator: "\n").map(String.init)
        #expect(lines.count == 6)
        #expect(lines[0].hasPrefix("CERTIFICATE          SUBJECT"))
        let expiresColumn = try #require(lines[0].range(of: "EXPIRES")).lowerBound.utf16Offset(in: lines[0])
        let serverLine = lines[1]
        #expect(serverLine.hasPrefix("clients/server.crt   CN=member-1"))
        #expect(serverLine.contains("Jan 01, 2026 00:00 UTC   364d"))
        #expect(serverLine.hasSuffix("yes       ok"))
        let rowExpires = try #require(serverLine.range(of: "Jan 01, 2026")).lowerBound.utf16Offset(in: serverLine)
        #expect(rowExpires == expiresColumn)

        let json = try report.renderJSON()
        #expect(json.contains("\"residualTime\" : \"364d\""))
        #expect(json.contains("\"notAfter\" : \"2026-01-01T00:00:00Z\""))
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        #expect(try decoder.decode(ExpirationReport.self, from: Data(json.utf8)) == report)
    }

    @Test("expired, missing, rotation and live-endpoint rows")
    func problemRows() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 2)
        let pki = Fixtures.managed(Fixtures.configuration(dir.url))
        _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
        _ = try CARotationRunner(dataDirectory: dir.url, kind: .clients).start(now: Fixtures.epoch, using: &rng)
        try FileManager.default.removeItem(at: pki.layout.peerCertificate)
        let foreign = try Fixtures.leaf(from: try Fixtures.ca(seed: 9), validity: 10 * Fixtures.day)
        let later = Fixtures.epoch + 300 * Fixtures.day
        let report = ExpirationReport(
            dataDirectory: dir.url, now: later,
            endpoints: [
                .init(name: "https://10.0.0.2:2379", pem: try foreign.certificatePEM), .init(name: "bad", pem: "x"),
            ])
        let byName = Dictionary(uniqueKeysWithValues: report.rows.map { ($0.name, $0) })
        #expect(byName["clients/server.crt"]?.status == .warning)  // past 2/3 of its life: renewal overdue
        #expect(byName["peers/peer.crt"]?.status == .missing)
        #expect(byName["ca/clients-ca-next.crt"]?.status == .ok)
        #expect(byName["https://10.0.0.2:2379"]?.status == .expired)
        #expect(byName["https://10.0.0.2:2379"]?.residualTime == "expired")
        #expect(byName["https://10.0.0.2:2379"]?.managed == nil)
        #expect(byName["bad"]?.status == .unreadable)
        #expect(report.hasFailures)
        let lines = report.renderTable().split(separator: "\n")
        let endpointLine = try #require(lines.first { $0.hasPrefix("https://10.0.0.2:2379") })
        #expect(endpointLine.hasSuffix("   expired         quorum-clients-ca@1735689600   unknown   expired"))
        let missingLine = try #require(lines.first { $0.hasPrefix("peers/peer.crt") })
        #expect(missingLine.hasSuffix("   -         missing"))
    }
}
