import X509

/// Produces certificate serial numbers.
///
/// Serials are 128-bit random positive integers (CA/Browser Forum practice): unpredictable serials keep two
/// certificates issued in the same second from colliding and defeat chosen-prefix attacks. The generator is injectable
/// so tests can reproduce a certificate exactly.
public enum SerialNumberGenerator {
    /// Returns a positive 16-byte serial whose first byte is non-zero, so its hex form is always 32 digits.
    public static func next(using rng: inout some RandomNumberGenerator) -> Certificate.SerialNumber {
        var bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        bytes[0] &= 0x7F
        if bytes[0] == 0 { bytes[0] = 0x01 }
        return Certificate.SerialNumber(bytes: bytes)
    }
}

extension Certificate.SerialNumber {
    /// Upper-case hex without separators, the form `openssl x509 -serial` and `openssl crl -text` print.
    public var hexString: String {
        bytes.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }
}
