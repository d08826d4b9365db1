import Foundation

/// The validity of leaf certificates, as given by `--pki-leaf-validity`.
///
/// Accepts Go duration syntax (`8760h`, `90m`, `30s`, `1h30m`, `1.5h`, `500ms`) because etcd operators already write
/// durations that way, plus `d` (24h) and `y` (365d) because nobody should have to compute `8760h`. The default is one
/// year, the etcd-manager lifetime, which is now safe because renewal happens at two thirds of it. Anything under one
/// second is refused (certificates have one-second resolution); anything under an hour is allowed, for tests that
/// watch renewal happen, but comes with a warning because every renewal costs a TLS reload on every member.
public struct LeafLifetime: Sendable, Equatable, Hashable, CustomStringConvertible {
    public let seconds: TimeInterval

    public static let `default` = LeafLifetime(uncheckedSeconds: 365 * 86_400)
    public static let minimum: TimeInterval = 1
    public static let recommendedMinimum: TimeInterval = 3_600

    private static let units: [(suffix: String, seconds: Double)] = [
        ("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("μs", 1e-6), ("ms", 1e-3),
        ("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400), ("y", 365 * 86_400),
    ]

    private init(uncheckedSeconds: TimeInterval) {
        seconds = uncheckedSeconds
    }

    public init(seconds: TimeInterval) throws {
        guard seconds >= Self.minimum else {
            throw PKIError.invalidLifetime(input: "\(seconds)s", reason: "must be at least 1s")
        }
        self.seconds = seconds
    }

    /// Parses a flag value; errors name the input and say what was wrong.
    public init(parsing text: String) throws {
        let input = text.trimmingCharacters(in: .whitespaces)
        guard !input.isEmpty else { throw PKIError.invalidLifetime(input: text, reason: "empty duration") }
        if input.hasPrefix("-") { throw PKIError.invalidLifetime(input: text, reason: "must be positive") }
        var rest = Substring(input.hasPrefix("+") ? String(input.dropFirst()) : input)
        var total: Double = 0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number), number.filter({ $0 == "." }).count <= 1 else {
                throw PKIError.invalidLifetime(input: text, reason: "expected a number at \"\(rest)\"")
            }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix { $0.isLetter }
            guard !unitText.isEmpty else {
                throw PKIError.invalidLifetime(
                    input: text, reason: "missing unit in duration (use e.g. 8760h, 90d, 1y, 1h30m)")
            }
            guard let unit = Self.units.first(where: { $0.suffix == unitText }) else {
                throw PKIError.invalidLifetime(
                    input: text, reason: "unknown unit \"\(unitText)\" (valid: ns, us, ms, s, m, h, d, y)")
            }
            rest = rest.dropFirst(unitText.count)
            total += value * unit.seconds
        }
        guard total.isFinite, total < 1_000 * 365 * 86_400 else {
            throw PKIError.invalidLifetime(input: text, reason: "too large")
        }
        guard total > 0 else { throw PKIError.invalidLifetime(input: text, reason: "must be positive") }
        guard total >= Self.minimum else {
            throw PKIError.invalidLifetime(
                input: text, reason: "must be at least 1s (certificate times have 1s resolution)")
        }
        seconds = total
    }

    /// Operator warnings for a value that is accepted but unwise.
    public var warnings: [String] {
        guard seconds < Self.recommendedMinimum else { return [] }
        return [
            "leaf certificate validity \(self) is below 1h: certificates will be renewed every "
                + "\(DurationFormatter.compact(seconds * 2 / 3)); use this only in tests"
        ]
    }

    /// Go-style compact form: `8760h`, `1h30m`, `30s`.
    public var description: String { DurationFormatter.compact(seconds) }
}

/// Formats durations the way they were probably typed (`1h30m`, not `5400s`).
enum DurationFormatter {
    static func compact(_ seconds: TimeInterval) -> String {
        var remaining = Int(seconds.rounded())
        if remaining <= 0 { return seconds > 0 ? "\(Int((seconds * 1000).rounded()))ms" : "0s" }
        var parts = ""
        for (unit, size) in [("h", 3_600), ("m", 60), ("s", 1)] where remaining >= size {
            parts += "\(remaining / size)\(unit)"
            remaining %= size
        }
        return parts
    }
}
