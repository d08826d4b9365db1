import Foundation

/// What one prune did.
public struct PruneReport: Sendable, Equatable {
    /// Complete backups kept by the retention policy.
    public var kept: [String] = []
    /// Complete backups removed.
    public var deleted: [String] = []
    /// Orphans (interrupted or damaged backups) removed after the grace period.
    public var orphansDeleted: [String] = []
    /// Removals that failed, one line each; they are retried at the next prune.
    public var failures: [String] = []
    /// Creation time of the newest complete backup seen.
    public var newestBackup: Date?

    public init() {}
}

/// Applies a `RetentionPolicy` to a store and removes orphans older than a grace period.
public enum BackupPruner {
    /// Lists `store`, deletes the complete backups `policy` does not keep and the orphans last modified more than
    /// `orphanGracePeriod` ago (the grace period protects a backup another member is still uploading: a former leader
    /// may still be writing when the new one prunes). Individual deletion failures are collected in the report, not
    /// thrown; a failure to list is thrown, and then nothing is deleted.
    public static func prune(
        store: any BackupStore, policy: RetentionPolicy, orphanGracePeriod: TimeInterval, now: Date
    ) async throws -> PruneReport {
        let complete = try await store.list()
        let orphans = try await store.orphans()
        var report = PruneReport()
        report.newestBackup = complete.map(\.createdAt).max()
        let keep = policy.keep(complete, now: now)
        for manifest in complete {
            guard !keep.contains(manifest.name) else {
                report.kept.append(manifest.name)
                continue
            }
            guard let name = manifest.backupName else { continue }
            do {
                try Task.checkCancellation()
                try await store.delete(name: name)
                report.deleted.append(manifest.name)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                report.failures.append("delete \(manifest.name): \(error)")
            }
        }
        for orphan in orphans {
            let age = now.timeIntervalSince(orphan.lastModified ?? orphan.name.time)
            guard age > orphanGracePeriod else { continue }
            do {
                try Task.checkCancellation()
                try await store.delete(name: orphan.name)
                report.orphansDeleted.append(orphan.name.rawValue)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                report.failures.append("delete orphan \(orphan.name): \(error)")
            }
        }
        return report
    }
}
