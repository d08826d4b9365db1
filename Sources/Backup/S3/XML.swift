/// A minimal XML reader for S3's responses (ListObjectsV2, errors, multipart upload), which are small, flat and
/// machine-written. Not a general parser: no DTDs, namespaces are kept as part of names, attributes are skipped. It avoids
/// `FoundationXML`, whose libxml2 dependency would have to be present wherever Quorum runs.
struct XMLElement: Equatable {
    var name: String
    var children: [XMLElement] = []
    var text = ""

    /// The first direct child named `name` (ignoring any namespace prefix).
    func child(_ name: String) -> XMLElement? {
        children.first { $0.localName == name }
    }

    func children(_ name: String) -> [XMLElement] {
        children.filter { $0.localName == name }
    }

    /// Text of the first direct child named `name`.
    func value(_ name: String) -> String? { child(name)?.text }

    var localName: Substring {
        guard let colon = name.lastIndex(of: ":") else { return Substring(name) }
        return name[name.index(after: colon)...]
    }
}

struct XMLParseError: Error, CustomStringConvertible {
    var detail: String
    var description: String { "malformed XML: \(detail)" }
}

enum XML {
    /// Parses a document and returns its root element.
    static func parse(_ bytes: [UInt8]) throws -> XMLElement {
        var parser = Parser(bytes: bytes)
        return try parser.document()
    }

    /// Escapes text for element content.
    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(c)
            }
        }
        return out
    }

    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func document() throws -> XMLElement {
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
            while true {
                skipWhitespace()
                guard i < bytes.count else { throw XMLParseError(detail: "no root element") }
                if starts("<?") {
                    try skip(past: "?>")
                } else if starts("<!--") {
                    try skip(past: "-->")
                } else if starts("<!") {
                    try skip(past: ">")
                } else if bytes[i] == UInt8(ascii: "<") {
                    return try element(depth: 0)
                } else {
                    throw XMLParseError(detail: "text before the root element")
                }
            }
        }

        mutating func element(depth: Int) throws -> XMLElement {
            guard depth < 64 else { throw XMLParseError(detail: "nested too deeply") }
            i += 1  // "<"
            let name = readName()
            guard !name.isEmpty else { throw XMLParseError(detail: "element without a name at byte \(i)") }
            // Attributes are skipped, honouring quotes (a ">" may appear inside one).
            var quote: UInt8?
            while i < bytes.count {
                let c = bytes[i]
                if let q = quote {
                    if c == q { quote = nil }
                } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                    quote = c
                } else if c == UInt8(ascii: ">") || c == UInt8(ascii: "/") {
                    break
                }
                i += 1
            }
            guard i < bytes.count else { throw XMLParseError(detail: "unterminated tag <\(name)") }
            var element = XMLElement(name: name)
            if bytes[i] == UInt8(ascii: "/") {
                guard i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: ">") else {
                    throw XMLParseError(detail: "bad empty tag <\(name)")
                }
                i += 2
                return element
            }
            i += 1  // ">"
            var text: [UInt8] = []
            while true {
                guard i < bytes.count else { throw XMLParseError(detail: "unterminated element <\(name)>") }
                if starts("</") {
                    i += 2
                    let closing = readName()
                    guard closing == name else {
                        throw XMLParseError(detail: "</\(closing)> closes <\(name)>")
                    }
                    skipWhitespace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ">") else {
                        throw XMLParseError(detail: "unterminated </\(name)")
                    }
                    i += 1
                    element.text = try decodeEntities(text)
                    return element
                } else if starts("<!--") {
                    try skip(past: "-->")
                } else if starts("<![CDATA[") {
                    i += 9
                    let start = i
                    try skip(past: "]]>")
                    text.append(contentsOf: bytes[start..<(i - 3)])
                } else if bytes[i] == UInt8(ascii: "<") {
                    element.children.append(try self.element(depth: depth + 1))
                } else {
                    text.append(bytes[i])
                    i += 1
                }
            }
        }

        mutating func readName() -> String {
            let start = i
            while i < bytes.count {
                let c = bytes[i]
                if c == UInt8(ascii: " ") || c == UInt8(ascii: ">") || c == UInt8(ascii: "/") || c == 0x09
                    || c == 0x0A || c == 0x0D
                {
                    break
                }
                i += 1
            }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        mutating func skipWhitespace() {
            while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        }

        func starts(_ prefix: StaticString) -> Bool {
            let p = UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount)
            guard i + p.count <= bytes.count else { return false }
            for k in 0..<p.count where bytes[i + k] != p[k] { return false }
            return true
        }

        mutating func skip(past terminator: StaticString) throws {
            while i < bytes.count {
                if starts(terminator) {
                    i += terminator.utf8CodeUnitCount
                    return
                }
                i += 1
            }
            throw XMLParseError(detail: "missing \(terminator)")
        }

        func decodeEntities(_ text: [UInt8]) throws -> String {
            guard text.contains(UInt8(ascii: "&")) else { return String(decoding: text, as: UTF8.self) }
            var out: [UInt8] = []
            var k = 0
            while k < text.count {
                guard text[k] == UInt8(ascii: "&") else {
                    out.append(text[k])
                    k += 1
                    continue
                }
                guard let semicolon = text[k...].firstIndex(of: UInt8(ascii: ";")), semicolon - k <= 10 else {
                    throw XMLParseError(detail: "unterminated entity")
                }
                let entity = String(decoding: text[(k + 1)..<semicolon], as: UTF8.self)
                switch entity {
                case "amp": out.append(UInt8(ascii: "&"))
                case "lt": out.append(UInt8(ascii: "<"))
                case "gt": out.append(UInt8(ascii: ">"))
                case "quot": out.append(UInt8(ascii: "\""))
                case "apos": out.append(UInt8(ascii: "'"))
                default:
                    let scalar: UInt32?
                    if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                        scalar = UInt32(entity.dropFirst(2), radix: 16)
                    } else if entity.hasPrefix("#") {
                        scalar = UInt32(entity.dropFirst())
                    } else {
                        scalar = nil
                    }
                    guard let scalar, let u = Unicode.Scalar(scalar) else {
                        throw XMLParseError(detail: "unknown entity &\(entity);")
                    }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                }
                k = semicolon + 1
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}
