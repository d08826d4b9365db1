import Crypto

/// Certificate fingerprints in the colon-separated upper-case form `openssl x509 -fingerprint -sha256` prints, so an
/// operator can match what Quorum logs against what they see on disk.
public enum Fingerprint {
    public static func sha256(derBytes: [UInt8]) -> String {
        SHA256.hash(data: derBytes).map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: ":")
    }

    /// Hex without separators, used for key identifiers.
    static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        bytes.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }
}
