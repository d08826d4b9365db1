/// Go's durations as etcd reads and writes them: `time.ParseDuration`'s syntax, which etcd's duration flags and its
/// JWT `ttl=` option take ("1h30m", "90s", "500ms", "1.5h", "-2m"), and `time.Duration.String`, which its logs print
/// ("1m0s", "250ms"). A target of its own, below everything that reads a flag or writes a log, so that Auth, the
/// member and the server all parse and print durations one way, Go's.
public enum GoDuration {
    /// The units Go accepts, in nanoseconds (both spellings of the micro sign included).
    private static let units: [(name: String, nanoseconds: Int64)] = [
        ("ns", 1), ("us", 1_000), ("µs", 1_000), ("μs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
        ("m", 60_000_000_000), ("h", 3_600_000_000_000),
    ]

    /// Go's `time.ParseDuration`: an optional sign, then one or more decimal numbers (with an optional fraction),
    /// each followed by a unit; a bare `0` is allowed. Returns nil for anything Go refuses, a value beyond Go's
    /// 64-bit nanoseconds (about 292 years) included. Exact in integer nanoseconds, as Go is, except for fraction
    /// digits past the 18th.
    public static func parse(_ text: String) -> Duration? {
        var scalars = Array(text.unicodeScalars)[...]
        var negative = false
        if let sign = scalars.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            scalars = scalars.dropFirst()
        }
        if scalars.count == 1 && scalars.first == "0" { return .zero }
        guard !scalars.isEmpty else { return nil }

        func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }
        var total: Int64 = 0
        while !scalars.isEmpty {
            let integerDigits = scalars.prefix(while: isDigit)
            scalars = scalars.dropFirst(integerDigits.count)
            var fractionDigits = ArraySlice<Unicode.Scalar>()
            var hasPoint = false
            if scalars.first == "." {
                hasPoint = true
                scalars = scalars.dropFirst()
                fractionDigits = scalars.prefix(while: isDigit)
                scalars = scalars.dropFirst(fractionDigits.count)
            }
            guard !integerDigits.isEmpty || (hasPoint && !fractionDigits.isEmpty) else { return nil }
            let unitText = String(String.UnicodeScalarView(scalars.prefix { $0 != "." && !isDigit($0) }))
            scalars = scalars.dropFirst(unitText.unicodeScalars.count)
            guard let unit = units.first(where: { $0.name == unitText })?.nanoseconds else { return nil }

            var value: Int64 = 0
            for digit in integerDigits {
                let (shifted, o1) = value.multipliedReportingOverflow(by: 10)
                let (added, o2) = shifted.addingReportingOverflow(Int64(digit.value - 48))
                guard !o1, !o2 else { return nil }
                value = added
            }
            let (scaled, o3) = value.multipliedReportingOverflow(by: unit)
            guard !o3 else { return nil }
            var component = scaled
            if !fractionDigits.isEmpty {
                var fraction = 0.0
                var scale = 1.0
                for digit in fractionDigits.prefix(18) {
                    fraction = fraction * 10 + Double(digit.value - 48)
                    scale *= 10
                }
                let (withFraction, o4) = component.addingReportingOverflow(Int64(fraction * (Double(unit) / scale)))
                guard !o4 else { return nil }
                component = withFraction
            }
            let (sum, o5) = total.addingReportingOverflow(component)
            guard !o5 else { return nil }
            total = sum
        }
        return .nanoseconds(negative ? -total : total)
    }

    /// Go's `time.Duration.String` ("1m0s", "1h2m3.5s", "250ms", "1.5µs"), as etcd logs durations.
    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        if nanoseconds == 0 { return "0s" }
        let sign = nanoseconds < 0 ? "-" : ""
        let magnitude = nanoseconds.magnitude
        func trimmed(_ whole: UInt64, _ fraction: UInt64, digits: Int) -> String {
            guard fraction > 0 else { return "\(whole)" }
            var text = String(fraction)
            text = String(repeating: "0", count: digits - text.count) + text
            while text.hasSuffix("0") { text.removeLast() }
            return "\(whole).\(text)"
        }
        if magnitude < 1_000 { return sign + "\(magnitude)ns" }
        if magnitude < 1_000_000 { return sign + trimmed(magnitude / 1_000, magnitude % 1_000, digits: 3) + "µs" }
        if magnitude < 1_000_000_000 {
            return sign + trimmed(magnitude / 1_000_000, magnitude % 1_000_000, digits: 6) + "ms"
        }
        let totalSeconds = magnitude / 1_000_000_000
        let secondsText = trimmed(totalSeconds % 60, magnitude % 1_000_000_000, digits: 9) + "s"
        let minutes = totalSeconds / 60
        if minutes == 0 { return sign + secondsText }
        if minutes < 60 { return sign + "\(minutes)m" + secondsText }
        return sign + "\(minutes / 60)h\(minutes % 60)m" + secondsText
    }
}
