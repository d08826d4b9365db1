import Foundation

/// One problem `quorumctl certs doctor` found, with the exact thing to do about it.
public struct DoctorFinding: Sendable, Codable, Equatable {
    public enum Severity: String, Sendable, Codable, Comparable {
        case info
        case warning
        case error

        private var rank: Int { self == .info ? 0 : (self == .warning ? 1 : 2) }

        public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    public var severity: Severity
    /// Stable identifier for scripts and alerts, e.g. `leaf-expired`, `clock-skew`.
    public var code: String
    /// The file (relative to `<data-dir>/pki`) or member concerned.
    public var subject: String
    public var message: String
    /// A concrete command or action.
    public var fix: String

    public init(severity: Severity, code: String, subject: String, message: String, fix: String) {
        self.severity = severity
        self.code = code
        self.subject = subject
        self.message = message
        self.fix = fix
    }
}
