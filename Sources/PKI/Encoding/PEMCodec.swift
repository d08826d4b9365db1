import Foundation
import SwiftASN1
import X509

/// Reads and writes the PEM documents Quorum keeps on disk and hands to the TLS layer.
///
/// Everything is PEM because that is what operators inspect with `openssl` and what NIOSSL loads. Errors name the
/// source (usually a file path) so a broken file is found without guesswork.
public enum PEMCodec {
    /// Parses exactly one certificate; extra documents are an error because a serving cert file must be unambiguous.
    public static func certificate(fromPEM pem: String, source: String = "PEM input") throws -> Certificate {
        let certificates = try certificates(fromPEM: pem, source: source)
        guard certificates.count == 1 else {
            throw PKIError.invalidPEM(
                source: source,
                reason: "expected exactly one CERTIFICATE block, found \(certificates.count)"
            )
        }
        return certificates[0]
    }

    /// Parses every CERTIFICATE block, in order: a trust bundle holds several CAs while a CA rotation is in progress.
    /// Non-certificate blocks are rejected rather than skipped so a key pasted into a bundle is noticed.
    public static func certificates(fromPEM pem: String, source: String = "PEM input") throws -> [Certificate] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw PKIError.invalidPEM(source: source, reason: "\(error)")
        }
        guard !documents.isEmpty else {
            throw PKIError.invalidPEM(source: source, reason: "no PEM blocks found")
        }
        return try documents.map { document in
            guard document.discriminator == Certificate.defaultPEMDiscriminator else {
                throw PKIError.invalidPEM(
                    source: source,
                    reason: "unexpected \(document.discriminator) block where a CERTIFICATE was expected"
                )
            }
            do {
                return try Certificate(derEncoded: document.derBytes)
            } catch {
                throw PKIError.invalidPEM(source: source, reason: "certificate does not parse: \(error)")
            }
        }
    }

    /// Parses a private key in PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) form.
    public static func privateKey(fromPEM pem: String, source: String = "PEM input") throws -> Certificate.PrivateKey {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw PKIError.invalidPEM(source: source, reason: "\(error)")
        }
        let keys = documents.filter { $0.discriminator.hasSuffix("PRIVATE KEY") }
        guard keys.count == 1, let document = keys.first else {
            throw PKIError.invalidPEM(source: source, reason: "expected one private key block, found \(keys.count)")
        }
        do {
            return try Certificate.PrivateKey(pemDocument: document)
        } catch {
            throw PKIError.unsupportedKey(source: source, reason: "\(error)")
        }
    }

    /// PEM text for one certificate.
    public static func pem(for certificate: Certificate) throws -> String {
        try certificate.serializeAsPEM().pemString + "\n"
    }

    /// PEM text for a bundle, one block after another, in the given order.
    public static func pem(for certificates: [Certificate]) throws -> String {
        try certificates.map { try pem(for: $0) }.joined()
    }

    /// PEM text for a private key: PKCS#8 (`PRIVATE KEY`) for EC keys and PKCS#1 (`RSA PRIVATE KEY`) for RSA keys,
    /// the same forms Go's etcd tooling writes, so existing `openssl` habits and NIOSSL both read them unchanged.
    public static func pem(for privateKey: Certificate.PrivateKey) throws -> String {
        try privateKey.serializeAsPEM().pemString + "\n"
    }

    /// Reads a file as UTF-8, naming the file in the error.
    public static func readText(at url: URL) throws -> String {
        do {
            return try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw PKIError.fileSystem(operation: "read", path: url.path, reason: Self.reason(for: error))
        }
    }

    public static func certificate(at url: URL) throws -> Certificate {
        try certificate(fromPEM: readText(at: url), source: url.path)
    }

    public static func certificates(at url: URL) throws -> [Certificate] {
        try certificates(fromPEM: readText(at: url), source: url.path)
    }

    public static func privateKey(at url: URL) throws -> Certificate.PrivateKey {
        try privateKey(fromPEM: readText(at: url), source: url.path)
    }

    static func reason(for error: any Error) -> String {
        let nsError = error as NSError
        if nsError.domain == NSCocoaErrorDomain, nsError.code == NSFileReadNoSuchFileError {
            return "no such file"
        }
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError,
            underlying.domain == NSPOSIXErrorDomain
        {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return nsError.localizedDescription
    }
}

extension Certificate {
    /// The DER encoding, used for fingerprints, bundle de-duplication and byte-exact comparisons.
    public var derBytes: [UInt8] {
        get throws {
            var serializer = DER.Serializer()
            try serializer.serialize(self)
            return serializer.serializedBytes
        }
    }
}
