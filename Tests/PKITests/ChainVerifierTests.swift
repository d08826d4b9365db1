import Foundation
import TestSupport
import Testing
import X509

@testable import PKI

@Suite("Chain verification and explanations")
struct ChainVerifierTests {
    let ca: CertificateAuthority
    let leaf: IssuedCertificate
    let bundle: TrustBundle

    init() throws {
        ca = try Fixtures.ca()
        leaf = try Fixtures.leaf(from: ca)
        bundle = TrustBundle(certificates: [ca.certificate], name: "/data/pki/clients/ca.crt")
    }

    @Test("a fresh leaf verifies; RFC 5280 verifier agrees")
    func valid() async throws {
        let result = ChainVerifier.verify(
            leaf.certificate, against: bundle, at: Fixtures.epoch, host: "10.0.0.1", requiredUsage: .serverAuth)
        #expect(result.isValid, "\(result.explanation)")
        #expect(result.anchor == ca.certificate)
        #expect(result.explanation == "ok")
        #expect(await RFC5280Check.isTrusted(leaf.certificate, bundle: bundle, at: Fixtures.epoch))
    }

    @Test("expired leaf message names subject, expiry and now")
    func expired() async throws {
        let now = Fixtures.epoch + 400 * Fixtures.day
        let result = ChainVerifier.verify(leaf.certificate, against: bundle, at: now)
        #expect(
            result.problems.map(\.description) == [
                "certificate CN=member-1 expired at 2026-01-01T00:00:00Z (now 2026-02-05T00:00:00Z)"
            ])
        #expect(await !RFC5280Check.isTrusted(leaf.certificate, bundle: bundle, at: now))
    }

    @Test("not-yet-valid leaf")
    func notYetValid() {
        let now = Fixtures.epoch - 3600
        let result = ChainVerifier.verify(leaf.certificate, against: bundle, at: now)
        #expect(
            result.problems.first?.description.hasPrefix(
                "certificate CN=member-1 is not yet valid until 2024-12-31T23:55:00Z") == true)
    }

    @Test("unknown authority names the issuer and the bundle file")
    func unknownAuthority() async throws {
        let other = try Fixtures.ca(.peers, seed: 99)
        let result = ChainVerifier.verify(
            leaf.certificate, against: TrustBundle(certificates: [other.certificate], name: "/data/pki/peers/ca.crt"),
            at: Fixtures.epoch)
        #expect(
            result.problems.map(\.description) == [
                "signed by an unknown authority: issuer \(ca.certificate.subject) is not in /data/pki/peers/ca.crt"
            ])
    }

    @Test("a re-created CA with the same name is reported as a signature mismatch")
    func sameNameDifferentKey() throws {
        var rng = SeededRandom(seed: 5)
        let impostor = try CertificateAuthority.generate(
            commonName: ca.certificate.subject.commonName!, now: Fixtures.epoch, using: &rng)
        let result = ChainVerifier.verify(
            leaf.certificate, against: TrustBundle(certificates: [impostor.certificate], name: "b.crt"),
            at: Fixtures.epoch)
        guard case .signatureMismatch = result.problems.first else {
            Issue.record("expected signatureMismatch, got \(result.problems)")
            return
        }
    }

    @Test("SAN mismatch lists what the certificate has")
    func sanMismatch() {
        let result = ChainVerifier.verify(leaf.certificate, against: bundle, at: Fixtures.epoch, host: "10.0.0.9")
        #expect(
            result.problems.map(\.description) == [
                "SAN does not contain 10.0.0.9 (has: localhost, member-1.example.com, node1, 10.0.0.1, 127.0.0.1, ::1)"
            ])
    }

    @Test("a client certificate cannot serve")
    func usage() throws {
        var rng = SeededRandom(seed: 4)
        let client = try LeafIssuer(authority: ca).issue(.client(user: "root"), now: Fixtures.epoch, using: &rng)
        let result = ChainVerifier.verify(
            client.certificate, against: bundle, at: Fixtures.epoch, requiredUsage: .serverAuth)
        #expect(!result.isValid)
        #expect(
            ChainVerifier.verify(client.certificate, against: bundle, at: Fixtures.epoch, requiredUsage: .clientAuth)
                .isValid)
    }

    @Test("an expired CA is reported even when the leaf is still valid")
    func expiredCA() throws {
        let shortCA = try Fixtures.ca(validity: 10 * Fixtures.day)
        var rng = SeededRandom(seed: 8)
        // Issue with a CA that lives longer than the leaf by constructing the leaf before expiry.
        let leaf = try LeafIssuer(authority: shortCA).issue(
            LeafRequest(names: Fixtures.serverNames(), profile: .server, validity: 5 * Fixtures.day),
            now: Fixtures.epoch + 8 * Fixtures.day, using: &rng)
        let now = Fixtures.epoch + 11 * Fixtures.day
        let result = ChainVerifier.verify(
            leaf.certificate, against: TrustBundle(certificates: [shortCA.certificate], name: "ca.crt"), at: now)
        #expect(result.problems.count == 2)  // leaf capped at CA expiry, so both are expired
        #expect(
            result.problems.map(\.description).contains(
                "certificate CN=quorum-clients-ca@1735689600,O=Quorum expired at 2025-01-11T00:00:00Z "
                    + "(now 2025-01-12T00:00:00Z)"))
    }

    @Test("self-signed certificate pinned in a bundle verifies")
    func pinnedSelfSigned() throws {
        var rng = SeededRandom(seed: 6)
        let cert = try SelfSignedCertificate.make(
            names: SubjectNames(commonName: "auto", hosts: ["localhost"]), now: Fixtures.epoch, using: &rng)
        #expect(
            ChainVerifier.verify(
                cert.certificate, against: TrustBundle(certificates: [cert.certificate], name: "p"), at: Fixtures.epoch
            ).isValid)
        #expect(!ChainVerifier.verify(cert.certificate, against: bundle, at: Fixtures.epoch).isValid)
    }
}
