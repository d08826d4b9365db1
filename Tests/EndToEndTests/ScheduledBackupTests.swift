import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The backups etcd-manager used to take, taken by the cluster itself (`--backup-dir`): only the leader writes them,
/// a new leader carries on, `quorumctl backup list|restore` reads them back, to a directory or S3 (moto's server).
@Suite(.serialized, .ownThread) struct ScheduledBackupTests {
    static func list(_ arguments: [String], environment: [String: String] = [:]) throws -> [[String: Any]] {
        let out = try run(
            Paths.packageRoot + "/.build/debug/quorumctl", ["backup", "list", "-w", "json"] + arguments,
            environment: environment)
        guard out.ok, let list = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String: Any]]
        else {
            throw TestFailure("backup list: \(out.stdout)\(out.stderr)")
        }
        return list
    }

    /// Restores `name` into a fresh single member, starts it, and returns it.
    static func restored(
        _ name: String, from arguments: [String], in scratch: TemporaryDirectory, environment: [String: String] = [:]
    ) throws -> QuorumProcess {
        let member = QuorumProcess(in: scratch, name: "restored-\(UUID().uuidString.prefix(4))")
        let out = try run(
            Paths.packageRoot + "/.build/debug/quorumctl",
            [
                "backup", "restore", name, "--data-dir", member.dataDir, "--name", member.name,
                "--initial-cluster", "\(member.name)=\(member.peerURL)", "--initial-advertise-peer-urls",
                member.peerURL,
            ] + arguments, environment: environment)
        guard out.ok else { throw TestFailure("backup restore \(name): \(out.stdout)\(out.stderr)") }
        try member.start()
        return member
    }

    @Test func theLeaderBacksUpAndANewLeaderCarriesOn() throws {
        let scratch = TemporaryDirectory()
        let directory = scratch.path + "/backups"
        let cluster = QuorumCluster(
            size: 3, scratch: scratch, extraArguments: ["--backup-dir", directory, "--backup-interval", "1s"])
        try cluster.start()
        let first = try cluster.waitForLeader()
        for i in 0..<20 { #expect(try etcdctl(cluster.endpoints, ["put", "before/\(i)", "\(i)"]).ok) }
        try eventually("two backups by the first leader") {
            try Self.list(["--backup-dir", directory]).filter { $0["memberName"] as? String == first.name }.count >= 2
        }
        // Only the leader writes.
        #expect(
            Set(try Self.list(["--backup-dir", directory]).compactMap { $0["memberName"] as? String }) == [first.name])

        first.stop()
        let second = try cluster.waitForLeader()
        for i in 0..<20 { #expect(try etcdctl(second.endpoint, ["put", "after/\(i)", "\(i)"]).ok) }
        let written = try SnapshotInteropTests.keySpace(second.endpoint).revision
        try eventually(timeout: 30, "the new leader backs up what it serves") {
            try Self.list(["--backup-dir", directory]).contains {
                $0["memberName"] as? String == second.name && ($0["revision"] as? Int64 ?? 0) >= written
            }
        }
        let latest = try #require(try Self.list(["--backup-dir", directory]).first)
        let revision = try #require(latest["revision"] as? Int64)
        let expected = try SnapshotInteropTests.keySpace(second.endpoint, revision: revision)
        let copy = try Self.restored("latest", from: ["--backup-dir", directory], in: scratch)
        defer { copy.stop() }
        let actual = try SnapshotInteropTests.keySpace(copy.endpoint)
        #expect(actual.revision == revision)
        #expect(actual.kvs == expected.kvs)
        let metrics = try run("/usr/bin/curl", ["-s", second.endpoint + "/metrics"]).stdout
        #expect(metrics.contains("quorum_backup_last_success_timestamp_seconds"))
    }

    /// A member killed in the middle of writing a backup never leaves something that looks complete: every backup
    /// `list` shows restores, and its sha256 matches its manifest (`fetch` checks it).
    @Test func killedDuringABackupLeavesNothingThatLooksComplete() throws {
        let scratch = TemporaryDirectory()
        let directory = scratch.path + "/backups"
        let member = QuorumProcess(
            in: scratch, extraArguments: ["--backup-dir", directory, "--backup-interval", "1s"])
        try member.start()
        // Enough data that a backup takes a while: 2,000 values of 8 KiB.
        let value = String(repeating: "x", count: 8192)
        for batch in 0..<20 {
            let script = (0..<100).map { "put big/\(batch)/\($0) \(value)" }.joined(separator: "\n")
            let txn = try etcdctl(member.endpoint, ["txn"], input: "\n" + script + "\n\n\n")
            try #require(txn.ok && txn.stdout.hasPrefix("SUCCESS"), "\(txn.stdout.prefix(200))\(txn.stderr)")
        }
        let loaded = try SnapshotInteropTests.keySpace(member.endpoint).revision
        try eventually(timeout: 30, "a backup of everything loaded") {
            try Self.list(["--backup-dir", directory]).contains { ($0["revision"] as? Int64 ?? 0) >= loaded }
        }
        // Wait for the next backup to start, then cut the process down at once.
        let offset = member.log.utf8.count
        try eventually(timeout: 30, "a backup under way") {
            String(member.log.utf8.dropFirst(offset)).map { $0.contains("backup started") } ?? false
        }
        member.stop(signal: SIGKILL)
        let backups = try Self.list(["--backup-dir", directory])
        #expect(!backups.isEmpty)
        for backup in backups.prefix(3) {
            let name = try #require(backup["name"] as? String)
            let revision = try #require(backup["revision"] as? Int64)
            let copy = try Self.restored(name, from: ["--backup-dir", directory], in: scratch)
            #expect(try SnapshotInteropTests.keySpace(copy.endpoint).revision == revision, "\(name)")
            if revision >= loaded {
                #expect(try etcdctl(copy.endpoint, ["get", "big/19/99", "--print-value-only"]).stdout.count > 8000)
            }
            copy.stop()
        }
    }

    @Test func backupsGoToS3AndComeBack() throws {
        let scratch = TemporaryDirectory()
        let moto = try MotoS3(in: scratch)
        defer { moto.stop() }
        try moto.createBucket("quorum-backups")
        let location = ["--backup-dir", "s3://quorum-backups/clusters/one", "--backup-s3-endpoint", moto.endpoint]
        let member = QuorumProcess(in: scratch, extraArguments: location + ["--backup-interval", "1s"])
        member.environment = MotoS3.credentials
        try member.start()
        for i in 0..<30 { #expect(try etcdctl(member.endpoint, ["put", "s3/\(i)", "\(i)"]).ok) }
        let revision = try SnapshotInteropTests.keySpace(member.endpoint).revision
        try eventually(timeout: 30, "a backup in S3 with everything written") {
            try Self.list(location, environment: MotoS3.credentials).contains {
                ($0["revision"] as? Int64 ?? 0) >= revision
            }
        }
        let copy = try Self.restored("latest", from: location, in: scratch, environment: MotoS3.credentials)
        defer { copy.stop() }
        #expect(try etcdctl(copy.endpoint, ["get", "s3/29", "--print-value-only"]).stdout == "29\n")
    }
}

/// moto's standalone S3-protocol server (`python3 -m moto.server`, from PyPI's `moto[server]`, which scripts/test.sh
/// installs), on a loopback port, stopped by its pid.
final class MotoS3: @unchecked Sendable {
    static let credentials = [
        "AWS_ACCESS_KEY_ID": "quorum-test", "AWS_SECRET_ACCESS_KEY": "quorum-test-secret", "AWS_REGION": "us-east-1",
    ]
    let port = freePort()
    let process: BackgroundCommand
    var endpoint: String { "http://127.0.0.1:\(port)" }

    init(in scratch: TemporaryDirectory) throws {
        process = try BackgroundCommand(
            "/usr/bin/env", ["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", "\(port)"])
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if (try? run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", endpoint]))?.stdout == "200" {
                return
            }
            if !process.process.isRunning { break }
            usleep(100_000)
        }
        throw TestFailure(
            "moto's S3 server did not start (python3 -m pip install 'moto[server]==5.2.1'):\n\(process.output)")
    }

    func createBucket(_ name: String) throws {
        let script = """
            import boto3, sys
            boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="quorum-test",
                         aws_secret_access_key="quorum-test-secret").create_bucket(Bucket=sys.argv[2])
            """
        let out = try run("/usr/bin/env", ["python3", "-c", script, endpoint, name])
        guard out.ok else { throw TestFailure("create bucket \(name): \(out.stderr)") }
    }

    func stop() { process.stop() }
}
