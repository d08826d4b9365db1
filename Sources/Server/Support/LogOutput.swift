import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// etcd's `--logger`, `--log-outputs` and `--log-level`.
public struct LogSettings: Sendable, Equatable {
    public enum Format: Sendable, Equatable {
        /// etcd 3.5's structured JSON lines (and 3.4's with `--logger=zap`).
        case zap
        /// etcd 3.4's default text lines: `2006-01-02 15:04:05.000000 I | package: message`.
        case capnslog
    }

    public var format: Format = .zap
    /// `stderr`, `stdout`, `default` (standard error, as etcd outside systemd) or file paths, each line to all.
    public var outputs: [String] = ["default"]
    public var level: Logger.Level = .info

    public init() {}

    /// Opens every output (files are created if missing and appended to); the descriptors to write each line to.
    public func openOutputs() throws -> [Int32] {
        var fds: [Int32] = []
        for output in outputs {
            switch output {
            case "stderr", "default": fds.append(2)
            case "stdout": fds.append(1)
            default:
                let fd = open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                if fd < 0 {
                    throw ConfigError("cannot open log output \(output): \(String(cString: strerror(errno)))")
                }
                fds.append(fd)
            }
        }
        return fds
    }

    /// The handler for a logger label, in the chosen format.
    public func makeHandler(label: String, fds: [Int32]) -> any LogHandler {
        switch format {
        case .zap: return JSONLogHandler(label: label, level: level, fds: fds)
        case .capnslog: return CapnslogLogHandler(label: label, level: level, fds: fds)
        }
    }
}

/// Writes one line to every descriptor, each with as few `write(2)` calls as it takes (unbuffered, so nothing
/// sits in a buffer when the process is killed).
func writeLine(_ line: String, to fds: [Int32]) {
    line.withCString { pointer in
        let length = strlen(pointer)
        for fd in fds {
            var remaining = length
            var cursor = pointer
            while remaining > 0 {
                let n = write(fd, cursor, remaining)
                if n <= 0 { break }
                remaining -= n
                cursor += n
            }
        }
    }
}

/// etcd 3.4's capnslog text lines, `2006-01-02 15:04:05.000000 I | package: message`, in local time, with the
/// logger's label as the package and structured fields appended as `(key=value, ...)`. etcd 3.4 used it by default;
/// `--logger=capnslog` selects it (deprecated there too, as Quorum warns at start).
public struct CapnslogLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let fds: [Int32]

    public init(label: String, level: Logger.Level, fds: [Int32] = [2]) {
        self.label = label
        self.logLevel = level
        self.fds = fds
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "\(Self.timestamp()) \(Self.letter(event.level)) | \(label): \(event.message)"
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        if !fields.isEmpty {
            line += " (" + fields.keys.sorted().map { "\($0)=\(fields[$0]!)" }.joined(separator: ", ") + ")"
        }
        writeLine(line + "\n", to: fds)
    }

    /// capnslog's level letters.
    static func letter(_ level: Logger.Level) -> String {
        switch level {
        case .trace: return "T"
        case .debug: return "D"
        case .info: return "I"
        case .notice: return "N"
        case .warning: return "W"
        case .error: return "E"
        case .critical: return "C"
        }
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var parts = tm()
        localtime_r(&t, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d.%06d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(ts.tv_nsec / 1000))
    }
}
