import Foundation
import TestSupport
import Testing
import X509

@testable import PKI

@Suite("Certificate revocation lists")
struct RevocationTests {
    @Test("issue, PEM round-trip, and detect a revoked client serial", arguments: KeyAlgorithm.allCases)
    func issueAndParse(algorithm: KeyAlgorithm) throws {
        let ca = try Fixtures.ca(algorithm: algorithm)
        var rng = SeededRandom(seed: 12)
        let revoked = try LeafIssuer(authority: ca).issue(
            .client(user: "kube-apiserver"), now: Fixtures.epoch, using: &rng)
        let kept = try LeafIssuer(authority: ca).issue(.client(user: "root"), now: Fixtures.epoch, using: &rng)
        let crl = try CertificateRevocationList.issue(
            revoking: [.init(serialNumber: revoked.certificate.serialNumber, revocationDate: Fixtures.epoch + 60)],
            by: ca, crlNumber: 7, thisUpdate: Fixtures.epoch + 60)
        let parsed = try CertificateRevocationList(bytes: Array(crl.pem.utf8), source: "clients/crl.pem")
        #expect(parsed == crl)
        #expect(parsed.issuer == ca.certificate.subject)
        #expect(parsed.thisUpdate == Fixtures.epoch + 60)
        #expect(parsed.nextUpdate == Fixtures.epoch + 60 + 7 * Fixtures.day)
        #expect(parsed.crlNumber == 7)
        #expect(parsed.entries.map(\.serialNumber) == [revoked.certificate.serialNumber])
        #expect(parsed.isRevoked(revoked.certificate))
        #expect(!parsed.isRevoked(kept.certificate))
        #expect(parsed.isSignatureValid(from: ca.certificate))
        #expect(!parsed.isSignatureValid(from: try Fixtures.ca(seed: 55).certificate))

        let bundle = TrustBundle(certificates: [ca.certificate], name: "clients/ca.crt")
        let named = ChainVerifier.NamedCRL(parsed, name: "clients/crl.pem")
        let now = Fixtures.epoch + 120
        let result = ChainVerifier.verify(revoked.certificate, against: bundle, at: now, revocation: named)
        #expect(
            result.problems.map(\.description) == [
                "serial \(revoked.certificate.serialNumber.hexString) is revoked by CRL clients/crl.pem"
            ])
        #expect(ChainVerifier.verify(kept.certificate, against: bundle, at: now, revocation: named).isValid)
    }

    @Test("openssl reads our CRL and rejects the revoked certificate with -crl_check")
    func opensslAgrees() throws {
        let dir = TemporaryDirectory()
        let ca = try Fixtures.ca()
        var rng = SeededRandom(seed: 13)
        let revoked = try LeafIssuer(authority: ca).issue(.client(user: "mallory"), now: Fixtures.epoch, using: &rng)
        let kept = try LeafIssuer(authority: ca).issue(.client(user: "root"), now: Fixtures.epoch, using: &rng)
        let crl = try CertificateRevocationList.issue(
            revoking: [.init(serialNumber: revoked.certificate.serialNumber, revocationDate: Fixtures.epoch)],
            by: ca, crlNumber: 1, thisUpdate: Fixtures.epoch)
        let caFile = try dir.write(PEMCodec.pem(for: ca.certificate), to: "ca.crt")
        let crlFile = try dir.write(crl.pem, to: "crl.pem")
        let revokedFile = try dir.write(revoked.certificatePEM, to: "revoked.crt")
        let keptFile = try dir.write(kept.certificatePEM, to: "kept.crt")

        let text = try OpenSSL.run(["crl", "-in", crlFile.path, "-noout", "-text", "-CAfile", caFile.path])
        #expect(text.combined.contains("verify OK"), "\(text.combined)")
        #expect(text.stdout.contains("Serial Number: \(revoked.certificate.serialNumber.hexString)"))
        #expect(text.stdout.contains("X509v3 CRL Number"))

        let attime = String(Int(Fixtures.epoch.timeIntervalSince1970 + 3600))
        let rejected = try OpenSSL.run([
            "verify", "-attime", attime, "-crl_check", "-CAfile", caFile.path, "-CRLfile", crlFile.path,
            revokedFile.path,
        ])
        #expect(rejected.status != 0)
        #expect(rejected.combined.contains("certificate revoked"))
        let accepted = try OpenSSL.run([
            "verify", "-attime", attime, "-crl_check", "-CAfile", caFile.path, "-CRLfile", crlFile.path, keptFile.path,
        ])
        #expect(accepted.status == 0, "\(accepted.combined)")
    }

    @Test("a CRL made by openssl is parsed")
    func parsesOpenSSLCRL() throws {
        let dir = TemporaryDirectory()
        let ca = try Fixtures.ca()
        var rng = SeededRandom(seed: 14)
        let victim = try LeafIssuer(authority: ca).issue(.client(user: "x"), now: Fixtures.epoch, using: &rng)
        _ = try dir.write(PEMCodec.pem(for: ca.certificate), to: "ca.crt")
        _ = try dir.write(PEMCodec.pem(for: ca.privateKey), to: "ca.key")
        _ = try dir.write(victim.certificatePEM, to: "victim.crt")
        let config = """
            [ ca ]
            default_ca = qca
            [ qca ]
            database = \(dir.url.path)/index.txt
            crlnumber = \(dir.url.path)/crlnumber
            default_md = sha256
            default_crl_days = 30
            """
        _ = try dir.write(config, to: "openssl.cnf")
        _ = try dir.write("", to: "index.txt")
        _ = try dir.write("1000\n", to: "crlnumber")
        let base = [
            "-config", dir.fileURL("openssl.cnf").path, "-keyfile", dir.fileURL("ca.key").path, "-cert",
            dir.fileURL("ca.crt").path,
        ]
        let revoke = try OpenSSL.run(["ca"] + base + ["-revoke", dir.fileURL("victim.crt").path])
        #expect(revoke.status == 0, "\(revoke.combined)")
        let gen = try OpenSSL.run(["ca"] + base + ["-gencrl", "-out", dir.fileURL("crl.pem").path])
        #expect(gen.status == 0, "\(gen.combined)")
        let crl = try CertificateRevocationList.load(from: dir.fileURL("crl.pem"))
        #expect(crl.isRevoked(victim.certificate))
        #expect(crl.crlNumber == 0x1000)
        #expect(crl.isSignatureValid(from: ca.certificate))
        let der = try OpenSSL.run([
            "crl", "-in", dir.fileURL("crl.pem").path, "-outform", "DER", "-out", dir.fileURL("crl.der").path,
        ])
        #expect(der.status == 0)
        #expect(try CertificateRevocationList.load(from: dir.fileURL("crl.der")) == crl)
    }

    @Test("garbage is rejected with the source named")
    func garbage() {
        #expect {
            try CertificateRevocationList(bytes: [0x30, 0x03, 0x02, 0x01, 0x01], source: "bad.crl")
        } throws: { error in
            "\(error)".hasPrefix("bad.crl: not a valid certificate revocation list")
        }
    }
}
