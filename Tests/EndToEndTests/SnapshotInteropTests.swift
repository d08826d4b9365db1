import EtcdProto
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Data in, data out, data back: snapshots move between Quorum and real etcd 3.4.23 and 3.5.1 in both directions,
/// with etcd's own tools, and every key comes back with the same value, revisions, version and lease.
@Suite(.serialized, .ownThread) struct SnapshotInteropTests {
    /// One key as etcdctl prints it, and the revision the read saw.
    struct KeySpace: Equatable, CustomStringConvertible {
        struct KV: Equatable {
            var key: String
            var value: String
            var create: Int64
            var mod: Int64
            var version: Int64
            var lease: Int64
        }
        var revision: Int64
        var kvs: [KV]
        var description: String { "revision \(revision), \(kvs.count) keys" }
    }

    static func keySpace(_ endpoint: String, revision: Int64? = nil, serializable: Bool = false) throws -> KeySpace {
        var arguments = ["get", "", "--prefix", "-w", "json"]
        if let revision { arguments.append("--rev=\(revision)") }
        if serializable { arguments.append("--consistency=s") }
        let out = try etcdctl(endpoint, arguments)
        guard out.ok, let json = try etcdJSON(out.stdout) as? [String: Any],
            let header = json["header"] as? [String: Any]
        else { throw TestFailure("get at \(endpoint) failed: \(out.stderr)") }
        func int(_ any: Any?) -> Int64 { (any as? NSNumber)?.int64Value ?? Int64("\(any ?? 0)") ?? 0 }
        let kvs = (json["kvs"] as? [[String: Any]] ?? []).map { kv in
            KeySpace.KV(
                key: kv["key"] as? String ?? "", value: kv["value"] as? String ?? "",
                create: int(kv["create_revision"]),
                mod: int(kv["mod_revision"]), version: int(kv["version"]), lease: int(kv["lease"]))
        }
        return KeySpace(revision: int(header["revision"]), kvs: kvs)
    }

    /// Lease id → granted TTL, as `lease list` and `lease timetolive` print them.
    static func leases(_ endpoint: String) throws -> [String: String] {
        let list = try etcdctl(endpoint, ["lease", "list"]).stdout.split(separator: "\n").dropFirst()
        var out: [String: String] = [:]
        for id in list {
            let ttl = try etcdctl(endpoint, ["lease", "timetolive", String(id)]).stdout
            let granted = ttl.range(of: #"granted with TTL\([0-9]+s\)"#, options: .regularExpression).map {
                String(ttl[$0])
            }
            out[String(id)] = granted ?? ttl
        }
        return out
    }

    /// Several thousand revisions through `port`: keys overwritten and deleted, three leases with keys attached,
    /// and a compaction half-way. Returns the compaction revision.
    ///
    /// A fresh connection every 100 operations: grpc-go servers (real etcd) close a grpc-swift client's connection
    /// after a few hundred calls ("transport is closing"), which has nothing to do with what is tested here.
    static func writeHistory(port: Int, seed: UInt64) async throws -> Int64 {
        print("history seed \(seed)")
        var rng = SeededRandom(seed: seed)
        let leases = try await EtcdClient.with(port: port) { client in
            var ids: [Int64] = []
            for ttl in [600, 900, 1200] as [Int64] {
                var grant = Etcdserverpb_LeaseGrantRequest()
                grant.ttl = ttl
                ids.append(try await client.lease.leaseGrant(grant).id)
            }
            return ids
        }
        var compacted: Int64 = 0
        for batch in 0..<40 {
            let plan = (0..<100).map { _ in (rng.next() % 300, rng.next() % 20, rng.next()) }
            let before = compacted
            compacted = try await EtcdClient.with(port: port) { client in
                var compacted = before
                for (n, (key, kind, extra)) in plan.enumerated() {
                    let i = batch * 100 + n
                    let key = "key/\(key)"
                    switch kind {
                    case 0..<3:
                        var delete = Etcdserverpb_DeleteRangeRequest()
                        delete.key = Data(key.utf8)
                        _ = try await client.kv.deleteRange(delete)
                    case 3..<5:
                        _ = try await client.put(key, "leased-\(i)", lease: leases[Int(extra % 3)])
                    default:
                        _ = try await client.put(key, String(repeating: "v", count: Int(extra % 200)) + "\(i)")
                    }
                }
                if batch == 20 {
                    var compact = Etcdserverpb_CompactionRequest()
                    compact.revision = try await client.range("key/0").header.revision - 100
                    compacted = compact.revision
                    _ = try await client.kv.compact(compact)
                }
                return compacted
            }
        }
        return compacted
    }

    static func snapshotStatus(_ release: RealEtcd.Release, _ file: String) throws -> [String: Int64] {
        let (tool, environment) = try RealEtcd.snapshotTool(release)
        let out = try run(tool, ["snapshot", "status", file, "-w", "json"], environment: environment)
        guard out.ok, let json = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] else {
            throw TestFailure("\(release) snapshot status \(file): \(out.stdout)\(out.stderr)")
        }
        return json.mapValues { ($0 as? NSNumber)?.int64Value ?? 0 }
    }

    static func quorumctl(_ arguments: [String]) throws -> CommandResult {
        try run(Paths.packageRoot + "/.build/debug/quorumctl", arguments)
    }

    @Test func quorumSnapshotsRestoreIntoEtcd34And35() async throws {
        let cluster = QuorumCluster(size: 3)
        try cluster.start()
        let leader = try cluster.waitForLeader()
        let compacted = try await Self.writeHistory(port: leader.clientPort, seed: UInt64.random(in: 1...1_000_000))
        let file = cluster.scratch.path + "/quorum.db"
        // etcd's own client saves it, through a follower: any member serves a snapshot.
        let follower = try #require(cluster.members.first { $0 !== leader })
        let saved = try etcdctl(follower.endpoint, ["snapshot", "save", file])
        #expect(saved.ok, "\(saved.stderr)")
        let expected = try Self.keySpace(follower.endpoint)
        let history = try Self.keySpace(follower.endpoint, revision: compacted + 50)
        let leases = try Self.leases(follower.endpoint)
        #expect(leases.count == 3)

        let ours = try Self.quorumctl(["snapshot", "status", file, "-w", "json"])
        let ourStatus = try #require(try JSONSerialization.jsonObject(with: Data(ours.stdout.utf8)) as? [String: Int64])
        for release in RealEtcd.Release.allCases {
            let status = try Self.snapshotStatus(release, file)
            #expect(status["revision"] == expected.revision, "\(release): \(status)")
            #expect(status == ourStatus, "\(release) and quorumctl disagree: \(status) vs \(ourStatus)")

            let etcd = RealEtcd.Member(release, dataDir: cluster.scratch.path + "/restored-\(release.rawValue)")
            let (tool, environment) = try RealEtcd.snapshotTool(release)
            let restored = try run(
                tool,
                [
                    "snapshot", "restore", file, "--data-dir", etcd.dataDir, "--name", etcd.name,
                    "--initial-cluster", "\(etcd.name)=\(etcd.peerURL)", "--initial-advertise-peer-urls", etcd.peerURL,
                ], environment: environment)
            #expect(restored.ok, "\(release) restore: \(restored.stderr)")
            try etcd.start()
            defer { etcd.stop() }
            let actual = try Self.keySpace(etcd.endpoint)
            #expect(actual == expected, "\(release) serves \(actual), Quorum served \(expected)")
            #expect(try Self.keySpace(etcd.endpoint, revision: compacted + 50) == history, "\(release) history")
            let below = try etcdctl(etcd.endpoint, ["get", "key/1", "--rev=\(compacted - 1)"])
            #expect(below.stderr.contains("required revision has been compacted"), "\(release): \(below.stderr)")
            #expect(try Self.leases(etcd.endpoint).keys.sorted() == leases.keys.sorted(), "\(release) leases")
        }
    }

    @Test(arguments: RealEtcd.Release.allCases)
    func etcdSnapshotsRestoreIntoAQuorumCluster(release: RealEtcd.Release) async throws {
        let scratch = TemporaryDirectory("etcd-into-quorum-\(release.rawValue)")
        let etcd = RealEtcd.Member(release, dataDir: scratch.path + "/etcd.data")
        try etcd.start()
        let compacted = try await Self.writeHistory(port: etcd.clientPort, seed: UInt64.random(in: 1...1_000_000))
        let file = scratch.path + "/etcd.db"
        #expect(try etcdctl(etcd.endpoint, ["snapshot", "save", file]).ok)
        let expected = try Self.keySpace(etcd.endpoint)
        let history = try Self.keySpace(etcd.endpoint, revision: compacted + 50)
        let leases = try Self.leases(etcd.endpoint)
        etcd.stop()

        // Restored once per member with the same flags, as etcd's documentation restores a cluster.
        let cluster = QuorumCluster(size: 3, scratch: scratch)
        for m in cluster.members {
            let restored = try Self.quorumctl([
                "snapshot", "restore", file, "--data-dir", m.dataDir, "--name", m.name,
                "--initial-cluster", cluster.initialCluster, "--initial-advertise-peer-urls", m.peerURL,
            ])
            #expect(restored.ok, "\(restored.stdout)\(restored.stderr)")
        }
        try cluster.start()
        _ = try cluster.waitForLeader()
        for m in cluster.members {
            #expect(try Self.keySpace(m.endpoint) == expected, "\(m.name) after restoring \(release)'s snapshot")
            try eventually("\(m.name) serializable") { try Self.keySpace(m.endpoint, serializable: true) == expected }
            #expect(try Self.keySpace(m.endpoint, revision: compacted + 50) == history)
        }
        #expect(try Self.leases(cluster.members[0].endpoint) == leases)
        // The restored cluster takes writes and continues the revisions.
        #expect(try etcdctl(cluster.endpoints, ["put", "after/restore", "yes"]).ok)
        #expect(try Self.keySpace(cluster.members[1].endpoint).revision == expected.revision + 1)
        let members = try etcdctl(cluster.endpoints, ["member", "list"]).stdout
        #expect(members.split(separator: "\n").count == 3 && !members.contains("unstarted"), "\(members)")
    }

    /// A snapshot taken while writers write is the state at one revision: restored, it equals a read of the source
    /// at the revision the snapshot reports.
    @Test func aSnapshotUnderWritesIsConsistentAtItsRevision() async throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        let port = member.clientPort
        let stop = ManagedFlag()
        // Off this test's own thread, which the synchronous waits below block.
        let writers = Task(executorPreference: globalConcurrentExecutor) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<4 {
                    group.addTask {
                        try await EtcdClient.with(port: port) { client in
                            var i = 0
                            while !stop.isSet && i < 20_000 {
                                _ = try await client.put("w\(w)/\(i % 50)", "\(i)")
                                i += 1
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        try eventually("writes under way") { try Self.keySpace(member.endpoint).revision > 500 }
        let file = scratch.path + "/live.db"
        let saved = try Self.quorumctl(["snapshot", "save", file, "--endpoints", member.endpoint])
        #expect(saved.ok, "\(saved.stderr)")
        stop.set()
        try await writers.value
        let status = try Self.snapshotStatus(.v35, file)
        let revision = try #require(status["revision"])
        let atSnapshot = try Self.keySpace(member.endpoint, revision: revision)
        #expect(try Self.keySpace(member.endpoint).revision > revision, "the writers went on after the snapshot")

        let copy = QuorumProcess(in: scratch, name: "copy")
        #expect(
            try Self.quorumctl([
                "snapshot", "restore", file, "--data-dir", copy.dataDir, "--name", "copy",
                "--initial-cluster", "copy=\(copy.peerURL)", "--initial-advertise-peer-urls", copy.peerURL,
            ]).ok)
        try copy.start()
        let restored = try Self.keySpace(copy.endpoint)
        // A historical read's header carries the current revision; the restored copy is at the snapshot's.
        #expect(restored.revision == revision)
        #expect(restored.kvs == atSnapshot.kvs, "restored \(restored), source at the snapshot's revision \(atSnapshot)")
    }

    /// Damaged and foreign files are refused, saying which file and what is wrong, and leave no directory behind.
    @Test func damagedSnapshotsAreRefusedAndLeaveNothingBehind() async throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        for i in 0..<200 {
            #expect(try etcdctl(member.endpoint, ["put", "k\(i)", String(repeating: "x", count: i)]).ok)
        }
        let good = scratch.path + "/good.db"
        #expect(try etcdctl(member.endpoint, ["snapshot", "save", good]).ok)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: good)))

        var cases: [(String, [UInt8], String)] = [
            ("truncated", Array(bytes.prefix(bytes.count / 2)), "truncated.db"),
            ("empty", [], "empty.db"),
            ("not bbolt", Array("this is not a database\n".utf8) + [UInt8](repeating: 7, count: 9000), "text.db"),
        ]
        var flipped = bytes
        flipped[bytes.count / 3] ^= 0x10
        cases.append(("bit flip", flipped, "flipped.db"))
        var wrongHash = bytes
        wrongHash[bytes.count - 1] ^= 0xff
        cases.append(("wrong hash", wrongHash, "hash.db"))
        for (what, content, name) in cases {
            let path = scratch.path + "/" + name
            try Data(content).write(to: URL(fileURLWithPath: path))
            let target = scratch.path + "/restored-" + name
            let out = try Self.quorumctl(["snapshot", "restore", path, "--data-dir", target])
            #expect(!out.ok, "\(what): restore accepted a damaged file")
            #expect(out.stderr.contains(path), "\(what): the error does not name the file: \(out.stderr)")
            #expect(!FileManager.default.fileExists(atPath: target), "\(what): left \(target) behind")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter {
                $0.hasPrefix(".restore")
            }
            #expect(leftovers.isEmpty, "\(what): staging left behind: \(leftovers)")
        }
        // A database without its trailer (a member's db file copied by hand) needs --skip-hash-check, as in etcd.
        let bare = scratch.path + "/bare.db"
        try Data(bytes.dropLast(32)).write(to: URL(fileURLWithPath: bare))
        #expect(!(try Self.quorumctl(["snapshot", "restore", bare, "--data-dir", scratch.path + "/bare1"]).ok))
        #expect(
            try Self.quorumctl([
                "snapshot", "restore", bare, "--data-dir", scratch.path + "/bare2", "--skip-hash-check",
            ])
            .ok)
        // An existing directory is never overwritten.
        let exists = try Self.quorumctl(["snapshot", "restore", good, "--data-dir", member.dataDir])
        #expect(!exists.ok && exists.stderr.contains("exists"), "\(exists.stderr)")
    }
}

/// A flag set once from one task and read from others.
final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
