import Foundation
import TestSupport
import Testing

/// `unix://` peer and client URLs (etcd's `unix://host:port` form: the socket file `host:port` in the working
/// directory), listened on and dialled by real processes.
@Suite(.ownThread) struct UnixSocketTests {
    @Test func membersReplicateOverUnixSockets() throws {
        let scratch = TemporaryDirectory()
        let names = ["m1", "m2"]
        let cluster = names.map { "\($0)=unix://\($0).peer:1" }.joined(separator: ",")
        let members = names.map { name in
            let member = QuorumProcess(in: scratch, name: name)
            member.workingDirectory = scratch.path
            member.peerURLOverride = "unix://\(name).peer:1"
            member.initialCluster = cluster
            return member
        }
        for member in members { try member.start(waitReady: false) }
        defer { for member in members { member.stop() } }
        for member in members { try member.waitUntilReady() }
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/m1.peer:1"))
        #expect(try etcdctl(members[0].endpoint, ["put", "over", "unix"]).ok)
        #expect(try etcdctl(members[1].endpoint, ["get", "over", "--print-value-only"]).stdout == "unix\n")
        let list = try etcdctl(members[1].endpoint, ["member", "list"]).stdout
        #expect(list.contains("m1, unix://m1.peer:1") && list.contains("m2, unix://m2.peer:1"), "\(list)")
        // A member joins over them (it asks a peer for the cluster, then replicates); a file left at its socket's
        // path by an earlier run is replaced, as etcd replaces it.
        #expect(FileManager.default.createFile(atPath: scratch.path + "/m3.peer:1", contents: Data("stale".utf8)))
        let add = try etcdctl(members[0].endpoint, ["member", "add", "m3", "--peer-urls=unix://m3.peer:1"])
        #expect(add.ok, "\(add)")
        let joining = QuorumProcess(in: scratch, name: "m3")
        joining.workingDirectory = scratch.path
        joining.peerURLOverride = "unix://m3.peer:1"
        joining.initialCluster = cluster + ",m3=unix://m3.peer:1"
        joining.clusterState = "existing"
        try joining.start()
        defer { joining.stop() }
        #expect(try etcdctl(joining.endpoint, ["get", "over", "--print-value-only"]).stdout == "unix\n")
    }
}
