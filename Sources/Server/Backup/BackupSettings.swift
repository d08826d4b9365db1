import Foundation

/// `--backup-dir` and its companions: where the leader writes scheduled etcd-format backups, how often, and what is
/// kept (etcd-manager's policy). Absent: no scheduled backups.
public struct BackupSettings: Sendable, Equatable {
    /// A local directory, or `s3://bucket/prefix`.
    public var destination: String
    /// `--backup-interval`; zero disables the schedule (the store can still be listed and restored from).
    public var interval: TimeInterval = 15 * 60
    /// `--backup-s3-endpoint`: an S3-protocol server other than AWS (MinIO, a test server), path-style.
    public var s3Endpoint: String?
    /// `--backup-retention-hourly`: one backup per hour is kept this long (after the last hour, which keeps all).
    public var hourlyRetention: TimeInterval = 168 * 3600
    /// `--backup-retention-daily`: then one per day this long.
    public var dailyRetention: TimeInterval = 8760 * 3600

    public init(destination: String) {
        self.destination = destination
    }
}
