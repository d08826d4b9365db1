import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What kube-apiserver's storage layer does, done with etcd's own Go client (clientv3 3.4 from Debian's
/// golang-etcd-server-dev): `Tests/Interop/kubestorage/main.go`, built once per source version. Run against a
/// three-member Quorum cluster and against real etcd 3.4, its observations must be the same.
@Suite(.serialized, .ownThread) struct KubeStorageTests {
    /// `Tests/Interop/kubestorage`, built once per source version.
    static func program() throws -> String { try buildInteropProgram("kubestorage") }

    /// The program's observations, as canonical JSON (sorted keys) for comparison.
    static func observe(_ endpoint: String) throws -> String {
        let out = try run(
            try program(), ["--endpoints", endpoint.replacingOccurrences(of: "http://", with: "")], timeout: 180)
        guard out.ok, let json = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] else {
            throw TestFailure(
                "kubestorage against \(endpoint) failed (\(out.status)): \(out.stdout)\(out.stderr.suffix(2000))")
        }
        return String(decoding: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), as: UTF8.self)
    }

    @Test func kubeApiserverStoragePatternsBehaveAsOnEtcd() throws {
        let scratch = TemporaryDirectory()
        let etcd = RealEtcd.Member(.v34, dataDir: scratch.path + "/etcd.data")
        try etcd.start()
        let expected = try Self.observe(etcd.endpoint)
        etcd.stop()
        let cluster = QuorumCluster(size: 3, scratch: scratch)
        try cluster.start()
        // Through a follower: forwarded writes, and watches served by a member that does not lead.
        let leader = try cluster.waitForLeader()
        let follower = try #require(cluster.members.first { $0 !== leader })
        let actual = try Self.observe(follower.endpoint)
        #expect(actual == expected, "Quorum: \(actual)\netcd:   \(expected)")
        #expect(
            expected.contains(#""finalCounter":200"#) && expected.contains(#""progressNotAhead":true"#), "\(expected)")
    }
}
