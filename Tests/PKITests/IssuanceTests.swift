import Foundation
import TestSupport
import Testing
import X509

@testable import PKI

@Suite("Issuance")
struct IssuanceTests {
    @Test("CA has CA:TRUE pathlen 0, keyCertSign+cRLSign and an SKI", arguments: KeyAlgorithm.allCases)
    func caProfile(algorithm: KeyAlgorithm) throws {
        let ca = try Fixtures.ca(algorithm: algorithm)
        let certificate = ca.certificate
        #expect(try certificate.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        let usage = try #require(try certificate.extensions.keyUsage)
        #expect(usage.keyCertSign && usage.cRLSign && !usage.digitalSignature)
        #expect(try certificate.extensions.subjectKeyIdentifier != nil)
        #expect(certificate.subject == certificate.issuer)
        #expect(certificate.subject.commonName == "quorum-clients-ca@1735689600")
        #expect(KeyAlgorithm(publicKey: certificate.publicKey) == algorithm)
        #expect(certificate.notValidAfter == Fixtures.epoch + IssuanceDefaults.caValidity)
        #expect(certificate.notValidBefore == Fixtures.epoch - 300)
    }

    @Test("server leaf: SANs, EKU serverAuth+clientAuth, AKI = CA SKI, backdated, no keyEncipherment on EC")
    func serverLeafProfile() throws {
        let ca = try Fixtures.ca()
        let leaf = try Fixtures.leaf(from: ca).certificate
        let names = SubjectNames(certificate: leaf)
        #expect(names.commonName == "member-1")
        #expect(names.dnsNames == ["localhost", "member-1.example.com", "node1"])
        #expect(names.ipAddresses.map(\.description) == ["10.0.0.1", "127.0.0.1", "::1"])
        let eku = try #require(try leaf.extensions.extendedKeyUsage)
        #expect(Array(eku) == [.serverAuth, .clientAuth])
        let usage = try #require(try leaf.extensions.keyUsage)
        #expect(usage.digitalSignature)
        #expect(!usage.keyEncipherment)
        #expect(!usage.keyCertSign)
        #expect(try leaf.extensions.basicConstraints == .notCertificateAuthority)
        let aki = try #require(try leaf.extensions.authorityKeyIdentifier)
        #expect(aki.keyIdentifier == (try ca.certificate.extensions.subjectKeyIdentifier)?.keyIdentifier)
        #expect(leaf.notValidBefore == Fixtures.epoch - 300)
        #expect(leaf.notValidAfter == Fixtures.epoch + 365 * Fixtures.day)
        #expect(leaf.issuer == ca.certificate.subject)
    }

    @Test("RSA leaves carry keyEncipherment")
    func rsaLeafKeyUsage() throws {
        let ca = try Fixtures.ca(algorithm: .rsa2048)
        let leaf = try Fixtures.leaf(from: ca, algorithm: .rsa2048).certificate
        #expect(try leaf.extensions.keyUsage?.keyEncipherment == true)
        #expect(leaf.signatureAlgorithm == .sha256WithRSAEncryption)
    }

    @Test("notBefore is never earlier than the CA's notBefore; notAfter never later than the CA's notAfter")
    func leafClampedToCA() throws {
        let ca = try Fixtures.ca(validity: 30 * Fixtures.day)
        let early = try Fixtures.leaf(from: ca, at: Fixtures.epoch - 290)  // 10 s after the CA's notBefore
        #expect(early.certificate.notValidBefore == ca.certificate.notValidBefore)
        let late = try Fixtures.leaf(from: ca, validity: 365 * Fixtures.day, at: Fixtures.epoch + 20 * Fixtures.day)
        #expect(late.certificate.notValidAfter == ca.certificate.notValidAfter)
    }

    @Test("issuing from an expired CA fails with the CA's expiry in the message")
    func expiredCARefusesToIssue() throws {
        let ca = try Fixtures.ca(validity: Fixtures.day)
        #expect {
            try Fixtures.leaf(from: ca, at: Fixtures.epoch + 2 * Fixtures.day)
        } throws: { error in
            "\(error)".contains("expired at 2025-01-02T00:00:00Z")
        }
    }

    @Test("client certificate: CN is the user, clientAuth only, no SANs")
    func clientProfile() throws {
        let ca = try Fixtures.ca()
        var rng = SeededRandom(seed: 9)
        let issued = try LeafIssuer(authority: ca).issue(
            .client(user: "kube-apiserver"), now: Fixtures.epoch, using: &rng)
        let info = CertificateInfo(issued.certificate)
        #expect(info.commonName == "kube-apiserver")
        #expect(info.extendedKeyUsages == ["clientAuth"])
        #expect(info.dnsNames.isEmpty && info.ipAddresses.isEmpty)
        #expect(try issued.certificate.extensions.subjectAlternativeNames == nil)
    }

    @Test("serials are positive 128-bit values, deterministic under a seed, distinct across draws")
    func serials() {
        var a = SeededRandom(seed: 42)
        var b = SeededRandom(seed: 42)
        let first = SerialNumberGenerator.next(using: &a)
        #expect(first == SerialNumberGenerator.next(using: &b))
        #expect(first.bytes.count == 16)
        #expect(first.bytes.first! & 0x80 == 0)
        #expect(first.hexString.count == 32)
        var seen = Set<String>()
        for _ in 0..<500 { seen.insert(SerialNumberGenerator.next(using: &a).hexString) }
        #expect(seen.count == 500)
    }

    @Test("self-signed auto-tls certificate lasts the requested number of years")
    func selfSigned() throws {
        var rng = SeededRandom(seed: 3)
        let issued = try SelfSignedCertificate.make(
            names: SubjectNames(commonName: "default", hosts: ["localhost", "127.0.0.1"]),
            validityYears: 2, now: Fixtures.epoch, using: &rng)
        let info = CertificateInfo(issued.certificate)
        #expect(info.isSelfSigned)
        #expect(!info.isCertificateAuthority)
        #expect(info.notAfter == Date(timeIntervalSince1970: 1_798_761_600))  // 2027-01-01
        #expect(info.extendedKeyUsages == ["serverAuth", "clientAuth"])
        #expect(throws: PKIError.self) {
            try SelfSignedCertificate.make(
                names: SubjectNames(commonName: "x"), validityYears: 0, now: Fixtures.epoch, using: &rng)
        }
    }

    @Test("member names come from advertise URLs (IPv6 in brackets), hostname and loopback")
    func memberNames() {
        let names = SubjectNames.member(
            name: "m2", advertiseURLs: ["https://[fd00::2]:2380", "https://M2.Example.com:2379", "not a url"],
            hostname: "m2-host")
        #expect(names.dnsNames == ["localhost", "m2-host", "m2.example.com"])
        #expect(names.ipAddresses.map(\.description) == ["127.0.0.1", "::1", "fd00::2"])
        #expect(names.covers(host: "M2.example.COM"))
        #expect(names.covers(host: "[::1]"))
        #expect(!names.covers(host: "10.0.0.9"))
        #expect(SubjectNames(commonName: "w", dnsNames: ["*.svc.local"]).covers(host: "etcd.svc.local"))
        #expect(!SubjectNames(commonName: "w", dnsNames: ["*.svc.local"]).covers(host: "a.b.svc.local"))
    }
}
