import Foundation
import TestSupport
import Testing
import X509

@testable import PKI

@Suite("PEM I/O and OpenSSL cross-checks")
struct PEMAndOpenSSLTests {
    /// openssl checks validity against the wall clock unless told otherwise; pin it to the fixture time.
    static let attime = String(Int(Fixtures.epoch.timeIntervalSince1970 + 3600))

    @Test("openssl verify accepts leaves from our CA and shows the SANs/EKU", arguments: KeyAlgorithm.allCases)
    func opensslAcceptsLeaf(algorithm: KeyAlgorithm) throws {
        let dir = TemporaryDirectory()
        let ca = try Fixtures.ca(algorithm: algorithm)
        let leaf = try Fixtures.leaf(from: ca, algorithm: algorithm)
        let caFile = try dir.write(PEMCodec.pem(for: ca.certificate), to: "ca.crt")
        let leafFile = try dir.write(leaf.certificatePEM, to: "leaf.crt")
        let keyFile = try dir.write(leaf.privateKeyPEM, to: "leaf.key")

        let verify = try OpenSSL.run([
            "verify", "-attime", Self.attime, "-purpose", "sslserver", "-CAfile", caFile.path, leafFile.path,
        ])
        #expect(verify.status == 0, "\(verify.combined)")
        #expect(verify.stdout.contains("leaf.crt: OK"))

        let text = try OpenSSL.run(["x509", "-noout", "-text", "-in", leafFile.path]).stdout
        #expect(text.contains("DNS:localhost, DNS:member-1.example.com, DNS:node1, IP Address:10.0.0.1"))
        #expect(text.contains("IP Address:0:0:0:0:0:0:0:1"))
        #expect(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"))
        #expect(text.contains("CA:FALSE"))
        #expect(text.contains("Key Encipherment") == (algorithm == .rsa2048))

        // openssl agrees that the key belongs to the certificate (same public key).
        let certPub = try OpenSSL.run(["x509", "-noout", "-pubkey", "-in", leafFile.path]).stdout
        let keyPub = try OpenSSL.run(["pkey", "-pubout", "-in", keyFile.path]).stdout
        #expect(!certPub.isEmpty && certPub == keyPub)

        let serial = try OpenSSL.run(["x509", "-noout", "-serial", "-in", leafFile.path]).stdout
        #expect(
            serial.trimmingCharacters(in: .whitespacesAndNewlines)
                == "serial=\(leaf.certificate.serialNumber.hexString)")
        let fingerprint = try OpenSSL.run(["x509", "-noout", "-fingerprint", "-sha256", "-in", leafFile.path]).stdout
        #expect(fingerprint.contains(CertificateInfo(leaf.certificate).sha256Fingerprint))
    }

    @Test("openssl rejects a leaf against a different CA")
    func opensslRejectsForeignCA() throws {
        let dir = TemporaryDirectory()
        let ca = try Fixtures.ca()
        let other = try Fixtures.ca(seed: 77)
        let leaf = try Fixtures.leaf(from: other)
        let caFile = try dir.write(PEMCodec.pem(for: ca.certificate), to: "ca.crt")
        let leafFile = try dir.write(leaf.certificatePEM, to: "leaf.crt")
        let verify = try OpenSSL.run(["verify", "-attime", Self.attime, "-CAfile", caFile.path, leafFile.path])
        #expect(verify.status != 0)
    }

    @Test("certificate, bundle and key PEM round-trip")
    func roundTrip() throws {
        let ca = try Fixtures.ca()
        let ca2 = try Fixtures.ca(.peers, seed: 5)
        let leaf = try Fixtures.leaf(from: ca)
        #expect(try PEMCodec.certificate(fromPEM: leaf.certificatePEM) == leaf.certificate)
        let bundle = try PEMCodec.pem(for: [ca.certificate, ca2.certificate])
        #expect(try PEMCodec.certificates(fromPEM: bundle) == [ca.certificate, ca2.certificate])
        #expect(throws: PKIError.self) { try PEMCodec.certificate(fromPEM: bundle, source: "bundle.crt") }
        let key = try PEMCodec.privateKey(fromPEM: leaf.privateKeyPEM)
        #expect(KeyPairCheck.matches(certificate: leaf.certificate, privateKey: key))
        #expect(try leaf.privateKeyPEM.contains("BEGIN PRIVATE KEY"))
    }

    @Test("keys written by openssl in SEC1, PKCS#8 and PKCS#1 forms are read")
    func opensslKeyForms() throws {
        let dir = TemporaryDirectory()
        let forms: [(args: [String], header: String)] = [
            (["ecparam", "-name", "prime256v1", "-genkey", "-noout"], "BEGIN EC PRIVATE KEY"),
            (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "BEGIN PRIVATE KEY"),
            (["genrsa", "-traditional"], "BEGIN RSA PRIVATE KEY"),
            (["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "BEGIN PRIVATE KEY"),
        ]
        for (index, form) in forms.enumerated() {
            let path = dir.fileURL("k\(index).pem").path
            let bits = form.args[0] == "genrsa" ? ["2048"] : []  // genrsa takes the size after its options
            let generated = try OpenSSL.run(form.args + ["-out", path] + bits)
            #expect(generated.status == 0, "\(generated.combined)")
            let pem = try String(contentsOfFile: path, encoding: .utf8)
            #expect(pem.contains(form.header))
            let key = try PEMCodec.privateKey(fromPEM: pem, source: path)
            #expect(KeyAlgorithm(publicKey: key.publicKey) != nil)
        }
    }

    @Test("broken input is reported with its source")
    func brokenInput() {
        #expect {
            try PEMCodec.certificates(fromPEM: "hello", source: "/etc/x.crt")
        } throws: { error in
            "\(error)".hasPrefix("/etc/x.crt: not valid PEM")
        }
        #expect {
            try PEMCodec.certificate(at: URL(fileURLWithPath: "/nonexistent/ca.crt"))
        } throws: { error in
            "\(error)" == "cannot read /nonexistent/ca.crt: no such file"
        }
    }

    @Test("key/certificate mismatch is detected")
    func keyMismatch() throws {
        let ca = try Fixtures.ca()
        let a = try Fixtures.leaf(from: ca, seed: 10)
        let b = try Fixtures.leaf(from: ca, seed: 11)
        #expect(KeyPairCheck.matches(certificate: a.certificate, privateKey: a.privateKey))
        #expect(!KeyPairCheck.matches(certificate: a.certificate, privateKey: b.privateKey))
        #expect(throws: PKIError.self) {
            try CertificateAuthority(certificate: ca.certificate, privateKey: a.privateKey)
        }
    }

    @Test("CertificateInfo describes a certificate")
    func info() throws {
        let ca = try Fixtures.ca()
        let leaf = try Fixtures.leaf(from: ca)
        let info = CertificateInfo(leaf.certificate)
        #expect(info.subject == "CN=member-1")
        #expect(info.issuer == "CN=quorum-clients-ca@1735689600,O=Quorum")
        #expect(info.keyAlgorithm == "ECDSA P-256")
        #expect(!info.isCertificateAuthority && !info.isSelfSigned)
        #expect(info.sha256Fingerprint.count == 95)
        #expect(info.authorityKeyIdentifier == CertificateInfo(ca.certificate).subjectKeyIdentifier)
        #expect(CertificateInfo(ca.certificate).isSelfSigned)
        #expect(info.lifetime == 365 * Fixtures.day + 300)
    }
}
