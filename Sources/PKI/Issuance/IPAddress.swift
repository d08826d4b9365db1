#if canImport(Darwin)
    import Darwin
#elseif canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An IPv4 or IPv6 address in network byte order, as carried in an `iPAddress` SAN.
///
/// Parsing and printing go through `inet_pton`/`inet_ntop` so that `::1` and `0:0:0:0:0:0:0:1` compare equal and print
/// the way `openssl x509 -text` and etcd logs print them.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// 4 bytes for IPv4, 16 for IPv6.
    public let bytes: [UInt8]

    /// Parses dotted IPv4 or RFC 4291 IPv6 text; square brackets (URL form) are accepted and stripped.
    public init?(_ text: String) {
        var literal = text
        if literal.hasPrefix("["), literal.hasSuffix("]") {
            literal = String(literal.dropFirst().dropLast())
        }
        if let v4 = Self.parse(literal, family: AF_INET, length: 4) {
            bytes = v4
        } else if let v6 = Self.parse(literal, family: AF_INET6, length: 16) {
            bytes = v6
        } else {
            return nil
        }
    }

    /// Wraps raw SAN bytes; returns nil unless they are 4 or 16 bytes long.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    public var isIPv6: Bool { bytes.count == 16 }

    public var description: String {
        let family = isIPv6 ? AF_INET6 : AF_INET
        var buffer = [CChar](repeating: 0, count: 64)
        let ok = bytes.withUnsafeBytes { raw in
            buffer.withUnsafeMutableBufferPointer { out in
                inet_ntop(family, raw.baseAddress, out.baseAddress, socklen_t(out.count)) != nil
            }
        }
        guard ok else { return bytes.map(String.init).joined(separator: ".") }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        if lhs.bytes.count != rhs.bytes.count { return lhs.bytes.count < rhs.bytes.count }
        return lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    private static func parse(_ text: String, family: Int32, length: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: length)
        let result = out.withUnsafeMutableBytes { raw in
            text.withCString { inet_pton(family, $0, raw.baseAddress) }
        }
        return result == 1 ? out : nil
    }
}

extension IPAddress: Codable {
    /// Encodes as the textual address so state files and JSON reports stay human-readable.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let parsed = IPAddress(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad IP \(text)"))
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
