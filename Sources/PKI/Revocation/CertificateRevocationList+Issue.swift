import Foundation
import SwiftASN1
import X509

extension CertificateRevocationList {
    /// Signs a v2 CRL listing `entries`, with authorityKeyIdentifier and cRLNumber extensions so that OpenSSL, Go and
    /// BoringSSL all accept it (`openssl verify -crl_check` requires the AKI to find the issuer).
    ///
    /// `nextUpdate` defaults to a week: long enough to survive an outage of whatever republishes it, short enough that
    /// a stale list is noticed.
    public static func issue(
        revoking entries: [Entry],
        by authority: CertificateAuthority,
        crlNumber: Int,
        thisUpdate: Date,
        nextUpdate: Date? = nil
    ) throws -> CertificateRevocationList {
        let issuedAt = IssuanceDefaults.wholeSeconds(thisUpdate)
        let next = IssuanceDefaults.wholeSeconds(nextUpdate ?? issuedAt.addingTimeInterval(7 * IssuanceDefaults.day))
        let algorithm = authority.privateKey.signatureAlgorithm
        var tbsCoder = DER.Serializer()
        try tbsCoder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(1)  // v2
            try SignatureAlgorithmIdentifier.serialize(algorithm, into: &coder)
            try coder.serialize(authority.certificate.subject)
            try ASN1Time.serialize(issuedAt, into: &coder)
            try ASN1Time.serialize(next, into: &coder)
            if !entries.isEmpty {
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    for entry in entries {
                        try coder.appendConstructedNode(identifier: .sequence) { coder in
                            try coder.serialize(entry.serialNumber.bytes)
                            try ASN1Time.serialize(IssuanceDefaults.wholeSeconds(entry.revocationDate), into: &coder)
                        }
                    }
                }
            }
            try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    let aki = AuthorityKeyIdentifier(keyIdentifier: authority.keyIdentifier)
                    try coder.serialize(try aki.makeCertificateExtension())
                    var number = DER.Serializer()
                    try number.serialize(crlNumber)
                    try coder.serialize(
                        Certificate.Extension(oid: crlNumberOID, critical: false, value: number.serializedBytes[...])
                    )
                }
            }
        }
        let tbs = tbsCoder.serializedBytes
        let signature = try authority.privateKey.sign(bytes: tbs, signatureAlgorithm: algorithm)
        var coder = DER.Serializer()
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            coder.serializeRawBytes(tbs)
            try SignatureAlgorithmIdentifier.serialize(algorithm, into: &coder)
            try coder.serialize(ASN1BitString(bytes: signature.rawRepresentation[...]))
        }
        return try CertificateRevocationList(derEncoded: coder.serializedBytes, source: "issued CRL")
    }
}
