import Foundation

/// Everything the backup code throws. Each case names the file, object or backup concerned and says what is wrong, so
/// a log line or a `quorumctl` message is enough to act on without reading code.
public enum BackupError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The text is not a canonical backup name (see `BackupName`).
    case invalidName(String)
    /// The manifest handed to `put` does not describe the backup being stored.
    case manifestDoesNotMatch(name: String, detail: String)
    /// No complete backup of that name exists at `location`.
    case notFound(name: String, location: String)
    /// A complete backup of that name already exists at `location`; backups are never overwritten.
    case alreadyExists(name: String, location: String)
    /// A manifest exists but is unreadable, malformed or inconsistent with what it sits next to.
    case invalidManifest(location: String, detail: String)
    /// A snapshot's length differs from its manifest's (typically a truncated copy).
    case sizeMismatch(location: String, expected: Int64, actual: Int64)
    /// A snapshot's SHA-256 differs from its manifest's (corruption, or a manifest from another snapshot).
    case checksumMismatch(location: String, expected: String, actual: String)
    /// A local file system operation failed.
    case io(path: String, operation: String, detail: String)
    /// An S3 request failed; see `S3Error`.
    case s3(S3Error)
    /// A configuration value (destination URL, endpoint, credentials) is unusable.
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .invalidName(let name):
            return "'\(name)' is not a backup name (expected e.g. 2026-12-06T03-15-00Z-1234)"
        case .manifestDoesNotMatch(let name, let detail):
            return "manifest for backup \(name) does not match: \(detail)"
        case .notFound(let name, let location):
            return "no complete backup named \(name) in \(location)"
        case .alreadyExists(let name, let location):
            return "backup \(name) already exists in \(location); backups are never overwritten"
        case .invalidManifest(let location, let detail):
            return "invalid backup manifest \(location): \(detail)"
        case .sizeMismatch(let location, let expected, let actual):
            return "snapshot \(location) is \(actual) bytes but its manifest says \(expected) (truncated or replaced)"
        case .checksumMismatch(let location, let expected, let actual):
            return "snapshot \(location) has sha256 \(actual) but its manifest says \(expected) (corrupt or replaced)"
        case .io(let path, let operation, let detail):
            return "\(operation) \(path): \(detail)"
        case .s3(let error):
            return error.description
        case .invalidConfiguration(let detail):
            return "invalid backup configuration: \(detail)"
        }
    }
}
