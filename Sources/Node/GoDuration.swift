/// Go's `time.ParseDuration` syntax ("1h30m", "90s", "500ms", "1.5h"), which etcd's flags use, and Go's way of
/// writing a duration, which etcd's logs use. In Node, the lowest target that logs, so that the member and the server
/// write durations alike.
import Foundation

public enum GoDuration {
    public static func parse(_ text: String) -> Duration? {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        if rest == "0" { return .zero }
        guard !rest.isEmpty else { return nil }
        var total: Double = 0  // nanoseconds
        let units: [(String, Double)] = [
            ("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
        ]
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let unit = units.filter({ rest.hasPrefix($0.0) }).max(by: { $0.0.count < $1.0.count }) else {
                return nil
            }
            rest = rest.dropFirst(unit.0.count)
            total += value * unit.1
        }
        return .nanoseconds(Int64(total))
    }

    /// Go's `time.Duration.String` ("1m0s", "1h2m3.5s", "250ms"), as etcd logs durations.
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
