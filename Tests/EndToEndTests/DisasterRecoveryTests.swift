import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Recovering a cluster that lost its quorum for good, etcd's way (`--force-new-cluster`, then `member add`), with
/// Quorum's stronger promise: every write the survivor had is kept, and the members added afterwards hold exactly
/// what it holds.
@Suite(.serialized, .ownThread) struct DisasterRecoveryTests {
    @Test func aSurvivorForcedIntoANewClusterKeepsEveryWriteAndGrowsAgain() async throws {
        let cluster = QuorumCluster(size: 3)
        try cluster.start()
        let leader = try cluster.waitForLeader()
        let survivor = try #require(cluster.members.first { $0 !== leader })
        let port = leader.clientPort
        // Only acknowledged writes count: a put that failed (the suite's machine can be very busy) may or may not be in.
        let acknowledged = try await EtcdClient.with(port: port) { client in
            var keys: [String] = []
            for i in 0..<300 where (try? await client.put("acked/\(i)", "v\(i)")) != nil { keys.append("acked/\(i)") }
            return keys
        }
        #expect(acknowledged.count > 250, "too few writes succeeded to mean anything: \(acknowledged.count)")
        let last = try #require(acknowledged.last)
        // The survivor has applied the last acknowledged write: a linearizable read through it returns it.
        #expect(
            try etcdctl(survivor.endpoint, ["get", last, "--print-value-only"]).stdout == "v\(last.dropFirst(6))\n")

        // Everything is lost but the survivor's disk.
        for m in cluster.members { m.stop(signal: SIGKILL) }
        for m in cluster.members where m !== survivor { try FileManager.default.removeItem(atPath: m.dataDir) }
        survivor.extraArguments.append("--force-new-cluster")
        try survivor.start()
        #expect(survivor.log.contains("forcing a new one-member cluster"))
        let stored = try etcdctl(survivor.endpoint, ["get", "acked/", "--prefix", "--keys-only"]).stdout
        let keys = Set(stored.split(separator: "\n").map(String.init))
        #expect(keys.isSuperset(of: acknowledged), "lost: \(Set(acknowledged).subtracting(keys).sorted().prefix(10))")
        let members = try etcdctl(survivor.endpoint, ["member", "list"]).stdout
        #expect(members.split(separator: "\n").count == 1, "\(members)")
        #expect(try etcdctl(survivor.endpoint, ["put", "after/force", "1"]).ok)
        survivor.extraArguments.removeAll { $0 == "--force-new-cluster" }

        // Grow back to three, one member at a time, as etcd's documentation does.
        var grown = [survivor]
        for name in ["m4", "m5"] {
            let newcomer = QuorumProcess(in: cluster.scratch, name: name)
            let added = try etcdctl(survivor.endpoint, ["member", "add", name, "--peer-urls=\(newcomer.peerURL)"])
            #expect(added.stdout.contains("added to cluster"), "\(added.stdout)\(added.stderr)")
            newcomer.initialCluster = (grown + [newcomer]).map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
            newcomer.clusterState = "existing"
            try newcomer.start()
            grown.append(newcomer)
            cluster.members.append(newcomer)
        }
        let endpoints = grown.map(\.endpoint).joined(separator: ",")
        #expect(try etcdctl(endpoints, ["put", "after/grow", "2"]).ok)
        let reference = try SnapshotInteropTests.keySpace(survivor.endpoint)
        for m in grown {
            try eventually("\(m.name) caught up") {
                try SnapshotInteropTests.keySpace(m.endpoint, serializable: true) == reference
            }
        }
        let hashes = try etcdctl(endpoints, ["endpoint", "hashkv", "--rev=\(reference.revision)"]).stdout
        let values = Set(hashes.split(separator: "\n").compactMap { $0.split(separator: ",").last })
        #expect(values.count == 1, "\(hashes)")
        let list = try etcdctl(endpoints, ["member", "list"]).stdout
        #expect(list.split(separator: "\n").count == 3 && !list.contains("unstarted"), "\(list)")
    }
}
