import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The procedures of docs/OPERATIONS.md, run as written: each test names its section. (Restoring a whole cluster from
/// a snapshot is `SnapshotInteropTests.etcdSnapshotsRestoreIntoAQuorumCluster`; recovering from a lost quorum is
/// `DisasterRecoveryTests`.)
@Suite(.serialized, .ownThread) struct OperationsProcedureTests {
    /// "Migrate a running etcd cluster to Quorum, and back": same member names, same URLs, so clients and their
    /// endpoint lists do not change; the data, revisions and leases come across unchanged both ways.
    @Test func migrateAnEtcdClusterToQuorumAndBack() async throws {
        let scratch = TemporaryDirectory()
        let names = ["n1", "n2", "n3"]
        let ports = names.map { _ in (client: freePort(), peer: freePort()) }
        let initialCluster = zip(names, ports).map { "\($0)=http://127.0.0.1:\($1.peer)" }.joined(separator: ",")

        // A running etcd 3.5 cluster with a history.
        let etcd = try RealEtcd.cluster(.v35, names: names, ports: ports, in: scratch.path + "/etcd")
        _ = try await SnapshotInteropTests.writeHistory(
            port: etcd[0].clientPort, seed: UInt64.random(in: 1...1_000_000))
        let endpoints = etcd.map(\.endpoint).joined(separator: ",")

        // 1. Snapshot it; 2. stop it; 3. restore every member; 4. start Quorum on the same URLs.
        let toQuorum = scratch.path + "/etcd.db"
        #expect(try etcdctl(etcd[0].endpoint, ["snapshot", "save", toQuorum]).ok)
        let expected = try SnapshotInteropTests.keySpace(etcd[0].endpoint)
        let leases = try SnapshotInteropTests.leases(etcd[0].endpoint)
        for m in etcd { m.stop() }
        let quorum = zip(names, ports).map { name, port in
            QuorumProcess(in: scratch, name: name, clientPort: port.client, peerPort: port.peer)
        }
        for m in quorum {
            m.initialCluster = initialCluster
            let restored = try SnapshotInteropTests.quorumctl([
                "snapshot", "restore", toQuorum, "--data-dir", m.dataDir, "--name", m.name,
                "--initial-cluster", initialCluster, "--initial-advertise-peer-urls", m.peerURL,
            ])
            #expect(restored.ok, "\(restored.stderr)")
        }
        for m in quorum { try m.start(waitReady: false) }
        for m in quorum { try m.waitUntilReady() }
        defer { for m in quorum { m.stop() } }
        #expect(try SnapshotInteropTests.keySpace(endpoints) == expected)
        #expect(try SnapshotInteropTests.leases(endpoints) == leases)
        #expect(try etcdctl(endpoints, ["put", "written/on", "quorum"]).ok)

        // And back to etcd (3.4 this time), the same way.
        let toEtcd = scratch.path + "/quorum.db"
        #expect(try etcdctl(quorum[1].endpoint, ["snapshot", "save", toEtcd]).ok)
        let onQuorum = try SnapshotInteropTests.keySpace(endpoints)
        for m in quorum { m.stop() }
        let (tool, environment) = try RealEtcd.snapshotTool(.v34)
        for (name, port) in zip(names, ports) {
            let restored = try run(
                tool,
                [
                    "snapshot", "restore", toEtcd, "--data-dir", scratch.path + "/back/\(name).etcd", "--name", name,
                    "--initial-cluster", initialCluster, "--initial-advertise-peer-urls",
                    "http://127.0.0.1:\(port.peer)",
                ], environment: environment)
            #expect(restored.ok, "\(restored.stderr)")
        }
        let back = try RealEtcd.cluster(.v34, names: names, ports: ports, in: scratch.path + "/back")
        defer { for m in back { m.stop() } }
        #expect(try SnapshotInteropTests.keySpace(endpoints) == onQuorum)
        #expect(try etcdctl(endpoints, ["get", "written/on", "--print-value-only"]).stdout == "quorum\n")
    }

    /// "Replace a failed member": its disk is gone; remove it, add it back, start it empty with
    /// `--initial-cluster-state existing`; it catches up from the others (a snapshot, if they compacted their log).
    @Test func replaceAFailedMember() throws {
        let cluster = QuorumCluster(
            size: 3, extraArguments: ["--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "10"])
        try cluster.start()
        for i in 0..<300 { #expect(try etcdctl(cluster.endpoints, ["put", "before/\(i)", "\(i)"]).ok) }
        let leader = try cluster.waitForLeader()
        let failed = try #require(cluster.members.first { $0 !== leader })
        failed.stop(signal: SIGKILL)
        try FileManager.default.removeItem(atPath: failed.dataDir)
        let list = try etcdctl(leader.endpoint, ["member", "list"]).stdout
        let line = try #require(list.split(separator: "\n").first { $0.contains(failed.peerURL) })
        let id = String(line.split(separator: ",")[0])
        #expect(try etcdctl(leader.endpoint, ["member", "remove", id]).ok)
        let added = try etcdctl(leader.endpoint, ["member", "add", failed.name, "--peer-urls=\(failed.peerURL)"])
        #expect(added.stdout.contains("added to cluster"), "\(added.stdout)\(added.stderr)")
        failed.clusterState = "existing"
        try failed.start()
        for i in 0..<50 { #expect(try etcdctl(cluster.endpoints, ["put", "after/\(i)", "\(i)"]).ok) }
        let reference = try SnapshotInteropTests.keySpace(leader.endpoint)
        try eventually("the replacement caught up") {
            try SnapshotInteropTests.keySpace(failed.endpoint, serializable: true) == reference
        }
        let hashes = try etcdctl(cluster.endpoints, ["endpoint", "hashkv", "--rev=\(reference.revision)"]).stdout
        #expect(Set(hashes.split(separator: "\n").compactMap { $0.split(separator: ",").last }).count == 1, "\(hashes)")
    }
}
