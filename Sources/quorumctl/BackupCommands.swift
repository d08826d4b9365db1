import ArgumentParser
import Backup
import Foundation
import Node

/// `quorumctl backup`: the backups a cluster's leader writes on its own (`quorum --backup-dir`), in a directory or
/// in S3: list them, and restore one into a new data directory.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "List and restore the scheduled backups members write (--backup-dir).",
        subcommands: [BackupListCommand.self, BackupRestoreCommand.self])
}

/// Where the backups are: the member's own `--backup-dir` and `--backup-s3-endpoint`.
struct BackupLocationOptions: ParsableArguments {
    @Option(name: .long, help: "The backups' directory, or s3://bucket/prefix (credentials from AWS_* variables).")
    var backupDir: String
    @Option(name: .long, help: "S3-protocol endpoint for an s3:// --backup-dir other than AWS (MinIO, ...).")
    var backupS3Endpoint: String?

    func store() throws -> any BackupStore {
        do {
            return try BackupDestination.makeStore(backupDir, s3Endpoint: backupS3Endpoint)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

struct BackupListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the complete backups, newest first.")

    @OptionGroup var location: BackupLocationOptions
    @Option(name: [.customShort("w"), .long], help: "Output format: table or json.") var writeOut = "table"

    func run() async throws {
        let backups = try await location.store().list()
        switch writeOut {
        case "json":
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(backups), as: UTF8.self))
        case "table":
            let rows = backups.map { b in
                [
                    b.name, b.createdAt.formatted(.iso8601), "\(b.revision)", "\(b.raftIndex)", b.memberName,
                    ByteCount.format(b.snapshotSize),
                ]
            }
            let headers = ["NAME", "CREATED", "REVISION", "RAFT INDEX", "MEMBER", "SIZE"]
            let widths = headers.indices.map { i in ([headers[i]] + rows.map { $0[i] }).map(\.count).max()! + 2 }
            let line = "+" + widths.map { String(repeating: "-", count: $0) }.joined(separator: "+") + "+"
            func row(_ values: [String]) -> String {
                "|"
                    + zip(values, widths).map { " " + $0.padding(toLength: $1 - 1, withPad: " ", startingAt: 0) }
                    .joined(separator: "|") + "|"
            }
            print(([line, row(headers), line] + rows.map(row) + [line]).joined(separator: "\n"))
        default:
            throw ValidationError("unknown output format \(writeOut): use table or json")
        }
    }
}

struct BackupRestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a backup (by name, or latest) into a new data directory.",
        discussion: """
            The snapshot is fetched and checked against its manifest's sha256, then restored as `quorumctl snapshot \
            restore` does, with the same flags: run it once per member of the new cluster.
            """)

    @Argument(help: "The backup's name (see backup list), or latest.") var name: String
    @OptionGroup var location: BackupLocationOptions
    @Option(name: .long, help: "The directory to create (must not exist; default: NAME.quorum).") var dataDir: String?
    @Option(name: .customLong("name"), help: "This member's name.") var memberName = "default"
    @Option(name: .long, help: "The new cluster's members: name=peerURL,...")
    var initialCluster = "default=http://localhost:2380"
    @Option(name: .long, help: "The new cluster's token.") var initialClusterToken = "etcd-cluster"
    @Option(name: .long, help: "This member's peer URLs.") var initialAdvertisePeerUrls = "http://localhost:2380"

    func run() async throws {
        let store = try location.store()
        let backup: BackupName
        if name == "latest" {
            guard let newest = try await store.list().first, let parsed = BackupName(newest.name) else {
                throw ValidationError("no complete backup in \(location.backupDir)")
            }
            backup = parsed
        } else {
            guard let parsed = BackupName(name) else {
                throw ValidationError("\"\(name)\" is not a backup name (see quorumctl backup list), nor latest")
            }
            backup = parsed
        }
        let target = dataDir ?? "\(memberName).quorum"
        let parent = (target as NSString).deletingLastPathComponent
        let file = URL(
            fileURLWithPath: (parent.isEmpty ? "." : parent) + "/.backup-\(UInt32.random(in: 0...UInt32.max)).db")
        defer { try? FileManager.default.removeItem(at: file) }
        let manifest: BackupManifest
        do {
            manifest = try await store.fetch(name: backup, to: file)
        } catch {
            throw ValidationError("\(error)")
        }
        var options = SnapshotRestore.Options(snapshotPath: file.path, dataDir: target)
        options.name = memberName
        options.initialCluster = initialCluster
        options.initialClusterToken = initialClusterToken
        options.initialAdvertisePeerURLs = initialAdvertisePeerUrls.split(separator: ",").map(String.init)
        do {
            let summary = try SnapshotRestore.restore(options)
            print(
                "restored backup \(manifest.name) (revision \(manifest.revision), taken \(manifest.createdAt.formatted(.iso8601)) by "
                    + "\(manifest.memberName)) into \(target): member \(Identity.hex(summary.memberID)) of cluster "
                    + "\(Identity.hex(summary.clusterID)) with \(summary.members.count) members")
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
