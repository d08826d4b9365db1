import SwiftASN1
import X509

/// The AlgorithmIdentifier values used to sign CRLs, mapped to and from swift-certificates' signature algorithms.
///
/// swift-certificates keeps its AlgorithmIdentifier internal, so the CRL codec carries this small table itself.
enum SignatureAlgorithmIdentifier {
    static let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]
    static let ecdsaWithSHA384: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 3]
    static let ecdsaWithSHA512: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 4]
    static let sha256WithRSA: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 11]
    static let sha384WithRSA: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 12]
    static let sha512WithRSA: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 13]

    static func algorithm(for oid: ASN1ObjectIdentifier) -> Certificate.SignatureAlgorithm? {
        switch oid {
        case ecdsaWithSHA256: return .ecdsaWithSHA256
        case ecdsaWithSHA384: return .ecdsaWithSHA384
        case ecdsaWithSHA512: return .ecdsaWithSHA512
        case sha256WithRSA: return .sha256WithRSAEncryption
        case sha384WithRSA: return .sha384WithRSAEncryption
        case sha512WithRSA: return .sha512WithRSAEncryption
        default: return nil
        }
    }

    /// Writes `SEQUENCE { oid [, NULL] }`; RSA identifiers carry an explicit NULL parameter, ECDSA ones none (RFC 5758).
    static func serialize(_ algorithm: Certificate.SignatureAlgorithm, into coder: inout DER.Serializer) throws {
        let isRSA = algorithm == .sha256WithRSAEncryption
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(isRSA ? sha256WithRSA : ecdsaWithSHA256)
            if isRSA { try coder.serialize(ASN1Null()) }
        }
    }

    /// Reads the OID of an AlgorithmIdentifier, ignoring parameters.
    static func oid(from node: ASN1Node) throws -> ASN1ObjectIdentifier {
        try DER.sequence(node, identifier: .sequence) { nodes in
            guard let oidNode = nodes.next() else {
                throw ASN1Error.invalidASN1Object(reason: "empty AlgorithmIdentifier")
            }
            let oid = try ASN1ObjectIdentifier(derEncoded: oidNode)
            while nodes.next() != nil {}
            return oid
        }
    }
}
