import Foundation
import TestSupport
import Testing

/// The JSON gateway (`/v3/...`) as etcd's grpc-gateway serves it: streams as newline-delimited `{"result":…}`
/// chunks, the election and lock services, the snapshot, grpc-gateway's error bodies, and the budget of streams
/// its calls share. Driven over raw HTTP/1.1 connections, with etcdctl making the changes watched.
@Suite(.serialized, .ownThread) struct JSONGatewayTests {
    /// One chunk of a streamed response: a single JSON object and its newline (etcd3gw parses chunk by chunk).
    static func result(_ chunk: String?) throws -> [String: Any] {
        guard let chunk else { throw TestFailure("the stream ended") }
        #expect(chunk.hasSuffix("}\n") && chunk.filter { $0 == "\n" }.count == 1, "chunk: \(chunk)")
        guard let result = try jsonObject(chunk)["result"] as? [String: Any] else {
            throw TestFailure("no result in \(chunk)")
        }
        return result
    }

    static func values(_ result: [String: Any]) -> [String] {
        ((result["events"] as? [[String: Any]]) ?? []).compactMap { ($0["kv"] as? [String: Any])?["value"] as? String }
    }

    @Test func watchStreamsEveryResponseAsItsOwnChunk() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        for prefix in ["/v3", "/v3beta"] {
            let key = "foo" + prefix
            #expect(try etcdctl(member.endpoint, ["put", key, "bar"]).ok)
            let watch = try RawHTTPConnection(port: member.clientPort)
            defer { watch.close() }
            // The JSON etcd's e2e test sends (a space before the object, the oldest revision).
            try watch.send(
                "POST", prefix + "/watch", body: #"{"create_request" : {"key":"\#(base64(key))","start_revision":1}}"#)
            #expect(try watch.readHead())
            #expect(watch.status == 200 && watch.headers["transfer-encoding"] == "chunked")
            #expect(watch.headers["content-type"] == "application/json")
            let created = try Self.result(try watch.nextChunk())
            #expect(created["created"] as? Bool == true)
            #expect((created["header"] as? [String: Any])?["revision"] is String)  // int64 as a string
            #expect(Self.values(try Self.result(try watch.nextChunk())) == [base64("bar")])
            #expect(try etcdctl(member.endpoint, ["put", key, "baz-\(prefix)"]).ok)
            #expect(Self.values(try Self.result(try watch.nextChunk())) == [base64("baz-\(prefix)")])
        }
        // A body of several requests is a stream of them: a second watcher, then the first one cancelled.
        let watch = try RawHTTPConnection(port: member.clientPort)
        defer { watch.close() }
        try watch.send(
            "POST", "/v3/watch",
            body: #"{"create_request":{"key":"YQ==","watch_id":7}} {"create_request":{"key":"Yg=="}}"#
                + #"{"cancel_request":{"watch_id":7}}"#)
        #expect(try watch.readHead())
        #expect(try Self.result(try watch.nextChunk())["watch_id"] as? String == "7")
        #expect(try Self.result(try watch.nextChunk())["created"] as? Bool == true)
        let canceled = try Self.result(try watch.nextChunk())
        #expect(canceled["canceled"] as? Bool == true && canceled["watch_id"] as? String == "7")
        #expect(try etcdctl(member.endpoint, ["put", "b", "1"]).ok)
        #expect(Self.values(try Self.result(try watch.nextChunk())) == [base64("1")])
        // A first request that is not JSON is refused as grpc-gateway refuses it (Unknown, 500).
        let refused = try RawHTTPConnection.post(port: member.clientPort, "/v3/watch", "{nope")
        #expect(refused.status == 500 && refused.body.contains(#""code":2"#), "\(refused)")
    }

    /// The same stream over HTTP/2 (what Go and curl negotiate over TLS; h2c here): one DATA frame per response.
    @Test func watchStreamsOverHTTP2() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch, extraArguments: ["--max-concurrent-streams", "1"])
        try member.start()
        defer { member.stop() }
        let curl = try BackgroundCommand(
            Paths.tool("curl") ?? "/usr/bin/curl",
            [
                "-sS", "-N", "-i", "--http2-prior-knowledge", member.endpoint + "/v3/watch", "-d",
                #"{"create_request":{"key":"\#(base64("h2"))"}}"#,
            ])
        try curl.waitFor { $0.contains("HTTP/2 200") && $0.contains(#""created":true"#) }
        #expect(try etcdctl(member.endpoint, ["put", "h2", "over-h2"]).ok)
        try curl.waitFor { $0.contains(base64("over-h2")) }
        // The watch holds the gateway's only stream until its client goes away; then calls go through again.
        curl.stop()
        let range = try RawHTTPConnection.post(port: member.clientPort, "/v3/kv/range", #"{"key":"\#(base64("h2"))"}"#)
        #expect(range.status == 200 && range.body.contains(base64("over-h2")), "\(range)")
    }

    /// etcd's gateway is one gRPC connection to its member: its calls share `--max-concurrent-streams`, so with
    /// that many watches open a further call waits until one of them ends.
    @Test func gatewayCallsShareTheMaxConcurrentStreams() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch, extraArguments: ["--max-concurrent-streams", "2"])
        try member.start()
        defer { member.stop() }
        let range = #"{"key":"Zm9v"}"#
        let first = try RawHTTPConnection(port: member.clientPort)
        try first.send("POST", "/v3/watch", body: #"{"create_request":{"key":"Zm9v"}}"#)
        #expect(try first.readHead())
        _ = try Self.result(try first.nextChunk())
        // One stream left: a call goes through.
        #expect(try RawHTTPConnection.post(port: member.clientPort, "/v3/kv/range", range).status == 200)
        let second = try RawHTTPConnection(port: member.clientPort)
        defer { second.close() }
        try second.send("POST", "/v3/watch", body: #"{"create_request":{"key":"Zm9v"}}"#)
        #expect(try second.readHead())
        _ = try Self.result(try second.nextChunk())
        let waiting = try RawHTTPConnection(port: member.clientPort)
        defer { waiting.close() }
        try waiting.send("POST", "/v3/kv/range", body: range)
        #expect(try !waiting.readHead(timeout: 1), "a call went through with every stream taken")
        // gRPC clients are not limited by the gateway's connection.
        #expect(try etcdctl(member.endpoint, ["get", "foo"]).ok)
        first.close()
        let answered = try waiting.response()
        #expect(answered.status == 200 && answered.body.contains(#""revision":"1""#), "\(answered)")
    }

    @Test func electionAndLockThroughTheGateway() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        let port = member.clientPort
        let grant = try jsonObject(try RawHTTPConnection.post(port: port, "/v3/lease/grant", #"{"TTL":60}"#).body)
        let lease = try #require(grant["ID"] as? String)

        let campaign = try RawHTTPConnection.post(
            port: port, "/v3/election/campaign",
            #"{"name":"\#(base64("/e"))","value":"\#(base64("v1"))","lease":"\#(lease)"}"#)
        #expect(campaign.status == 200 && campaign.body.contains(#""leader":{"name":""#), "\(campaign)")
        let leader = try #require(try jsonObject(campaign.body)["leader"] as? [String: Any])
        #expect(leader["name"] as? String == base64("/e") && leader["lease"] as? String == lease)
        let leaderJSON = String(decoding: try JSONSerialization.data(withJSONObject: leader), as: UTF8.self)

        let observe = try RawHTTPConnection(port: port)
        defer { observe.close() }
        try observe.send("POST", "/v3/election/observe", body: #"{"name":"\#(base64("/e"))"}"#)
        #expect(try observe.readHead())
        let observed = try Self.result(try observe.nextChunk())
        #expect((observed["kv"] as? [String: Any])?["value"] as? String == base64("v1"))

        let proclaim = try RawHTTPConnection.post(
            port: port, "/v3/election/proclaim", #"{"leader":\#(leaderJSON),"value":"\#(base64("v2"))"}"#)
        #expect(proclaim.status == 200 && proclaim.body.contains(#""revision":"#), "\(proclaim)")
        #expect(
            (try Self.result(try observe.nextChunk())["kv"] as? [String: Any])?["value"] as? String == base64("v2"))
        let current = try RawHTTPConnection.post(port: port, "/v3/election/leader", #"{"name":"\#(base64("/e"))"}"#)
        #expect(current.status == 200 && current.body.contains(base64("v2")), "\(current)")
        #expect(try etcdctl(member.endpoint, ["get", "--prefix", "/e/", "--print-value-only"]).stdout == "v2\n")

        // etcd's exact error (a plain Go error there: Unknown, 500) for a proclaim or resign without the leader.
        let missing =
            #"{"error":"\"leader\" field must be provided","message":"\"leader\" field must be provided","code":2}"#
        for path in ["/v3/election/proclaim", "/v3/election/resign"] {
            let refused = try RawHTTPConnection.post(port: port, path, #"{"value":"\#(base64("v3"))"}"#)
            #expect(refused.status == 500 && refused.body == missing, "\(path): \(refused)")
        }
        let resign = try RawHTTPConnection.post(port: port, "/v3/election/resign", #"{"leader":\#(leaderJSON)}"#)
        #expect(resign.status == 200, "\(resign)")
        let none = try RawHTTPConnection.post(port: port, "/v3/election/leader", #"{"name":"\#(base64("/e"))"}"#)
        #expect(none.body == #"{"error":"election: no leader","message":"election: no leader","code":2}"#, "\(none)")

        let lock = try RawHTTPConnection.post(
            port: port, "/v3/lock/lock", #"{"name":"\#(base64("/l"))","lease":"\#(lease)"}"#)
        let key = try #require(try jsonObject(lock.body)["key"] as? String, "\(lock)")
        #expect(String(decoding: Data(base64Encoded: key) ?? Data(), as: UTF8.self).hasPrefix("/l/"))
        #expect(try etcdctl(member.endpoint, ["get", "--prefix", "/l/", "--keys-only"]).stdout.hasPrefix("/l/"))
        let unlock = try RawHTTPConnection.post(port: port, "/v3/lock/unlock", #"{"key":"\#(key)"}"#)
        #expect(unlock.status == 200, "\(unlock)")
        #expect(try etcdctl(member.endpoint, ["get", "--prefix", "/l/", "--keys-only"]).stdout.isEmpty)
    }

    @Test func snapshotStreamsAFileEtcdctlReads() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        for i in 0..<20 {
            #expect(try etcdctl(member.endpoint, ["put", "k\(i)", String(repeating: "v", count: 4000)]).ok)
        }
        let connection = try RawHTTPConnection(port: member.clientPort)
        defer { connection.close() }
        try connection.send("POST", "/v3/maintenance/snapshot", body: "{}")
        #expect(try connection.readHead())
        var file = Data()
        var remaining: [Int] = []
        while let chunk = try connection.nextChunk() {
            let result = try Self.result(chunk)
            file += Data(base64Encoded: try #require(result["blob"] as? String)) ?? Data()
            remaining.append(Int(result["remaining_bytes"] as? String ?? "0") ?? -1)
        }
        #expect(remaining.count > 1 && remaining.last == 0 && remaining == remaining.sorted(by: >))
        let path = scratch.path + "/gateway.db"
        try file.write(to: URL(fileURLWithPath: path))
        let status = try run(
            Paths.tool("etcdctl") ?? "/usr/bin/etcdctl", ["snapshot", "status", path, "-w", "json"],
            environment: ["ETCDCTL_API": "3"])
        #expect(status.ok && status.stdout.contains(#""revision":21"#), "\(status)")
    }

    @Test func errorsAreGrpcGatewayBodies() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        let port = member.clientPort
        // etcd's e2e malformed txn (it once crashed etcd): unknown fields are ignored, leaving an empty operation.
        let malformed =
            #"{"compare":[{"result":0,"target":1,"key":"Zm9v","TargetUnion":null}],"#
            + #""success":[{"Request":{"RequestPut":{"key":"Zm9v","value":"YmFy"}}}]}"#
        let txn = try RawHTTPConnection.post(port: port, "/v3/kv/txn", malformed)
        #expect(txn.status == 400)
        #expect(txn.body == #"{"error":"etcdserver: key not found","message":"etcdserver: key not found","code":3}"#)
        let empty = try RawHTTPConnection.post(port: port, "/v3/kv/put", #"{"value":"YmFy"}"#)
        #expect(empty.status == 400 && empty.body.hasPrefix(#"{"error":"etcdserver: key is not provided","#))
        let notJSON = try RawHTTPConnection.post(port: port, "/v3/kv/range", "{]")
        #expect(notJSON.status == 400 && notJSON.body.hasSuffix(#","code":3}"#), "\(notJSON)")
        let role = try RawHTTPConnection.post(port: port, "/v3/auth/role/get", #"{"role":"nobody"}"#)
        #expect(role.status == 412 && role.body.hasPrefix(#"{"error":"etcdserver: role name not found""#), "\(role)")
        let get = try RawHTTPConnection(port: port)
        defer { get.close() }
        try get.send("GET", "/v3/kv/range")
        #expect(try get.response() == (405, "Method Not Allowed\n"))
        #expect(try RawHTTPConnection.post(port: port, "/v3/kv/nothing", "{}") == (404, "Not Found\n"))
    }

    /// OpenStack's etcd3gw (Python), which speaks only the gateway: a watch through `/v3/watch`, and its lock
    /// (a lease and transactions).
    @Test func etcd3gwWatchesAndLocks() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        let script = """
            import sys, etcd3gw
            c = etcd3gw.client(host="127.0.0.1", port=int(sys.argv[1]))
            events, cancel = c.watch("gw/key")
            c.put("gw/key", "first")
            c.delete("gw/key")
            got = [next(events), next(events)]
            cancel()
            print(got[0]["kv"]["value"].decode(), got[0].get("type", "PUT"), got[1]["type"])
            lock = c.lock(id="gw-lock", ttl=30)
            print(lock.acquire(), lock.is_acquired(), lock.release())
            """
        let path = scratch.path + "/gw.py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try run(Paths.tool("python3") ?? "/usr/bin/python3", [path, "\(member.clientPort)"])
        #expect(result.ok, "\(result.stderr)")
        #expect(result.stdout == "first PUT DELETE\nTrue True True\n", "\(result)")
    }
}
