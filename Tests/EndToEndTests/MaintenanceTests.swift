import Foundation
import TestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Maintenance through etcdctl and etcd's HTTP endpoints.
@Suite(.serialized, .ownThread) final class MaintenanceTests {
    let scratch = TemporaryDirectory()
    let member: QuorumProcess

    init() throws {
        member = QuorumProcess(in: scratch)
        try member.start()
    }

    deinit { member.stop() }

    func ctl(_ args: String...) throws -> CommandResult { try etcdctl(member.endpoint, args) }

    @Test func endpointHealthAndStatus() throws {
        let health = try ctl("endpoint", "health")
        // etcdctl 3.4 reports health on standard error.
        #expect(health.ok && health.stderr.contains("\(member.endpoint) is healthy: successfully committed proposal"))
        let status = try ctl("endpoint", "status", "-w", "json").stdout
        let list = try #require(try etcdJSON(status) as? [[String: Any]])
        let s = try #require(list.first?["Status"] as? [String: Any])
        let header = try #require(s["header"] as? [String: Any])
        #expect(s["leader"] as? String == header["member_id"] as? String)
        #expect((s["raftIndex"] as? Int ?? 0) >= 1 && (s["raftTerm"] as? Int ?? 0) >= 1)
        #expect((s["dbSize"] as? Int ?? 0) > 0 && s["version"] as? String == "3.5.13")
        let members = try ctl("member", "list").stdout
        #expect(members.contains(", started, m1, http://127.0.0.1:\(member.peerPort), \(member.endpoint), false"))
    }

    @Test func snapshotSaveWritesAnEtcdSnapshotWithChecksum() throws {
        for i in 0..<50 { #expect(try ctl("put", "snap/\(i)", String(repeating: "v", count: 100)).ok) }
        let path = scratch.path + "/backup.db"
        let saved = try ctl("snapshot", "save", path)
        #expect(saved.ok && saved.stdout.contains("Snapshot saved at \(path)"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        // etcd's format: a bbolt database (its magic 0xED0CDAED, little-endian, in the first meta page, after the
        // 16-byte page header), whole pages, then etcd's trailing SHA-256 of it.
        #expect(Array(bytes[16..<20]) == [0xED, 0xDA, 0x0C, 0xED])
        #expect(bytes.count % 4096 == 32)
        let status = try run(
            "/usr/bin/etcdctl", ["snapshot", "status", path, "-w", "json"], environment: ["ETCDCTL_API": "3"])
        #expect(status.stdout.contains(#""revision":51"#), "\(status.stdout)\(status.stderr)")
        let check = try run(
            "/usr/bin/env",
            [
                "python3", "-c",
                """
                import hashlib,sys
                b=open(sys.argv[1],'rb').read()
                print(hashlib.sha256(b[:-32]).digest()==b[-32:])
                """, path,
            ])
        #expect(check.stdout == "True\n")
    }

    @Test func defragmentShrinksAfterDeletes() throws {
        let value = String(repeating: "x", count: 4000)
        for i in 0..<100 { #expect(try ctl("put", "defrag/\(i)", value).ok) }
        #expect(try ctl("del", "defrag/", "--prefix").ok)
        let revision = try revisionNow()
        #expect(try ctl("compact", "\(revision)", "--physical").ok)
        let before = try dbSize()
        let out = try ctl("defrag")
        #expect(out.stdout == "Finished defragmenting etcd member[\(member.endpoint)]\n")
        #expect(try dbSize() < before)
        #expect(try ctl("put", "after-defrag", "ok").ok)
    }

    @Test func httpEndpointsSpeakEtcdsJSON() async throws {
        #expect(try ctl("put", "through-grpc", "1").ok)
        let health = try await http(member.endpoint + "/health")
        #expect(health.status == 200 && health.body == #"{"health":"true","reason":""}"#)
        let serializable = try await http(member.endpoint + "/health?serializable=true")
        #expect(serializable.status == 200)
        let version = try await http(member.endpoint + "/version")
        #expect(version.body == #"{"etcdserver":"3.5.13","etcdcluster":"3.5.0"}"#)
        let ready = try await http(member.endpoint + "/readyz?verbose")
        #expect(ready.status == 200 && ready.body.contains("[+]linearizable_read ok"))
        #expect(try await http(member.endpoint + "/livez").body == "ok\n")
        let put = try await http(
            member.endpoint + "/v3/kv/put", method: "POST", body: #"{"key":"Z3c=","value":"dmFs"}"#)
        #expect(put.status == 200 && put.body.contains(#""revision":""#))
        let range = try await http(member.endpoint + "/v3/kv/range", method: "POST", body: #"{"key":"Z3c="}"#)
        #expect(
            range.body.contains(#""kvs":[{"key":"Z3c=","create_revision":""#) && range.body.contains(#""value":"dmFs""#)
        )
        let bad = try await http(member.endpoint + "/v3/kv/put", method: "POST", body: #"{"key":""}"#)
        #expect(bad.status == 400 && bad.body.contains("etcdserver: key is not provided"))
        let metrics = try await http(member.endpoint + "/metrics")
        for name in [
            "etcd_server_has_leader 1", "etcd_server_version{server_version=\"3.5.13\"} 1", "etcd_mvcc_put_total ",
            "etcd_debugging_mvcc_keys_total", "etcd_mvcc_db_total_size_in_bytes",
            "etcd_disk_wal_fsync_duration_seconds_bucket", "grpc_server_handled_total{grpc_code=\"OK\"",
        ] {
            #expect(metrics.body.contains(name), "missing \(name)")
        }
        // Ranges are counted (the gateway's range above, at least).
        let ranges = metrics.body.split(separator: "\n").first { $0.hasPrefix("etcd_mvcc_range_total ") }
        #expect((ranges.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0) >= 1, "\(ranges ?? "missing")")
    }

    func revisionNow() throws -> Int {
        let out = try ctl("get", "anything", "-w", "json").stdout
        let object = try etcdJSON(out) as! [String: Any]
        return (object["header"] as! [String: Any])["revision"] as! Int
    }

    func dbSize() throws -> Int {
        let out = try ctl("endpoint", "status", "-w", "json").stdout
        let list = try etcdJSON(out) as! [[String: Any]]
        return (list[0]["Status"] as! [String: Any])["dbSize"] as! Int
    }
}

/// NOSPACE: a tiny quota raises the alarm, writes are refused with etcd's error until space is freed and the
/// alarm disarmed.
@Suite(.ownThread) struct QuotaAlarmTests {
    @Test func noSpaceAlarmRefusesWritesUntilDisarmed() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch, extraArguments: ["--quota-backend-bytes", "300000"])
        try member.start()
        defer { member.stop() }
        func ctl(_ args: String...) throws -> CommandResult { try etcdctl(member.endpoint, args) }
        let value = String(repeating: "q", count: 10_000)
        var refused: CommandResult?
        for i in 0..<200 {
            let put = try ctl("put", "quota/\(i)", value)
            if !put.ok {
                refused = put
                break
            }
        }
        let error = try #require(refused, "a 300 kB quota must fill up")
        #expect(error.stderr.contains("etcdserver: mvcc: database space exceeded"))
        let alarms = try ctl("alarm", "list")
        #expect(alarms.stdout.contains("alarm:NOSPACE"))
        let health = try awaitHealth(member.endpoint)
        #expect(health.status == 503 && health.body == #"{"health":"false","reason":"ALARM NOSPACE"}"#)
        // Reads and deletes still work.
        #expect(try ctl("get", "quota/0", "--keys-only").stdout == "quota/0\n\n")
        #expect(try ctl("del", "quota/", "--prefix").ok)
        #expect(!(try ctl("put", "still", "refused")).ok)
        let out = try ctl("get", "x", "-w", "json").stdout
        let revision =
            ((try etcdJSON(out) as! [String: Any])["header"]
            as! [String: Any])["revision"] as! Int
        #expect(try ctl("compact", "\(revision)", "--physical").ok)
        #expect(try ctl("defrag").ok)
        #expect(try ctl("alarm", "disarm").stdout.contains("alarm:NOSPACE"))
        #expect(try ctl("alarm", "list").stdout == "")
        #expect(try ctl("put", "after", "disarm").ok)
    }
}

/// A synchronous GET for tests that are not async (the HTTP client itself is async).
func awaitHealth(_ endpoint: String) throws -> (status: Int, body: String) {
    try awaitRequest(endpoint + "/health")
}

func awaitGet(_ url: String) throws -> String { try awaitRequest(url).body }

/// A blocking GET for synchronous tests. The request runs on URLSession's own queue (a completion handler, not a
/// Task): blocking a test thread on a Task would wait on the cooperative pool the test itself occupies, which on a
/// 2-core machine deadlocks as soon as two such tests run at once.
func awaitRequest(_ url: String, timeout: TimeInterval = 30) throws -> (status: Int, body: String) {
    let box = ResultBox()
    let semaphore = DispatchSemaphore(value: 0)
    var request = URLRequest(url: URL(string: url)!)
    request.timeoutInterval = timeout
    URLSession.shared.dataTask(with: request) { data, response, _ in
        if let data, let response = response as? HTTPURLResponse {
            box.set((response.statusCode, String(decoding: data, as: UTF8.self)))
        }
        semaphore.signal()
    }.resume()
    guard semaphore.wait(timeout: .now() + timeout + 5) == .success, let result = box.get() else {
        throw TestFailure("GET \(url) failed")
    }
    return result
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (status: Int, body: String)?
    func set(_ v: (status: Int, body: String)?) { lock.lock(); value = v; lock.unlock() }
    func get() -> (status: Int, body: String)? { lock.lock(); defer { lock.unlock() }; return value }
}
