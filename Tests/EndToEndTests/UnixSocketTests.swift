import Foundation
import Testing

/// `unix://` peer and client URLs (etcd's `unix://host:port` form: the socket file `host:port` in the working
/// directory), listened on and dialled by real processes.
@Suite struct UnixSocketTests {
    @Test func membersReplicateOverUnixSockets() throws {
        let scratch = Scratch()
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
        // The socket file stays after a stop; a restart replaces it, as etcd does.
        members[0].stop()
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/m1.peer:1"))
        try members[0].start()
        #expect(try etcdctl(members[1].endpoint, ["put", "again", "1"]).ok)
        #expect(try etcdctl(members[0].endpoint, ["get", "again", "--print-value-only"]).stdout == "1\n")
    }
}
