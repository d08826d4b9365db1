#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The textual layers of a JWT (RFC 7519): unpadded base64url segments and JSON objects, written as golang-jwt
/// writes them so that Quorum's tokens have the bytes etcd's would.
/// A JSON string literal as Go's `encoding/json` writes it (for bodies that must match etcd's byte for byte).
public func goJSONQuoted(_ text: String) -> String { JWTEncoding.goJSONString(text) }

enum JWTEncoding {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Go's `base64.RawURLEncoding.EncodeToString`.
    static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        let bytes = Array(bytes)
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            let b0 = chunk[chunk.startIndex]
            let b1 = chunk.count > 1 ? chunk[chunk.startIndex + 1] : 0
            let b2 = chunk.count > 2 ? chunk[chunk.startIndex + 2] : 0
            output.append(alphabet[Int(b0 >> 2)])
            output.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            if chunk.count > 1 { output.append(alphabet[Int((b1 & 0x0f) << 2 | b2 >> 6)]) }
            if chunk.count > 2 { output.append(alphabet[Int(b2 & 0x3f)]) }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Go's `base64.RawURLEncoding.DecodeString` (golang-jwt's default): no padding, no other alphabet, and a
    /// length that leaves no lone character. Returns nil for anything else.
    static func decodeBase64URL(_ text: some StringProtocol) -> [UInt8]? {
        var values: [UInt8] = []
        values.reserveCapacity(text.utf8.count)
        for character in text.utf8 {
            switch character {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): values.append(character - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): values.append(character - UInt8(ascii: "a") + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): values.append(character - UInt8(ascii: "0") + 52)
            case UInt8(ascii: "-"): values.append(62)
            case UInt8(ascii: "_"): values.append(63)
            default: return nil
            }
        }
        guard values.count % 4 != 1 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(values.count * 3 / 4)
        var index = 0
        while index < values.count {
            let group = values[index..<min(index + 4, values.count)]
            let v = Array(group) + Array(repeating: 0, count: 4 - group.count)
            output.append(v[0] << 2 | v[1] >> 4)
            if group.count > 2 { output.append(v[1] << 4 | v[2] >> 2) }
            if group.count > 3 { output.append(v[2] << 6 | v[3]) }
            index += 4
        }
        return output
    }

    /// A JSON string literal as Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped as
    /// `\u00XX`/`\u20XX`, control characters as `\n`, `\r`, `\t` or `\u00XX`.
    static func goJSONString(_ text: String) -> String {
        var output = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case "<", ">", "&", "\u{2028}", "\u{2029}":
                output += "\\u" + hex4(scalar.value)
            default:
                if scalar.value < 0x20 {
                    output += "\\u" + hex4(scalar.value)
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        return output + "\""
    }

    private static func hex4(_ value: UInt32) -> String {
        let digits = Array("0123456789abcdef")
        return String((0..<4).reversed().map { digits[Int((value >> (4 * UInt32($0))) & 0xf)] })
    }

    /// Decodes a JSON object (a JWT header or claims set) into loosely typed values, as Go decodes into
    /// `map[string]interface{}`: numbers become `Double`. Returns nil when the text is not a JSON object.
    static func decodeObject(_ bytes: [UInt8]) -> [String: JSONValue]? {
        guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) else {
            return nil
        }
        return object
    }
}

/// A JSON value of unknown shape.
enum JSONValue: Decodable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }
}
