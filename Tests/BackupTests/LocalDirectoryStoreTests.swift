import Foundation
import TestSupport
import Testing

@testable import Backup

@Suite struct LocalDirectoryStoreTests {
    /// Puts a backup of `size` random bytes named for `time`; returns its name and manifest.
    @discardableResult
    static func putBackup(
        _ store: any BackupStore, scratch: TemporaryDirectory, time: Date, revision: Int64, size: Int = 1000,
        seed: UInt64 = 1
    ) async throws -> (BackupName, BackupManifest) {
        let file = scratch.fileURL("source-\(revision)-\(Int(time.timeIntervalSince1970)).db")
        try writeRandomFile(file, size: size, seed: seed &+ UInt64(revision))
        let name = BackupName(time: time, revision: revision)
        let manifest = try makeManifest(name: name, file: file)
        try await store.put(name: name, snapshotFile: file, manifest: manifest)
        try FileManager.default.removeItem(at: file)
        return (name, manifest)
    }

    static func entries(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    static func message(_ body: () async throws -> Void) async -> String {
        do {
            try await body()
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func roundTripOfAMultiMebibyteSnapshot() async throws {
        let dir = TemporaryDirectory()
        let scratch = TemporaryDirectory()
        let store = LocalDirectoryStore(directory: dir.fileURL("backups"))
        let seed = testSeed("local roundTrip")
        let source = scratch.fileURL("snapshot.db")
        let digest = try writeRandomFile(source, size: 5 << 20 + 4321, seed: seed)
        let name = BackupName(time: referenceTime, revision: 42)
        let manifest = try makeManifest(name: name, file: source)
        try await store.put(name: name, snapshotFile: source, manifest: manifest)

        #expect(Self.entries(dir.fileURL("backups").path) == [name.rawValue])
        #expect(Self.entries(dir.fileURL("backups/\(name)").path) == ["manifest.json", "snapshot.db"])
        #expect(try await store.list() == [manifest])
        #expect(try await store.orphans().isEmpty)

        let restored = scratch.fileURL("restored.db")
        try Data("old content".utf8).write(to: restored)
        let fetched = try await store.fetch(name: name, to: restored)
        #expect(fetched == manifest)
        #expect(try FileDigest.compute(file: restored) == digest)
        #expect(Self.entries(scratch.path) == ["restored.db", "snapshot.db"], "no .partial left behind")

        try await store.delete(name: name)
        #expect(try await store.list().isEmpty)
        #expect(Self.entries(dir.fileURL("backups").path).isEmpty)
        try await store.delete(name: name)  // idempotent
    }

    @Test func listsNewestFirstAndIgnoresForeignEntries() async throws {
        let dir = TemporaryDirectory()
        let scratch = TemporaryDirectory()
        let store = LocalDirectoryStore(directory: dir.url)
        for hour in [3, 1, 2] {
            try await Self.putBackup(
                store, scratch: scratch, time: referenceTime.addingTimeInterval(Double(hour) * 3600),
                revision: Int64(hour))
        }
        try FileManager.default.createDirectory(at: dir.fileURL("lost+found"), withIntermediateDirectories: false)
        try Data("x".utf8).write(to: dir.fileURL("notes.txt"))
        try Data("x".utf8).write(to: dir.fileURL("2026-12-06T09-00-00Z-9"))  // a file, not a folder
        try FileManager.default.createDirectory(
            at: dir.fileURL("2026-12-06T09-00-00Z-009"), withIntermediateDirectories: false)
        #expect(try await store.list().map(\.revision) == [3, 2, 1])
        #expect(try await store.orphans().isEmpty)
        // Pruning never touches what is not a backup.
        let report = try await BackupPruner.prune(
            store: store, policy: RetentionPolicy(keepAllFor: 0, hourlyFor: 0, dailyFor: 0), orphanGracePeriod: 0,
            now: referenceTime.addingTimeInterval(10 * 86_400))
        #expect(report.deleted.count == 2)
        let foreign = ["2026-12-06T09-00-00Z-009", "2026-12-06T09-00-00Z-9", "lost+found", "notes.txt"]
        #expect(Set(foreign).isSubset(of: Self.entries(dir.path)))
        #expect(Self.entries(dir.path).count == foreign.count + 1)
    }

    /// A crash after the snapshot was written but before the manifest: not listed, reported as an orphan, removed by
    /// pruning only after the grace period.
    @Test func snapshotWithoutManifestIsAnOrphan() async throws {
        let dir = TemporaryDirectory()
        let scratch = TemporaryDirectory()
        let store = LocalDirectoryStore(directory: dir.url)
        let (complete, _) = try await Self.putBackup(store, scratch: scratch, time: referenceTime, revision: 1)
        let crashed = BackupName(time: referenceTime.addingTimeInterval(900), revision: 2)
        try FileManager.default.createDirectory(at: dir.fileURL(crashed.rawValue), withIntermediateDirectories: false)
        try writeRandomFile(dir.fileURL("\(crashed)/snapshot.db"), size: 2048, seed: 2)
        // A crash during the manifest's own write leaves its temporary file, which is no manifest either.
        try Data("{\"form".utf8).write(to: dir.fileURL("\(crashed)/manifest.json.tmp"))

        #expect(try await store.list().map(\.name) == [complete.rawValue])
        let orphans = try await store.orphans()
        #expect(orphans.map(\.name) == [crashed])
        #expect(orphans.first?.reason == "snapshot without manifest (interrupted backup)")
        let modified = try #require(orphans.first?.lastModified)
        #expect(abs(modified.timeIntervalSinceNow) < 600)

        let policy = RetentionPolicy()
        let young = try await BackupPruner.prune(
            store: store, policy: policy, orphanGracePeriod: 3600, now: modified.addingTimeInterval(3599))
        #expect(young.orphansDeleted.isEmpty)
        #expect(try await store.orphans().count == 1)
        let old = try await BackupPruner.prune(
            store: store, policy: policy, orphanGracePeriod: 3600, now: modified.addingTimeInterval(3601))
        #expect(old.orphansDeleted == [crashed.rawValue])
        #expect(try await store.orphans().isEmpty)
        #expect(Self.entries(dir.path) == [complete.rawValue])
    }

    @Test func aWrongChecksumInTheManifestFailsFetchClearly() async throws {
        let dir = TemporaryDirectory()
        let scratch = TemporaryDirectory()
        let store = LocalDirectoryStore(directory: dir.url)
        let (name, manifest) = try await Self.putBackup(store, scratch: scratch, time: referenceTime, revision: 5)
        var tampered = manifest
        tampered.snapshotSHA256 = String(repeating: "ab", count: 32)
        try Data(tampered.encoded()).write(to: dir.fileURL("\(name)/manifest.json"))

        // Listing cannot see content damage without reading every snapshot; fetch must.
        #expect(try await store.list() == [tampered])
        let destination = scratch.fileURL("restore.db")
        let error = await Self.message { try await store.fetch(name: name, to: destination) }
        #expect(
            error
                == "snapshot \(dir.path)/\(name)/snapshot.db has sha256 \(manifest.snapshotSHA256) "
                + "but its manifest says \(tampered.snapshotSHA256) (corrupt or replaced)")
        #expect(!FileManager.default.fileExists(atPath: destination.path))
        #expect(!FileManager.default.fileExists(atPath: destination.path + ".partial"))
    }

    @Test func aTruncatedSnapshotIsNotListedAndFetchSaysSo() async throws {
        let dir = TemporaryDirectory()
        let scratch = TemporaryDirectory()
        let store = LocalDirectoryStore(directory: dir.url)
        let (name, manifest) = try await Self.putBackup(
            store, scratch: scratch, time: referenceTime, revision: 6, size: 100_000)
        let handle = try FileHandle(forWritingTo: dir.fileURL("\(name)/snapshot.db"))
        try handle.truncate(atOffset: 65_536)
        try handle.close()

        #expect(try await store.list().isEmpty)
        #expect(try await store.orphans().map(\.reason) == ["snapshot is 65536 bytes, manifest says 100000"])
        let error = await Self.message { try await store.fetch(name: name, to: scratch.fileURL("r.db")) }
        #expect(
            error
                == "snapshot \(dir.path)/\(name)/snapshot.db is 65536 bytes "
                + "but its manifest says \(manifest.snapshotSize) (truncated or replaced)")
    }

    @Test func damagedManifestsAreOrphansWithTheReason() async throws {
        let dir = TemporaryDirectory()
        let scratch = TemporaryDirectory()
        let store = LocalDirectoryStore(directory: dir.url)
        let (a, _) = try await Self.putBackup(store, scratch: scratch, time: referenceTime, revision: 1)
        let (b, manifestB) = try await Self.putBackup(
            store, scratch: scratch, time: referenceTime.addingTimeInterval(60), revision: 2)
        let (c, _) = try await Self.putBackup(
            store, scratch: scratch, time: referenceTime.addingTimeInterval(120), revision: 3)
        try Data("{ not json".utf8).write(to: dir.fileURL("\(a)/manifest.json"))
        try FileManager.default.removeItem(at: dir.fileURL("\(b)/snapshot.db"))
        // c's folder gets b's manifest (a copy gone wrong).
        try Data(manifestB.encoded()).write(to: dir.fileURL("\(c)/manifest.json"))

        #expect(try await store.list().isEmpty)
        let reasons = try await store.orphans().map { "\($0.name.revision): \($0.reason)" }
        #expect(reasons.count == 3)
        #expect(reasons[0] == "3: manifest names backup \(b)")
        #expect(reasons[1] == "2: manifest without snapshot")
        #expect(reasons[2].hasPrefix("1: invalid backup manifest \(dir.path)/\(a)/manifest.json: not JSON"))
        let error = await Self.message { try await store.fetch(name: a, to: scratch.fileURL("r.db")) }
        #expect(error.hasPrefix("invalid backup manifest \(dir.path)/\(a)/manifest.json: not JSON"))
        let missing = BackupName(time: referenceTime, revision: 99)
        #expect(
            await Self.message { try await store.fetch(name: missing, to: scratch.fileURL("r.db")) }
                == "no complete backup named \(missing) in \(dir.path)")
    }

    @Test func putRefusesWhatWouldBeWrong() async throws {
        let dir = TemporaryDirectory()
        let scratch = TemporaryDirectory()
        let store = LocalDirectoryStore(directory: dir.url)
        let (name, _) = try await Self.putBackup(store, scratch: scratch, time: referenceTime, revision: 1)
        let source = scratch.fileURL("s.db")
        try writeRandomFile(source, size: 5000, seed: 9)

        // The same name again.
        let again = try makeManifest(name: name, file: source)
        #expect(
            await Self.message { try await store.put(name: name, snapshotFile: source, manifest: again) }
                == "backup \(name) already exists in \(dir.path); backups are never overwritten")
        // A manifest for another name.
        let other = BackupName(time: referenceTime.addingTimeInterval(60), revision: 2)
        #expect(
            await Self.message { try await store.put(name: other, snapshotFile: source, manifest: again) }
                == "manifest for backup \(other) does not match: manifest is named \(name)")
        // A snapshot that changed after it was hashed: same size, other bytes.
        let manifest = try makeManifest(name: other, file: source)
        try writeRandomFile(source, size: 5000, seed: 10)
        let changed = await Self.message { try await store.put(name: other, snapshotFile: source, manifest: manifest) }
        #expect(changed.hasPrefix("snapshot \(source.path) has sha256 "))
        #expect(try await store.list().map(\.name) == [name.rawValue])
        #expect(!FileManager.default.fileExists(atPath: dir.fileURL("\(other)/manifest.json").path))
        // A snapshot of another size than the manifest says.
        try writeRandomFile(source, size: 4000, seed: 10)
        #expect(
            await Self.message { try await store.put(name: other, snapshotFile: source, manifest: manifest) }
                == "manifest for backup \(other) does not match: snapshot \(source.path) is 4000 bytes, manifest says 5000"
        )
        // A missing snapshot file.
        #expect(
            await Self.message {
                try await store.put(name: other, snapshotFile: scratch.fileURL("nope"), manifest: manifest)
            } == "stat \(scratch.fileURL("nope").path): snapshot file does not exist")
    }

    @Test func aCancelledPutLeavesNoVisibleBackup() async throws {
        let dir = TemporaryDirectory()
        let scratch = TemporaryDirectory()
        let store = LocalDirectoryStore(directory: dir.url)
        let source = scratch.fileURL("s.db")
        try writeRandomFile(source, size: 3 << 20, seed: 3)
        let name = BackupName(time: referenceTime, revision: 3)
        let manifest = try makeManifest(name: name, file: source)
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await store.put(name: name, snapshotFile: source, manifest: manifest)
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(try await store.list().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: dir.fileURL("\(name)/manifest.json").path))
    }

    /// Pruning a store of irregular backups leaves exactly what the policy keeps, and reports the newest.
    @Test func pruneAppliesThePolicy() async throws {
        let dir = TemporaryDirectory()
        let scratch = TemporaryDirectory()
        let store = LocalDirectoryStore(directory: dir.url)
        let seed = testSeed("pruneAppliesThePolicy")
        var generator = SeededRandom(seed: seed)
        var manifests: [BackupManifest] = []
        for i in 0..<40 {
            let age = Double(Int.random(in: 0..<(20 * 86_400), using: &generator))
            let (_, m) = try await Self.putBackup(
                store, scratch: scratch, time: referenceTime.addingTimeInterval(-age), revision: Int64(i), size: 64)
            manifests.append(m)
        }
        let policy = RetentionPolicy(keepAllFor: 3600, hourlyFor: 2 * 86_400, dailyFor: 10 * 86_400)
        let expected = policy.keep(manifests, now: referenceTime)
        let report = try await BackupPruner.prune(
            store: store, policy: policy, orphanGracePeriod: 3600, now: referenceTime)
        #expect(Set(report.kept) == expected)
        #expect(Set(report.deleted) == Set(manifests.map(\.name)).subtracting(expected))
        #expect(report.failures.isEmpty)
        #expect(report.newestBackup == manifests.map(\.createdAt).max())
        #expect(Set(try await store.list().map(\.name)) == expected)
    }

    @Test func destinations() throws {
        #expect(try BackupDestination.makeStore("/var/backups/quorum").location == "/var/backups/quorum")
        #expect(try BackupDestination.makeStore("file:///var/backups/q").location == "/var/backups/q")
        let s3 = try BackupDestination.makeStore(
            "s3://my-bucket/clusters/prod/", s3Endpoint: "http://127.0.0.1:9000",
            environment: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"])
        #expect(s3.location == "s3://my-bucket/clusters/prod")
        #expect(throws: BackupError.self) { try BackupDestination.makeStore("backups") }
        #expect(throws: BackupError.self) { try BackupDestination.makeStore("/x", s3Endpoint: "http://h") }
        #expect(throws: BackupError.self) { try BackupDestination.makeStore("s3://b/p", environment: [:]) }
        #expect(throws: BackupError.self) {
            try BackupDestination.makeStore(
                "s3://Bad_Bucket", environment: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"])
        }
    }
}
