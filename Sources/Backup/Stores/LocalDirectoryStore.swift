import Crypto
import Foundation

/// Backups in a local directory: `<directory>/<name>/snapshot.db` and `<directory>/<name>/manifest.json`.
///
/// Durability order in `put`: create the folder and fsync the parent; copy the snapshot (hashing as it goes), fsync it
/// and the folder; then write the manifest to a temporary file, fsync, rename it into place and fsync the folder. A crash
/// before the rename leaves a folder without a manifest (an orphan); after it, a complete backup. The copy is verified
/// against the manifest's digest before the manifest is written, so a snapshot that changed after it was hashed is
/// refused rather than stored under a wrong checksum.
///
/// The directory is typically a mounted volume (NFS, a second disk). File I/O here is blocking; it runs on the calling
/// task, which is fine for a background job that handles one backup at a time.
public struct LocalDirectoryStore: BackupStore {
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory.standardizedFileURL
    }

    public var location: String { directory.path }

    func folder(_ name: BackupName) -> String { directory.path + "/" + name.rawValue }
    func manifestPath(_ name: BackupName) -> String { folder(name) + "/" + BackupManifest.fileName }
    func snapshotPath(_ name: BackupName) -> String { folder(name) + "/" + BackupManifest.snapshotFileName }

    public func put(name: BackupName, snapshotFile: URL, manifest: BackupManifest) async throws {
        try checkPut(name: name, snapshotFile: snapshotFile, manifest: manifest)
        try FileIO.makeDirectories(directory.path)
        let folder = folder(name)
        if FileIO.exists(manifestPath(name)) {
            throw BackupError.alreadyExists(name: name.rawValue, location: location)
        }
        try FileIO.makeDirectory(folder)
        try FileIO.syncDirectory(directory.path)

        let destination = snapshotPath(name)
        let digest: FileDigest
        do {
            digest = try Self.copy(from: snapshotFile.path, to: destination)
        } catch {
            try? FileIO.removeFile(destination)
            throw error
        }
        guard digest.size == manifest.snapshotSize, digest.sha256 == manifest.snapshotSHA256 else {
            try? FileIO.removeFile(destination)
            throw digest.size != manifest.snapshotSize
                ? BackupError.sizeMismatch(
                    location: snapshotFile.path, expected: manifest.snapshotSize, actual: digest.size)
                : BackupError.checksumMismatch(
                    location: snapshotFile.path, expected: manifest.snapshotSHA256, actual: digest.sha256)
        }
        try FileIO.syncDirectory(folder)
        try Task.checkCancellation()
        try FileIO.writeAtomically(manifest.encoded(), to: manifestPath(name))
    }

    public func list() async throws -> [BackupManifest] {
        try scan().complete
    }

    public func orphans() async throws -> [OrphanedBackup] {
        try scan().orphans
    }

    @discardableResult
    public func fetch(name: BackupName, to file: URL) async throws -> BackupManifest {
        let manifestPath = manifestPath(name)
        guard FileIO.exists(manifestPath) else { throw BackupError.notFound(name: name.rawValue, location: location) }
        let manifest = try BackupManifest.decode(
            FileIO.readSmallFile(manifestPath, limit: BackupManifest.maximumSize), location: manifestPath)
        guard manifest.name == name.rawValue else {
            throw BackupError.invalidManifest(location: manifestPath, detail: "it names backup \(manifest.name)")
        }
        let source = snapshotPath(name)
        guard let size = try FileIO.size(source) else {
            throw BackupError.io(path: source, operation: "open", detail: "snapshot file is missing")
        }
        guard size == manifest.snapshotSize else {
            throw BackupError.sizeMismatch(location: source, expected: manifest.snapshotSize, actual: size)
        }
        let temporary = file.path + ".partial"
        let digest: FileDigest
        do {
            digest = try Self.copy(from: source, to: temporary)
        } catch {
            try? FileIO.removeFile(temporary)
            throw error
        }
        guard digest.size == manifest.snapshotSize else {
            try? FileIO.removeFile(temporary)
            throw BackupError.sizeMismatch(location: source, expected: manifest.snapshotSize, actual: digest.size)
        }
        guard digest.sha256 == manifest.snapshotSHA256 else {
            try? FileIO.removeFile(temporary)
            throw BackupError.checksumMismatch(
                location: source, expected: manifest.snapshotSHA256, actual: digest.sha256)
        }
        try FileIO.rename(temporary, file.path)
        try FileIO.syncDirectory(file.deletingLastPathComponent().path)
        return manifest
    }

    public func delete(name: BackupName) async throws {
        let folder = folder(name)
        guard FileIO.isDirectory(folder) else { return }
        // The manifest goes first and durably: from here on the backup is not listed, whatever happens next.
        try FileIO.removeFile(manifestPath(name))
        try FileIO.syncDirectory(folder)
        for entry in try FileIO.entries(folder) ?? [] {
            let path = folder + "/" + entry
            if FileIO.isDirectory(path) {
                try FileIO.removeDirectory(path)
            } else {
                try FileIO.removeFile(path)
            }
        }
        try FileIO.removeDirectory(folder)
        try FileIO.syncDirectory(directory.path)
    }

    /// Classifies every backup-named folder as complete or orphaned.
    func scan() throws -> (complete: [BackupManifest], orphans: [OrphanedBackup]) {
        guard let entries = try FileIO.entries(directory.path) else { return ([], []) }
        var complete: [BackupManifest] = []
        var orphans: [OrphanedBackup] = []
        for entry in entries {
            guard let name = BackupName(entry), FileIO.isDirectory(folder(name)) else { continue }
            func orphan(_ reason: String) {
                orphans.append(OrphanedBackup(name: name, reason: reason, lastModified: lastModified(name)))
            }
            let manifestPath = manifestPath(name)
            guard FileIO.exists(manifestPath) else {
                orphan(
                    FileIO.exists(snapshotPath(name))
                        ? "snapshot without manifest (interrupted backup)" : "no manifest and no snapshot")
                continue
            }
            let manifest: BackupManifest
            do {
                manifest = try BackupManifest.decode(
                    FileIO.readSmallFile(manifestPath, limit: BackupManifest.maximumSize), location: manifestPath)
            } catch {
                orphan("\(error)")
                continue
            }
            guard manifest.name == name.rawValue else {
                orphan("manifest names backup \(manifest.name)")
                continue
            }
            guard let size = try FileIO.size(snapshotPath(name)) else {
                orphan("manifest without snapshot")
                continue
            }
            guard size == manifest.snapshotSize else {
                orphan("snapshot is \(size) bytes, manifest says \(manifest.snapshotSize)")
                continue
            }
            complete.append(manifest)
        }
        return (complete.sorted(by: newestFirst), orphans.sorted { $0.name > $1.name })
    }

    func lastModified(_ name: BackupName) -> Date? {
        let folder = folder(name)
        var newest = FileIO.modificationTime(folder)
        for entry in (try? FileIO.entries(folder)) ?? [] {
            if let t = FileIO.modificationTime(folder + "/" + entry), t > (newest ?? .distantPast) { newest = t }
        }
        return newest
    }

    /// Streams `source` to a new file at `destination`, hashing on the way, then fsyncs and closes it. Checks for task
    /// cancellation between chunks.
    static func copy(from source: String, to destination: String) throws -> FileDigest {
        let reader = try FileReader(path: source)
        let writer = try FileWriter(path: destination)
        var hasher = SHA256()
        var size: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: FileIO.chunkSize)
        while true {
            try Task.checkCancellation()
            let n = try reader.read(into: &buffer)
            if n == 0 { break }
            try buffer.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                hasher.update(bufferPointer: chunk)
                try writer.write(chunk)
            }
            size += Int64(n)
        }
        try writer.sync()
        try writer.close()
        return FileDigest(size: size, sha256: hasher.finalize().hexString)
    }
}
