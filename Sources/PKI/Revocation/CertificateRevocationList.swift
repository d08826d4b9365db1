import Foundation
import SwiftASN1
import X509

/// An X.509 v2 certificate revocation list (RFC 5280 §5), parsed with SwiftASN1 because swift-certificates has no CRL
/// type.
///
/// Quorum uses CRLs for one thing: revoking client certificates (a leaked `kube-apiserver` key) before they expire.
public struct CertificateRevocationList: Sendable, Equatable {
    /// One revoked certificate.
    public struct Entry: Sendable, Equatable {
        public var serialNumber: Certificate.SerialNumber
        public var revocationDate: Date

        public init(serialNumber: Certificate.SerialNumber, revocationDate: Date) {
            self.serialNumber = serialNumber
            self.revocationDate = revocationDate
        }
    }

    public static let pemDiscriminator = "X509 CRL"

    public let issuer: DistinguishedName
    public let thisUpdate: Date
    public let nextUpdate: Date?
    public let entries: [Entry]
    /// The cRLNumber extension, when present; higher numbers supersede lower ones.
    public let crlNumber: Int?
    /// The complete DER encoding.
    public let derBytes: [UInt8]
    let tbsBytes: ArraySlice<UInt8>
    let signatureAlgorithm: Certificate.SignatureAlgorithm?
    let signatureBytes: [UInt8]

    static let crlNumberOID: ASN1ObjectIdentifier = [2, 5, 29, 20]

    /// Parses DER; every structural problem becomes `PKIError.invalidCRL` naming `source`.
    public init(derEncoded bytes: [UInt8], source: String = "CRL") throws {
        do {
            let parsed = try Self.parse(bytes)
            (issuer, thisUpdate, nextUpdate, entries, crlNumber) = parsed.fields
            (tbsBytes, signatureAlgorithm, signatureBytes) = (parsed.tbs, parsed.algorithm, parsed.signature)
            derBytes = bytes
        } catch let error as PKIError {
            throw error
        } catch {
            throw PKIError.invalidCRL(source: source, reason: "\(error)")
        }
    }

    /// Accepts PEM (`-----BEGIN X509 CRL-----`) or raw DER, as `openssl crl -inform` does.
    public init(bytes: [UInt8], source: String = "CRL") throws {
        if let text = String(bytes: bytes, encoding: .utf8), text.contains("-----BEGIN") {
            let document: PEMDocument
            do {
                document = try PEMDocument(pemString: text)
            } catch {
                throw PKIError.invalidCRL(source: source, reason: "\(error)")
            }
            guard document.discriminator == Self.pemDiscriminator else {
                throw PKIError.invalidCRL(source: source, reason: "found a \(document.discriminator) PEM block")
            }
            try self.init(derEncoded: document.derBytes, source: source)
        } else {
            try self.init(derEncoded: bytes, source: source)
        }
    }

    public static func load(from url: URL) throws -> CertificateRevocationList {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw PKIError.fileSystem(operation: "read", path: url.path, reason: PEMCodec.reason(for: error))
        }
        return try CertificateRevocationList(bytes: Array(data), source: url.path)
    }

    /// The entry revoking `serial`, if any.
    public func entry(for serial: Certificate.SerialNumber) -> Entry? {
        entries.first { $0.serialNumber == serial }
    }

    public func isRevoked(_ certificate: Certificate) -> Bool {
        certificate.issuer == issuer && entry(for: certificate.serialNumber) != nil
    }

    /// Whether `authority` signed this CRL. An unsigned or forged CRL could otherwise revoke (deny service to) anyone.
    public func isSignatureValid(from authority: Certificate) -> Bool {
        guard authority.subject == issuer, let signatureAlgorithm else { return false }
        return authority.publicKey.isValidSignature(
            signatureBytes, for: tbsBytes, signatureAlgorithm: signatureAlgorithm)
    }

    public func isStale(at now: Date) -> Bool {
        nextUpdate.map { $0 < now } ?? false
    }

    public var pem: String {
        PEMDocument(type: Self.pemDiscriminator, derBytes: derBytes).pemString + "\n"
    }
}

extension CertificateRevocationList {
    private struct Parsed {
        var fields: (DistinguishedName, Date, Date?, [Entry], Int?)
        var tbs: ArraySlice<UInt8>
        var algorithm: Certificate.SignatureAlgorithm?
        var signature: [UInt8]
    }

    private static func parse(_ bytes: [UInt8]) throws -> Parsed {
        let root = try DER.parse(bytes)
        return try DER.sequence(root, identifier: .sequence) { nodes in
            guard let tbsNode = nodes.next(), let algorithmNode = nodes.next(), let signatureNode = nodes.next() else {
                throw ASN1Error.invalidASN1Object(reason: "CertificateList needs tbsCertList, algorithm, signature")
            }
            let fields = try parseTBS(tbsNode)
            let algorithm = SignatureAlgorithmIdentifier.algorithm(
                for: try SignatureAlgorithmIdentifier.oid(from: algorithmNode)
            )
            let signature = try ASN1BitString(derEncoded: signatureNode)
            return Parsed(
                fields: fields, tbs: tbsNode.encodedBytes, algorithm: algorithm, signature: Array(signature.bytes))
        }
    }

    private static func parseTBS(_ node: ASN1Node) throws -> (DistinguishedName, Date, Date?, [Entry], Int?) {
        try DER.sequence(node, identifier: .sequence) { nodes in
            var next = nodes.next()
            if let version = next, version.identifier == .integer {
                guard try Int(derEncoded: version) == 1 else {
                    throw ASN1Error.invalidASN1Object(reason: "unsupported CRL version")
                }
                next = nodes.next()
            }
            guard let algorithmNode = next, algorithmNode.identifier == .sequence else {
                throw ASN1Error.invalidASN1Object(reason: "missing signature AlgorithmIdentifier")
            }
            guard let issuerNode = nodes.next(), let thisUpdateNode = nodes.next() else {
                throw ASN1Error.invalidASN1Object(reason: "missing issuer or thisUpdate")
            }
            let issuer = try DistinguishedName(derEncoded: issuerNode)
            let thisUpdate = try ASN1Time.date(from: thisUpdateNode)
            var nextUpdate: Date?
            var entries: [Entry] = []
            var crlNumber: Int?
            next = nodes.next()
            if let node = next, ASN1Time.isTime(node) {
                nextUpdate = try ASN1Time.date(from: node)
                next = nodes.next()
            }
            if let node = next, node.identifier == .sequence {
                entries = try parseEntries(node)
                next = nodes.next()
            }
            if let node = next, node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                crlNumber = try parseCRLNumber(node)
                next = nodes.next()
            }
            guard next == nil else { throw ASN1Error.invalidASN1Object(reason: "unexpected field in TBSCertList") }
            return (issuer, thisUpdate, nextUpdate, entries, crlNumber)
        }
    }

    private static func parseEntries(_ node: ASN1Node) throws -> [Entry] {
        try DER.sequence(node, identifier: .sequence) { nodes in
            var entries: [Entry] = []
            while let entryNode = nodes.next() {
                entries.append(
                    try DER.sequence(entryNode, identifier: .sequence) { fields in
                        guard let serialNode = fields.next(), let dateNode = fields.next() else {
                            throw ASN1Error.invalidASN1Object(reason: "revoked entry needs serial and date")
                        }
                        let serial = try ArraySlice<UInt8>(derEncoded: serialNode)
                        let date = try ASN1Time.date(from: dateNode)
                        while fields.next() != nil {}  // entry extensions (reason codes) are not needed
                        return Entry(serialNumber: Certificate.SerialNumber(bytes: serial), revocationDate: date)
                    }
                )
            }
            return entries
        }
    }

    private static func parseCRLNumber(_ node: ASN1Node) throws -> Int? {
        try DER.explicitlyTagged(node, tagNumber: 0, tagClass: .contextSpecific) { extensionsNode in
            let extensions = try DER.sequence(
                of: Certificate.Extension.self, identifier: .sequence, rootNode: extensionsNode)
            guard let number = extensions.first(where: { $0.oid == crlNumberOID }) else { return nil }
            return try Int(derEncoded: DER.parse(number.value))
        }
    }
}
