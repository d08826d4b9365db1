import Foundation
import TestSupport
import Testing

/// A member started on the data directory etcd's own `etcdctl snapshot restore` (3.4) wrote: converted once, then
/// served (etcd's TestIssue6361 restores this way, restarts the member on it and adds a member).
@Suite(.ownThread) struct EtcdDataDirTests {
    /// etcdctl's commands that reach no server (`snapshot restore`).
    static func etcdctlOffline(_ arguments: [String]) throws -> CommandResult {
        try run(Paths.tool("etcdctl") ?? "/usr/bin/etcdctl", arguments, environment: ["ETCDCTL_API": "3"])
    }

    @Test func aMemberStartsOnADataDirectoryEtcdctlRestored() throws {
        let scratch = TemporaryDirectory()
        let source = QuorumProcess(in: scratch, name: "src")
        try source.start()
        for i in 0..<3 { #expect(try etcdctl(source.endpoint, ["put", "foo\(i)", "val\(i)"]).ok) }
        let snapshot = scratch.path + "/snap.db"
        #expect(try etcdctl(source.endpoint, ["snapshot", "save", snapshot]).ok)
        source.stop()

        let member = QuorumProcess(in: scratch, extraArguments: ["--initial-cluster-token", "tok"])
        let restore = try Self.etcdctlOffline([
            "snapshot", "restore", snapshot, "--name", "m1", "--initial-cluster", "m1=\(member.peerURL)",
            "--initial-cluster-token", "tok", "--initial-advertise-peer-urls", member.peerURL, "--data-dir",
            member.dataDir,
        ])
        #expect(restore.ok && (restore.stdout + restore.stderr).contains("added member"), "\(restore)")
        try member.start()
        defer { member.stop() }
        #expect(member.log.contains("converted etcd's data directory"))
        for i in 0..<3 {
            #expect(try etcdctl(member.endpoint, ["get", "foo\(i)", "--print-value-only"]).stdout == "val\(i)\n")
        }
        let kept = try FileManager.default.contentsOfDirectory(atPath: member.dataDir).filter {
            $0.hasPrefix("etcd-member.")
        }
        #expect(kept.count == 1)
        // The same member id and cluster id etcd would have: a member joins it as it would join etcd's.
        let joining = QuorumProcess(in: scratch, name: "m2", extraArguments: ["--initial-cluster-token", "tok"])
        let add = try etcdctl(member.endpoint, ["member", "add", "m2", "--peer-urls=\(joining.peerURL)"])
        #expect(add.ok && add.stdout.contains(" added to cluster "), "\(add)")
        joining.initialCluster = "m1=\(member.peerURL),m2=\(joining.peerURL)"
        joining.clusterState = "existing"
        try joining.start()
        defer { joining.stop() }
        #expect(try etcdctl(joining.endpoint, ["get", "foo2", "--print-value-only"]).stdout == "val2\n")

        // Restarting on the converted directory converts nothing again.
        member.stop()
        // The converted database was created to return free pages in steps (auto_vacuum INCREMENTAL: 2).
        let mode = try run(
            "/usr/bin/env",
            [
                "python3", "-c",
                "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA auto_vacuum').fetchone()[0])",
                member.dataDir + "/member/snap/db",
            ])
        #expect(mode.stdout == "2\n", "\(mode)")
        try member.start()
        #expect(member.log.components(separatedBy: "converted etcd's data directory").count == 2)
        #expect(try etcdctl(member.endpoint, ["get", "foo0", "--print-value-only"]).stdout == "val0\n")
    }

    /// etcd's backend records its cluster's members: a member whose flags name another membership is refused, and
    /// etcd's files are left as they were.
    @Test func anotherMembershipIsRefused() throws {
        let scratch = TemporaryDirectory()
        let source = QuorumProcess(in: scratch, name: "src")
        try source.start()
        let snapshot = scratch.path + "/snap.db"
        #expect(try etcdctl(source.endpoint, ["snapshot", "save", snapshot]).ok)
        source.stop()
        let member = QuorumProcess(in: scratch)
        let other = "http://127.0.0.1:\(freePort())"
        let restore = try Self.etcdctlOffline([
            "snapshot", "restore", snapshot, "--name", "m1", "--initial-cluster",
            "m1=\(member.peerURL),m2=\(other)", "--initial-advertise-peer-urls", member.peerURL, "--data-dir",
            member.dataDir,
        ])
        #expect(restore.ok, "\(restore)")
        #expect(throws: TestFailure.self) { try member.start(timeout: 20) }
        #expect(member.log.contains("holds an etcd member whose cluster has members ["), "\(member.logTail())")
        #expect(FileManager.default.fileExists(atPath: member.dataDir + "/member/snap/db"))
        #expect(!FileManager.default.fileExists(atPath: member.dataDir + "/.quorum-import"))
    }

    /// A directory a real etcd member ran on holds state in its log too: refused, with the way to migrate.
    @Test func aDataDirectoryEtcdRanOnIsRefused() throws {
        let scratch = TemporaryDirectory()
        let etcd = RealEtcd.Member(.v34, name: "m1", dataDir: scratch.path + "/m1.quorum")
        try etcd.start()
        #expect(try etcdctl(etcd.endpoint, ["put", "k", "v"]).ok)
        etcd.stop()
        let member = QuorumProcess(in: scratch, peerPort: etcd.peerPort)
        #expect(throws: TestFailure.self) { try member.start(timeout: 20) }
        #expect(member.log.contains("migrate it with a snapshot"), "\(member.logTail())")
        #expect(FileManager.default.fileExists(atPath: member.dataDir + "/member/snap/db"))
    }
}
