import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Structured JSON logs in the shape of etcd's (zap) output — `level`, `ts`, `caller`, `msg`, then fields —
/// so the tooling that tails etcd's log for milestones ("ready to serve client requests") works unchanged.
/// Each line is one `write(2)`, unbuffered, so nothing sits in a buffer when the process is killed.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let fds: [Int32]

    public init(label: String, level: Logger.Level, fd: Int32 = 2) {
        self.init(label: label, level: level, fds: [fd])
    }

    /// Each line goes to every descriptor (etcd's `--log-outputs` with several targets).
    public init(label: String, level: Logger.Level, fds: [Int32]) {
        self.label = label
        self.logLevel = level
        self.fds = fds
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "{\"level\":\"\(Self.name(event.level))\",\"ts\":\"\(Self.timestamp())\""
        let file = event.file.split(separator: "/").suffix(2).joined(separator: "/")
        line +=
            ",\"caller\":\"\(Self.escape(file)):\(event.line)\",\"msg\":\"\(Self.escape(event.message.description))\""
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        for key in fields.keys.sorted() {
            line += ",\"\(Self.escape(key))\":" + Self.render(fields[key]!)
        }
        line += "}\n"
        writeLine(line, to: fds)
    }

    private static func render(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let s): return "\"\(escape(s))\""
        case .stringConvertible(let c): return "\"\(escape(c.description))\""
        case .array(let values): return "[" + values.map(render).joined(separator: ",") + "]"
        case .dictionary(let dict):
            return "{" + dict.keys.sorted().map { "\"\(escape($0))\":" + render(dict[$0]!) }.joined(separator: ",")
                + "}"
        }
    }

    static func name(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: return "debug"
        case .info, .notice: return "info"
        case .warning: return "warn"
        case .error: return "error"
        case .critical: return "fatal"
        }
    }

    private static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var parts = tm()
        gmtime_r(&t, &parts)
        let millis = Int(ts.tv_nsec / 1_000_000)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), millis)
    }

    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
