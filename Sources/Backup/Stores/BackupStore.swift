import Foundation

/// Where backups live: a local directory or an S3 bucket and prefix.
///
/// Layout, the same in both: one folder (key prefix) per backup, named by `BackupName`, holding `snapshot.db` and
/// `manifest.json`. A folder per backup rather than flat `<name>.db` + `<name>.json` files because everything belonging
/// to one backup then shares one prefix — deleting or copying a backup (`aws s3 cp --recursive`, `cp -r`) is one
/// operation on one name, the file names inside are fixed, and a future extra file needs no new naming rule. It is also
/// the layout etcd-manager used (one directory per backup with the snapshot and a small metadata file).
///
/// Contract, relied on by the runner and by restore:
/// - `put` writes the snapshot first and durably, then the manifest last; the backup becomes visible atomically when
///   the manifest appears. It refuses to overwrite a complete backup.
/// - `list` returns only complete backups — manifest present, valid, naming its own folder, snapshot present with the
///   manifest's size — newest first. Everything else under a backup name is reported by `orphans`.
/// - `fetch` copies the snapshot to a local file and verifies size and SHA-256 against the manifest before the file
///   appears at its destination; a mismatch is a `BackupError.sizeMismatch` / `.checksumMismatch` naming the source.
/// - `delete` removes the manifest first (the backup disappears atomically), then the rest. Deleting a name that does
///   not exist is not an error, so retries and concurrent pruners are harmless.
/// - Entries whose names are not backup names are never read, listed or deleted: pointing a store at a shared
///   directory or bucket cannot destroy anything else.
public protocol BackupStore: Sendable {
    /// Human-readable location for logs and errors: a path or `s3://bucket/prefix`.
    var location: String { get }

    /// Stores the snapshot file under `name` with `manifest` (whose `name` must equal `name`, and whose size and digest
    /// must describe `snapshotFile`).
    func put(name: BackupName, snapshotFile: URL, manifest: BackupManifest) async throws

    /// Complete backups, newest first.
    func list() async throws -> [BackupManifest]

    /// Copies backup `name`'s snapshot to `file` (replacing it), verified against the manifest, which is returned.
    @discardableResult
    func fetch(name: BackupName, to file: URL) async throws -> BackupManifest

    /// Removes backup `name`, complete or not.
    func delete(name: BackupName) async throws

    /// Backup folders that are not complete backups: left by a crash or failure mid-`put`, or damaged.
    func orphans() async throws -> [OrphanedBackup]
}

/// A backup folder that `list` ignores, with why and when it was last written (pruning removes orphans only after a
/// grace period so that a backup still being uploaded by another member is not removed under it).
public struct OrphanedBackup: Sendable, Equatable, CustomStringConvertible {
    public var name: BackupName
    public var reason: String
    /// Newest modification time of anything in the folder; nil if unknown.
    public var lastModified: Date?

    public init(name: BackupName, reason: String, lastModified: Date?) {
        self.name = name
        self.reason = reason
        self.lastModified = lastModified
    }

    public var description: String { "\(name): \(reason)" }
}

extension BackupStore {
    /// Checks the arguments of `put` before anything is written.
    func checkPut(name: BackupName, snapshotFile: URL, manifest: BackupManifest) throws {
        try manifest.validate(location: "\(location)/\(name)/\(BackupManifest.fileName)")
        guard manifest.name == name.rawValue else {
            throw BackupError.manifestDoesNotMatch(name: name.rawValue, detail: "manifest is named \(manifest.name)")
        }
        guard let size = try FileIO.size(snapshotFile.path) else {
            throw BackupError.io(path: snapshotFile.path, operation: "stat", detail: "snapshot file does not exist")
        }
        guard size == manifest.snapshotSize else {
            throw BackupError.manifestDoesNotMatch(
                name: name.rawValue,
                detail: "snapshot \(snapshotFile.path) is \(size) bytes, manifest says \(manifest.snapshotSize)")
        }
    }
}

/// Sorts newest first: by creation time, then revision.
func newestFirst(_ a: BackupManifest, _ b: BackupManifest) -> Bool {
    if a.createdAt != b.createdAt { return a.createdAt > b.createdAt }
    if a.revision != b.revision { return a.revision > b.revision }
    return a.name > b.name
}
