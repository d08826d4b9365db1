import Foundation

/// Turns the `--backup-destination` text an operator writes into a store.
public enum BackupDestination {
    /// `s3://bucket[/prefix]` → `S3Store` with credentials and region from the AWS environment variables (and
    /// `s3Endpoint`, e.g. `http://minio:9000`, for S3-compatible servers); an absolute path or `file:///path` →
    /// `LocalDirectoryStore`. Anything else is an `invalidConfiguration` error.
    public static func makeStore(
        _ destination: String, s3Endpoint: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> any BackupStore {
        if destination.hasPrefix("s3://") {
            return try S3Store(
                url: destination, endpoint: s3Endpoint, environment: AWSEnvironment.read(from: environment))
        }
        guard s3Endpoint == nil else {
            throw BackupError.invalidConfiguration("an S3 endpoint was given but '\(destination)' is not an s3:// URL")
        }
        if destination.hasPrefix("file://") {
            guard let url = URL(string: destination), url.isFileURL, url.path.hasPrefix("/") else {
                throw BackupError.invalidConfiguration("'\(destination)' is not a usable file:// URL")
            }
            return LocalDirectoryStore(directory: url)
        }
        guard destination.hasPrefix("/") else {
            throw BackupError.invalidConfiguration(
                "backup destination '\(destination)' must be an absolute path or an s3://bucket/prefix URL")
        }
        return LocalDirectoryStore(directory: URL(fileURLWithPath: destination, isDirectory: true))
    }
}
