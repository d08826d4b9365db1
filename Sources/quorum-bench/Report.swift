import Foundation
import Histogram

/// Request latencies in nanoseconds, in an HDR histogram: constant memory and 3 significant digits at every
/// scale, so p99.9 of a million requests costs no sorting and no per-request storage.
struct Latencies: Sendable {
    static let highest: UInt64 = 120_000_000_000

    var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1_000, highestTrackableValue: Latencies.highest, numberOfSignificantValueDigits: .three)

    mutating func record(nanoseconds: UInt64) {
        _ = histogram.record(min(max(nanoseconds, 1), Latencies.highest))
    }

    mutating func add(_ other: Latencies) { histogram.add(other.histogram) }

    var count: UInt64 { histogram.totalCount }

    func milliseconds(atPercentile p: Double) -> Double {
        count == 0 ? 0 : Double(histogram.valueAtPercentile(p)) / 1e6
    }

    var maxMilliseconds: Double { count == 0 ? 0 : Double(histogram.max) / 1e6 }
    var meanMilliseconds: Double { count == 0 ? 0 : histogram.mean / 1e6 }
}

/// The outcome of one run, printed as a table or as JSON with etcdload's field names.
struct BenchReport: Sendable {
    var settings: BenchSettings
    var latencies = Latencies()
    var errors = 0
    var firstError: String?
    var elapsed: Double = 0
    var stoppedBy = "total"
    var clientCPUSeconds: Double = 0
    /// watch-latency only.
    var puts = 0
    var putLatencies = Latencies()

    var qps: Double { elapsed > 0 ? Double(latencies.count) / elapsed : 0 }

    private static func round(_ x: Double, _ digits: Int) -> Double {
        let scale = pow(10, Double(digits))
        return (x * scale).rounded() / scale
    }

    func jsonLine() -> String {
        var fields: [(String, Any)] = [
            ("client", "quorum-bench"),
            ("workload", settings.workload.rawValue),
            ("clients", settings.clients),
            ("conns", settings.conns),
            ("total", Int(latencies.count)),
            ("errors", errors),
            ("elapsed_s", Self.round(elapsed, 3)),
            ("qps", Self.round(qps, 1)),
            ("p50_ms", Self.round(latencies.milliseconds(atPercentile: 50), 3)),
            ("p90_ms", Self.round(latencies.milliseconds(atPercentile: 90), 3)),
            ("p99_ms", Self.round(latencies.milliseconds(atPercentile: 99), 3)),
            ("p999_ms", Self.round(latencies.milliseconds(atPercentile: 99.9), 3)),
            ("max_ms", Self.round(latencies.maxMilliseconds, 3)),
            ("mean_ms", Self.round(latencies.meanMilliseconds, 3)),
            ("samples", Int(latencies.count)),
            ("stopped_by", stoppedBy),
            ("key_size", settings.keySize),
            ("val_size", settings.valSize),
            ("key_space", settings.keySpace),
            ("endpoints", settings.endpoints.count),
            ("client_cpu_s", Self.round(clientCPUSeconds, 3)),
        ]
        if settings.workload == .watchLatency {
            fields += [
                ("puts", puts), ("watchers", settings.clients),
                ("put_p50_ms", Self.round(putLatencies.milliseconds(atPercentile: 50), 3)),
                ("put_p99_ms", Self.round(putLatencies.milliseconds(atPercentile: 99), 3)),
            ]
        }
        if let firstError { fields.append(("first_error", firstError)) }
        let body = fields.map { key, value -> String in
            let rendered: String
            switch value {
            case let s as String: rendered = Self.quote(s)
            case let d as Double: rendered = d.isFinite ? "\(d)" : "null"
            default: rendered = "\(value)"
            }
            return "\"\(key)\":\(rendered)"
        }
        return "{" + body.joined(separator: ",") + "}"
    }

    private static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    func table() -> String {
        func ms(_ v: Double) -> String { String(format: "%.3f", v) }
        let s = settings
        var lines: [String] = []
        let what = s.workload == .watchLatency ? "\(s.clients) watchers" : "\(s.clients) clients"
        lines.append("quorum-bench \(s.workload.rawValue): \(what), \(s.conns) conns, \(s.endpoints.count) endpoint(s)")
        lines.append(
            "  keys \(s.keySize) B (space \(s.keySpace)\(s.sequentialKeys ? ", sequential" : "")), values \(s.valSize) B")
        lines.append("")
        lines.append("Summary:")
        let unit = s.workload == .watchLatency ? "events" : "requests"
        lines.append(
            "  Total:        \(latencies.count) \(unit) in \(String(format: "%.3f", elapsed)) s (stopped by \(stoppedBy))")
        lines.append(String(format: "  Requests/sec: %.1f", qps))
        if s.workload == .watchLatency {
            lines.append(
                "  Puts:         \(puts) (put latency p50 \(ms(putLatencies.milliseconds(atPercentile: 50))) ms, "
                    + "p99 \(ms(putLatencies.milliseconds(atPercentile: 99))) ms)")
        }
        lines.append("  Errors:       \(errors)\(firstError.map { " (first: \($0))" } ?? "")")
        lines.append(String(format: "  Client CPU:   %.2f s", clientCPUSeconds))
        lines.append("")
        lines.append("Latency (ms):")
        lines.append("  | p50      | p90      | p99      | p99.9    | max      | mean     |")
        lines.append("  |----------|----------|----------|----------|----------|----------|")
        let row = [50.0, 90, 99, 99.9].map { latencies.milliseconds(atPercentile: $0) } + [
            latencies.maxMilliseconds, latencies.meanMilliseconds,
        ]
        lines.append("  | " + row.map { ms($0).padding(toLength: 8, withPad: " ", startingAt: 0) }.joined(separator: " | ") + " |")
        lines.append("")
        lines.append("Distribution (ms):")
        for p in [10.0, 25, 50, 75, 90, 95, 99, 99.9, 99.99] where latencies.count > 0 {
            lines.append(String(format: "  %6.2f%% <= ", p) + ms(latencies.milliseconds(atPercentile: p)))
        }
        return lines.joined(separator: "\n")
    }
}
