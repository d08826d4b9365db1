import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What kube-apiserver keys on beyond plain KV: the etcd version (>= 3.5.13 turns on consistent reads from the
/// watch cache and WatchList), the watch behaviour that version promises, the CORRUPT alarm, watch fragments, gzip
/// and Downgrade. Driven by etcd's own Go client (`Tests/Interop/kubewatch`, clientv3 3.4 from Debian's
/// golang-etcd-server-dev), against Quorum and against real etcd 3.5.1 as the reference.
@Suite(.serialized, .ownThread) struct KubernetesTests {
    /// `Tests/Interop/kubewatch`, built once per source version.
    static func program() throws -> String { try buildInteropProgram("kubewatch") }

    /// Runs one mode of the program against `endpoint`; its JSON output.
    static func kubewatch(_ endpoint: String, _ mode: String, _ arguments: [String] = []) throws -> Any {
        let out = try run(
            try program(),
            ["-endpoints", endpoint.replacingOccurrences(of: "http://", with: ""), "-mode", mode] + arguments,
            timeout: 300)
        guard out.ok, let json = try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) else {
            throw TestFailure(
                "kubewatch \(mode) against \(endpoint) failed (\(out.status)): \(out.stdout)\(out.stderr)")
        }
        return json
    }

    /// A seed for the order run, printed so a failure can be replayed (`kubewatch -mode order -seed S`).
    static func seed() -> Int64 {
        let seed = Int64.random(in: 1...Int64.max)
        print("KubernetesTests order seed: \(seed)")
        return seed
    }

    // MARK: Version and watch progress

    /// etcd 3.5.13's guarantees: a progress notification never promises a revision whose events the watcher has
    /// not been sent, and RequestProgress is answered (once every watcher of the stream is synced), also for a
    /// watcher no write matches. Quorum is checked through a follower of three members.
    @Test func progressNotificationsAreNeverAheadOfEvents() throws {
        let cluster = QuorumCluster(size: 3)
        try cluster.start()
        let leader = try cluster.waitForLeader()
        let follower = try #require(cluster.members.first { $0 !== leader })
        let result = try #require(
            try Self.kubewatch(follower.endpoint, "order", ["-seed", "\(Self.seed())"]) as? [String: Any])
        #expect(result["eventsExact"] as? Bool == true, "\(result)")
        #expect(result["progressAhead"] as? Int == 0, "\(result)")
        #expect(result["progressRequests"] as? Int == 12 && result["progressAnswered"] as? Int == 12, "\(result)")
        #expect((result["events"] as? Int ?? 0) > 1000, "\(result)")
    }

    /// The same run against etcd 3.5.1: it delivers every event and answers every request as Quorum does, but
    /// answers RequestProgress at once, ahead of the events of watchers still catching up (etcd issue #15220,
    /// fixed in 3.5.13), which is what the check above would catch.
    @Test func etcd351AnswersProgressAheadOfEvents() throws {
        let scratch = TemporaryDirectory()
        let etcd = RealEtcd.Member(.v35, dataDir: scratch.path + "/etcd.data")
        try etcd.start()
        defer { etcd.stop() }
        let result = try #require(
            try Self.kubewatch(etcd.endpoint, "order", ["-seed", "\(Self.seed())"]) as? [String: Any])
        #expect(result["eventsExact"] as? Bool == true, "\(result)")
        #expect(result["progressRequests"] as? Int == 12 && result["progressAnswered"] as? Int == 12, "\(result)")
        print("etcd 3.5.1 progress notifications ahead of events: \(result["progressAhead"] ?? "?")")
    }

    /// With auth on, a create request is authorized off the event loop; the requests after it on the stream wait,
    /// as etcd handles a stream's requests in order: a progress request sent right after a create (raw stream,
    /// nothing awaited in between) is answered after that watcher was created and caught up, and a second create
    /// gets the next id. Before, the progress request overtook the create and was answered at once.
    @Test func streamRequestsKeepTheirOrderWithAuthOn() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        for step in [["user", "add", "root:rootpw"], ["user", "grant-role", "root", "root"], ["auth", "enable"]] {
            let out = try etcdctl(member.endpoint, step)
            #expect(out.ok, "\(step): \(out.stderr)")
        }
        let result = try #require(
            try Self.kubewatch(member.endpoint, "auth-order", ["-user", "root:rootpw"]) as? [String: Any])
        // The second watcher may be created before or after the first one caught up (both are etcd's order).
        let responses = result["responses"] as? [String] ?? []
        #expect(responses.first == "created 0" && responses.contains("progress -1"), "\(result)")
        #expect(responses.filter { $0.hasPrefix("created") } == ["created 0", "created 1"], "\(result)")
        #expect(result["eventsBeforeProgress"] as? Int == 300, "\(result)")
    }

    @Test func reportsEtcd3513() async throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        let version = try await http(member.endpoint + "/version")
        #expect(version.body == #"{"etcdserver":"3.5.13","etcdcluster":"3.5.0"}"#)
        let status = try etcdctl(member.endpoint, ["endpoint", "status"])
        #expect(status.ok && status.stdout.contains(", 3.5.13, "), "\(status)")
        let table = try etcdctl(member.endpoint, ["endpoint", "status", "-w", "table"])
        #expect(table.ok && table.stdout.contains(" 3.5.13 "), "\(table)")
        #expect(try etcdctl(member.endpoint, ["put", "k", "v"]).ok)
        #expect(try etcdctl(member.endpoint, ["get", "k", "--print-value-only"]).stdout == "v\n")
    }

    // MARK: CORRUPT alarm

    /// With the CORRUPT alarm raised, writes, transactions, compaction and lease grants and revocations fail with
    /// `etcdserver: corrupt cluster` (gRPC DataLoss), reads still work, and disarming restores writes: the same
    /// steps on Quorum and etcd 3.5.1 give the same output.
    @Test func corruptAlarmRefusesWritesAsEtcdDoes() throws {
        let scratch = TemporaryDirectory()
        let etcd = RealEtcd.Member(.v35, dataDir: scratch.path + "/etcd.data")
        try etcd.start()
        let expected = try corruptSteps(etcd.endpoint)
        etcd.stop()
        let member = QuorumProcess(in: scratch)
        try member.start()
        let actual = try corruptSteps(member.endpoint)
        #expect(actual == expected)
        #expect(expected.contains("put while corrupt: 1 Error: etcdserver: corrupt cluster"), "\(expected)")
    }

    private func corruptSteps(_ endpoint: String) throws -> [String] {
        var steps: [String] = []
        func step(_ label: String, _ arguments: [String], input: String? = nil) throws {
            let out = try etcdctl(endpoint, arguments, input: input)
            // Without clientv3's retry log lines (JSON), and member ids (they differ between the two servers).
            let text = (out.stdout + out.stderr).split(separator: "\n")
                .filter { !$0.hasPrefix("{") }
                .map { $0.replacing(/memberID:[0-9]+/, with: "memberID:ID") }
                .joined(separator: "|")
            steps.append("\(label): \(out.status) \(text)")
        }
        try step("put before", ["put", "k", "v1"])
        let activated = try #require(try Self.kubewatch(endpoint, "alarm-activate") as? [String: Any])
        steps.append("activated: \(activated["alarms"] ?? "?")")
        try step("alarm list", ["alarm", "list"])
        try step("put while corrupt", ["put", "k", "v2"])
        try step("delete while corrupt", ["del", "k"])
        try step("txn while corrupt", ["txn"], input: "\nput k v3\n\n")
        try step("get while corrupt", ["get", "k", "--print-value-only"])
        try step("serializable get", ["get", "k", "--print-value-only", "--consistency=s"])
        try step("lease grant while corrupt", ["lease", "grant", "60"])
        try step("compact while corrupt", ["compaction", "1"])
        try step("disarm", ["alarm", "disarm"])
        try step("put after disarm", ["put", "k", "v4"])
        try step("get after disarm", ["get", "k", "--print-value-only"])
        return steps
    }

    // MARK: Cluster version and Downgrade

    /// Each member reports its server version when it publishes itself; the leader sets the cluster version to
    /// the lowest (3.5.0 for 3.5.13 members) through Raft, and every member reports it in /version and /metrics.
    @Test func clusterVersionIsNegotiatedAcrossThreeMembers() async throws {
        let cluster = QuorumCluster(size: 3)
        try cluster.start()
        _ = try cluster.waitForLeader()
        let deadline = Date().addingTimeInterval(60)
        for member in cluster.members {
            while try await http(member.endpoint + "/version").body != #"{"etcdserver":"3.5.13","etcdcluster":"3.5.0"}"#
            {
                guard Date() < deadline else {
                    Issue.record("\(member.name): \(try await http(member.endpoint + "/version").body)")
                    return
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            // etcd's peer /version, where etcd's leader reads each member's version, says the same.
            #expect(
                try await http(member.peerURL + "/version").body == #"{"etcdserver":"3.5.13","etcdcluster":"3.5.0"}"#)
            let metrics = try await http(member.endpoint + "/metrics").body
            #expect(metrics.contains(#"etcd_cluster_version{cluster_version="3.5"} 1"#), "\(member.name)")
        }
        let leader = try cluster.waitForLeader()
        #expect(leader.log.contains("setting up initial cluster version"))
    }

    /// Maintenance.Downgrade answers as etcd 3.5.1 does, step by step: etcd's checks, order and error strings, the
    /// cluster version in answers, the job replicated (a follower sees it). etcd 3.5.1 answers ENABLE and CANCEL
    /// with "request timed out" although they take effect (its apply never wakes the caller; fixed in 3.6):
    /// Quorum answers them with the cluster version.
    @Test func downgradeAnswersAsEtcd() throws {
        let scratch = TemporaryDirectory()
        let etcd = RealEtcd.Member(.v35, dataDir: scratch.path + "/etcd.data")
        try etcd.start()
        let expected = try #require(try Self.kubewatch(etcd.endpoint, "downgrade") as? [[String: String]])
        let gatewayExpected = try gatewayValidate(etcd.endpoint)
        etcd.stop()
        let cluster = QuorumCluster(size: 3, scratch: scratch)
        try cluster.start()
        let leader = try cluster.waitForLeader()
        let follower = try #require(cluster.members.first { $0 !== leader })
        // Until the leader has every member's version there is no cluster version (etcd's "cluster version not
        // found during downgrade"): start once the follower has it.
        try eventually(timeout: 60, "cluster version decided") {
            let version = try run("/usr/bin/env", ["curl", "-s", follower.endpoint + "/version"]).stdout
            return version.contains(#""etcdcluster":"3.5.0""#)
        }
        let actual = try #require(try Self.kubewatch(follower.endpoint, "downgrade") as? [[String: String]])
        #expect(try gatewayValidate(follower.endpoint) == gatewayExpected)
        #expect(gatewayExpected.contains(#""version":"3.5.0""#), "\(gatewayExpected)")
        #expect(actual.count == expected.count)
        for (mine, theirs) in zip(actual, expected) {
            let timedOut = theirs["result"]?.contains("etcdserver: request timed out") == true
            #expect(
                mine == theirs || (timedOut && mine["result"] == "ok 3.5.0"),
                "Quorum: \(mine)\netcd:   \(theirs)")
        }
    }

    /// VALIDATE through the JSON gateway (`/v3/maintenance/downgrade`), without the header (ids differ).
    private func gatewayValidate(_ endpoint: String) throws -> String {
        let out = try run(
            "/usr/bin/env",
            [
                "curl", "-s", "-X", "POST", endpoint + "/v3/maintenance/downgrade", "-d",
                #"{"action":"VALIDATE","version":"3.4"}"#,
            ])
        return out.stdout.replacing(/"header":\{[^}]*\},?/, with: "")
    }

    // MARK: Watch fragments and gzip

    /// A watch created with `fragment` catching up more than --max-request-bytes of events gets them in pieces
    /// below etcd's limit (max request bytes + 512 KiB) marked `fragment`, which clientv3 joins back into one
    /// response; without `fragment` they come whole. Same observations as etcd 3.5.1.
    @Test func largeWatchResponsesAreFragmentedAsEtcdDoes() throws {
        let scratch = TemporaryDirectory()
        let limit = 262_144
        let etcd = RealEtcd.Member(.v35, dataDir: scratch.path + "/etcd.data")
        etcd.extraArguments = ["--max-request-bytes", "\(limit)"]
        try etcd.start()
        let expected = try #require(
            try Self.kubewatch(etcd.endpoint, "fragment", ["-max-request-bytes", "\(limit)"]) as? [String: Any])
        etcd.stop()
        let member = QuorumProcess(in: scratch, extraArguments: ["--max-request-bytes", "\(limit)"])
        try member.start()
        let actual = try #require(
            try Self.kubewatch(member.endpoint, "fragment", ["-max-request-bytes", "\(limit)"]) as? [String: Any])
        for result in [expected, actual] {
            #expect(result["reassembledOK"] as? Bool == true && result["responses"] as? Int == 1, "\(result)")
            #expect(result["rawEvents"] as? Int == 80 && (result["rawFragments"] as? Int ?? 0) >= 1, "\(result)")
            #expect((result["rawLargestResponse"] as? Int ?? .max) < limit + 512 * 1024, "\(result)")
            #expect((result["rawLargestWithoutFragment"] as? Int ?? 0) >= limit + 512 * 1024, "\(result)")
        }
        #expect(actual["rawFragments"] as? Int == expected["rawFragments"] as? Int, "\(actual) vs \(expected)")
    }

    /// grpc-status and grpc-message for a Range in an encoding the server lacks, and for a compressed message in a
    /// call that names no encoding (curl over h2c).
    private func encodingRefusals(_ endpoint: String, scratch: TemporaryDirectory) throws -> [String] {
        // A RangeRequest for key "a", once with the compressed flag.
        try Bytes.write([0, 0, 0, 0, 3, 0x0A, 1, 0x61], to: scratch.file("plain.bin"))
        try Bytes.write([1, 0, 0, 0, 3, 0x0A, 1, 0x61], to: scratch.file("flagged.bin"))
        var lines: [String] = []
        for (file, encoding) in [("plain.bin", ["-H", "grpc-encoding: snappy"]), ("flagged.bin", [])] {
            // The server answers before reading the body and resets the stream; curl then sometimes reports the
            // reset instead of the answer (with etcd as with Quorum): asked again until it shows the answer.
            for _ in 0..<20 {
                let out = try run(
                    "/usr/bin/env",
                    [
                        "curl", "-s", "-o", "/dev/null", "-D", "-", "--http2-prior-knowledge", "-H",
                        "content-type: application/grpc", "-H", "te: trailers",
                    ] + encoding + ["--data-binary", "@" + scratch.file(file), endpoint + "/etcdserverpb.KV/Range"])
                let status = out.stdout.split(separator: "\r\n").map(String.init).filter {
                    $0.hasPrefix("grpc-status") || $0.hasPrefix("grpc-message")
                }
                if !status.isEmpty {
                    lines += status
                    break
                }
            }
        }
        return lines
    }

    /// grpc-go's gzip compressor: requests gzip-encoded are read, and the answers come back gzip-encoded, as from
    /// etcd (grpc-go's stats tell compressed responses by their wire length).
    @Test func gzipEncodedCallsWork() throws {
        let scratch = TemporaryDirectory()
        let etcd = RealEtcd.Member(.v35, dataDir: scratch.path + "/etcd.data")
        try etcd.start()
        let expected = try #require(try Self.kubewatch(etcd.endpoint, "gzip") as? [String: Any])
        let refusalsExpected = try encodingRefusals(etcd.endpoint, scratch: scratch)
        etcd.stop()
        let member = QuorumProcess(in: scratch)
        try member.start()
        let actual = try #require(try Self.kubewatch(member.endpoint, "gzip") as? [String: Any])
        #expect(try encodingRefusals(member.endpoint, scratch: scratch) == refusalsExpected)
        #expect(refusalsExpected.count == 4, "\(refusalsExpected)")
        for result in [expected, actual] {
            #expect(result["error"] as? String == "", "\(result)")
            #expect(
                result["putOK"] as? Bool == true && result["getValueOK"] as? Bool == true
                    && result["watchOK"] as? Bool == true && result["leaseOK"] as? Bool == true, "\(result)")
            #expect((result["compressedResponses"] as? Int ?? 0) >= 2, "\(result)")
        }
    }
}
