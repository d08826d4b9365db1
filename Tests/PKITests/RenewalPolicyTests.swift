import Foundation
import TestSupport
import Testing
import X509

@testable import PKI

@Suite("Renewal policy")
struct RenewalPolicyTests {
    let ca: CertificateAuthority
    let leaf: IssuedCertificate
    let bundle: TrustBundle
    let expectation = RenewalPolicy.Expectation(
        names: Fixtures.serverNames(), profile: .server, keyAlgorithm: .ecdsaP256)
    let policy = RenewalPolicy(jitterFraction: 0)
    /// Leaf lifetime including the 5-minute backdate.
    var lifetime: TimeInterval { leaf.certificate.notValidAfter.timeIntervalSince(leaf.certificate.notValidBefore) }

    init() throws {
        ca = try Fixtures.ca()
        leaf = try Fixtures.leaf(from: ca)
        bundle = TrustBundle(certificates: [ca.certificate], name: "clients/ca.crt")
    }

    func decide(
        _ material: LeafMaterial? = nil, at now: Date, expecting: RenewalPolicy.Expectation? = nil,
        bundle: TrustBundle? = nil, signingCA: Certificate? = nil, policy: RenewalPolicy? = nil,
        jitter: RenewalJitter = .none
    ) -> RenewalDecision {
        (policy ?? self.policy).evaluate(
            material ?? LeafMaterial(certificate: leaf.certificate, privateKey: leaf.privateKey),
            expecting: expecting ?? expectation, trustBundle: bundle ?? self.bundle,
            signingCA: signingCA ?? ca.certificate, now: now, jitter: jitter)
    }

    @Test("a fresh certificate is kept and the next check is capped at the maximum interval")
    func fresh() {
        let decision = decide(at: Fixtures.epoch)
        #expect(!decision.shouldRenew, "\(decision.summary)")
        #expect(decision.nextCheck == Fixtures.epoch + 3600)
        #expect(decision.renewAt == leaf.certificate.notValidBefore + lifetime * 2 / 3)
        #expect(decision.summary.hasPrefix("keep: renewal due at"))
    }

    @Test("just before 2/3 of the lifetime: keep, check exactly at the due time; at 2/3: renew")
    func twoThirdsBoundary() throws {
        let due = leaf.certificate.notValidBefore + lifetime * 2 / 3
        let before = decide(at: due - 10, policy: RenewalPolicy(jitterFraction: 0, maximumCheckInterval: 3600))
        #expect(!before.shouldRenew)
        #expect(before.nextCheck == due)
        let at = decide(at: due)
        #expect(at.reasons == [.nearExpiry(notAfter: leaf.certificate.notValidAfter, renewAt: due)])
        #expect(at.nextCheck == due + 1)
    }

    @Test("expired and not-yet-valid certificates are renewed immediately")
    func expiredAndNotYetValid() {
        let expired = decide(at: leaf.certificate.notValidAfter + 1)
        #expect(expired.reasons == [.expired(notAfter: leaf.certificate.notValidAfter)])
        #expect(expired.summary == "renew: certificate expired at 2026-01-01T00:00:00Z")
        let early = decide(at: leaf.certificate.notValidBefore - 60)
        #expect(early.reasons == [.notYetValid(notBefore: leaf.certificate.notValidBefore)])
    }

    @Test("missing, unreadable and key problems")
    func materialProblems() throws {
        let missing = decide(
            LeafMaterial(state: .missing, certificatePath: "s.crt", keyPath: "s.key"), at: Fixtures.epoch)
        #expect(missing.reasons == [.missing(path: "s.crt")])
        #expect(missing.renewAt == nil)
        let other = try Fixtures.leaf(from: ca, seed: 31)
        let mismatched = decide(
            LeafMaterial(certificate: leaf.certificate, privateKey: other.privateKey), at: Fixtures.epoch)
        #expect(mismatched.reasons == [.keyMismatch(path: "certificate key")])
        let keyless = decide(LeafMaterial(certificate: leaf.certificate, privateKey: nil), at: Fixtures.epoch)
        #expect(keyless.reasons == [.keyMissing(path: "certificate key")])
    }

    @Test("SAN and CN changes trigger renewal and say what changed")
    func identityChange() {
        var names = Fixtures.serverNames()
        names = SubjectNames(
            commonName: names.commonName, dnsNames: names.dnsNames,
            ipAddresses: names.ipAddresses.filter { $0.description != "10.0.0.1" } + [IPAddress("10.0.0.2")!])
        let changed = decide(at: Fixtures.epoch, expecting: .init(names: names, profile: .server))
        #expect(changed.reasons == [.namesChanged(missing: ["10.0.0.2"], unexpected: ["10.0.0.1"])])
        #expect(changed.summary.contains("missing SANs 10.0.0.2; no longer wanted SANs 10.0.0.1"))
        let renamed = SubjectNames(
            commonName: "member-9", dnsNames: names.dnsNames, ipAddresses: Fixtures.serverNames().ipAddresses)
        #expect(
            decide(at: Fixtures.epoch, expecting: .init(names: renamed, profile: .server)).reasons == [
                .commonNameChanged(from: "member-1", to: "member-9")
            ])
        let rsa = decide(
            at: Fixtures.epoch,
            expecting: .init(names: Fixtures.serverNames(), profile: .server, keyAlgorithm: .rsa2048))
        #expect(rsa.reasons == [.keyAlgorithmChanged(from: "ECDSA P-256", to: "RSA 2048")])
        let client = decide(at: Fixtures.epoch, expecting: .init(names: Fixtures.serverNames(), profile: .client))
        #expect(client.shouldRenew)
    }

    @Test("a leaf from a CA that left the bundle, or from the previous CA during rotation, is renewed")
    func caChanged() throws {
        let newCA = try Fixtures.ca(seed: 44)
        let onlyNew = TrustBundle(certificates: [newCA.certificate], name: "clients/ca.crt")
        let untrusted = decide(at: Fixtures.epoch, bundle: onlyNew, signingCA: newCA.certificate)
        #expect(
            untrusted.reasons == [
                .issuerNotTrusted(issuer: ca.certificate.subject.description, bundle: "clients/ca.crt")
            ])
        let both = TrustBundle(certificates: [ca.certificate, newCA.certificate], name: "clients/ca.crt")
        let rotating = decide(at: Fixtures.epoch, bundle: both, signingCA: newCA.certificate)
        #expect(
            rotating.reasons == [
                .issuedByPreviousCA(
                    issuer: ca.certificate.subject.description, current: newCA.certificate.subject.description)
            ])
        #expect(!decide(at: Fixtures.epoch, bundle: both, signingCA: ca.certificate).shouldRenew)
    }

    @Test("no pointless renewal when the CA's expiry caps the leaf")
    func cappedByCA() throws {
        let shortCA = try Fixtures.ca(validity: 30 * Fixtures.day)
        let capped = try Fixtures.leaf(from: shortCA, at: Fixtures.epoch + 25 * Fixtures.day)
        #expect(capped.certificate.notValidAfter == shortCA.certificate.notValidAfter)
        let decision = policy.evaluate(
            LeafMaterial(certificate: capped.certificate, privateKey: capped.privateKey), expecting: expectation,
            trustBundle: TrustBundle(certificates: [shortCA.certificate], name: "b"), signingCA: shortCA.certificate,
            now: Fixtures.epoch + 29 * Fixtures.day, jitter: .none)
        #expect(!decision.shouldRenew)
    }

    @Test("jitter moves renewal earlier, bounded by jitterFraction, deterministic per seed")
    func jitter() {
        let jittered = RenewalPolicy()  // 1/3 renewal, 10% jitter
        let nb = leaf.certificate.notValidBefore
        let na = leaf.certificate.notValidAfter
        let latest = nb + lifetime * 2 / 3
        let earliest = latest - lifetime * 0.1
        var rng = SeededRandom(seed: 2024)
        var times: [Date] = []
        for _ in 0..<1000 {
            let at = jittered.renewalTime(notBefore: nb, notAfter: na, jitter: .random(using: &rng))
            #expect(at >= earliest && at <= latest)
            times.append(at)
        }
        #expect(Set(times).count > 990)  // members really spread out
        #expect(times.min()!.timeIntervalSince(earliest) < lifetime * 0.001)
        #expect(latest.timeIntervalSince(times.max()!) < lifetime * 0.001)
        var a = SeededRandom(seed: 7)
        var b = SeededRandom(seed: 7)
        #expect(RenewalJitter.random(using: &a) == RenewalJitter.random(using: &b))
        // At 2/3 of the lifetime every member has renewed, whatever its jitter.
        let atTwoThirds = decide(at: latest, policy: jittered, jitter: RenewalJitter(unit: 0.99))
        #expect(atTwoThirds.shouldRenew)
        // Halfway no member has.
        #expect(!decide(at: nb + lifetime / 2, policy: jittered, jitter: RenewalJitter(unit: 0.99)).shouldRenew)
    }
}
