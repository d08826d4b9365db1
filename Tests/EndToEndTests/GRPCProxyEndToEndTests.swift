import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `quorum grpc-proxy start`, etcd's L7 gRPC proxy, in front of a 3-member cluster: real etcdctl 3.4 and 3.5
/// through it, watchers of one key sharing one watch on the members, a watcher that does not read cut off, a member
/// killed behind it, `--namespace`, auth tokens, `--resolver-prefix`, and etcd's refusals.
@Suite(.ownThread) struct GRPCProxyEndToEndTests {
    /// A proxy process in front of `endpoints`, stopped by pid at the end.
    final class Proxy: @unchecked Sendable {
        let command: BackgroundCommand
        let port = freePort()
        let metricsPort = freePort()

        init(endpoints: String, _ extra: [String] = []) throws {
            command = try BackgroundCommand(
                Paths.quorum,
                [
                    "grpc-proxy", "start", "--endpoints=\(endpoints)", "--listen-addr=127.0.0.1:\(port)",
                    "--metrics-addr=http://127.0.0.1:\(metricsPort)",
                ] + extra)
            try command.waitFor(timeout: 60) { $0.contains("started gRPC proxy") }
        }

        var endpoint: String { "127.0.0.1:\(port)" }
        func metrics() throws -> String { try awaitGet("http://127.0.0.1:\(metricsPort)/metrics") }
        func stop() { command.stop() }
    }

    /// A sample's value in Prometheus text (`name value` or `name{labels} value`).
    static func metric(_ text: String, _ name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") || line.hasPrefix(name + "{") {
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }

    /// Watchers open on the members (etcd's gauge, summed over the running members).
    static func memberWatchers(_ cluster: QuorumCluster) throws -> Double {
        try cluster.members.filter(\.isRunning).reduce(0) { sum, member in
            sum + (metric(try awaitGet(member.endpoint + "/metrics"), "etcd_debugging_mvcc_watcher_total") ?? 0)
        }
    }

    @Test(arguments: RealEtcd.Release.allCases)
    func etcdctlThroughTheProxy(_ release: RealEtcd.Release) throws {
        let ctl = release == .v34 ? try #require(Paths.tool("etcdctl")) : try RealEtcd.etcd35("etcdctl")
        let cluster = QuorumCluster(size: 3)
        try cluster.start()
        defer { cluster.stopAll() }
        _ = try cluster.waitForLeader()
        let proxy = try Proxy(endpoints: cluster.endpoints, ["--advertise-client-url=127.0.0.1:4242"])
        defer { proxy.stop() }
        func ctlRun(_ arguments: [String], input: String? = nil) throws -> CommandResult {
            try run(
                ctl, ["--endpoints=\(proxy.endpoint)", "--command-timeout=15s"] + arguments, input: input,
                environment: ["ETCDCTL_API": "3"])
        }
        #expect(try ctlRun(["put", "foo", "bar"]).stdout == "OK\n")
        #expect(try ctlRun(["get", "foo", "--print-value-only"]).stdout == "bar\n")
        #expect(try ctlRun(["get", "foo", "--print-value-only", "--consistency=s"]).stdout == "bar\n")
        // The write went to the cluster: a member answers it directly.
        #expect(try etcdctl(cluster.members[2].endpoint, ["get", "foo", "--print-value-only"]).stdout == "bar\n")
        let txn = try ctlRun(["txn"], input: "value(\"foo\") = \"bar\"\n\nput foo baz\n\nput foo nope\n\n")
        #expect(txn.stdout == "SUCCESS\n\nOK\n", "\(txn)")
        // A cached serializable read is invalidated by the write through the proxy.
        #expect(try ctlRun(["get", "foo", "--print-value-only", "--consistency=s"]).stdout == "baz\n")

        // Watch: the event of a put through the proxy reaches a watcher through the proxy.
        let watch = try BackgroundCommand(ctl, ["--endpoints=\(proxy.endpoint)", "watch", "w"])
        defer { watch.stop() }
        try watch.waitFor(timeout: 30) { output in
            if output.contains("PUT\nw\nv1") { return true }
            _ = try? ctlRun(["put", "w", "v1"])
            return false
        }

        // Lease: grant, keep alive once, time to live with its keys.
        let grant = try ctlRun(["lease", "grant", "60"]).stdout
        let lease = try #require(grant.split(separator: " ").dropFirst().first.map(String.init), "\(grant)")
        #expect(try ctlRun(["put", "leased", "x", "--lease=\(lease)"]).stdout == "OK\n")
        #expect(try ctlRun(["lease", "keep-alive", "--once", lease]).stdout.contains("keepalived with TTL("))
        #expect(try ctlRun(["lease", "timetolive", lease, "--keys"]).stdout.contains("attached keys([leased])"))

        // Lock and election (clientv3's concurrency recipes: sessions, transactions, watches from a revision).
        #expect(try ctlRun(["lock", "mylock", "echo", "held"]).stdout.contains("held"))
        let leader = try BackgroundCommand(ctl, ["--endpoints=\(proxy.endpoint)", "elect", "myelection", "p1"])
        defer { leader.stop() }
        try leader.waitFor(timeout: 30) { $0.contains("myelection/") && $0.contains("p1") }
        let observer = try BackgroundCommand(ctl, ["--endpoints=\(proxy.endpoint)", "elect", "-l", "myelection"])
        defer { observer.stop() }
        try observer.waitFor(timeout: 30) { $0.contains("p1") }

        // Member list is etcd's proxy's answer: the proxy itself at its advertised address.
        let members = try ctlRun(["member", "list"])
        #expect(members.stdout.contains("127.0.0.1:4242"), "\(members)")
        // Endpoint status is the member's, forwarded.
        let status = try ctlRun(["endpoint", "status"])
        #expect(status.status == 0 && status.stdout.contains(proxy.endpoint), "\(status)")
        // Health and metrics on the proxy's own port too (HTTP/1.1 beside gRPC).
        #expect(try awaitGet("http://\(proxy.endpoint)/health").contains("\"health\":\"true\""))
        #expect(try proxy.metrics().contains("etcd_grpc_proxy_cache_hits_total"))
    }

    @Test func watchersOfOneKeyShareOneWatchOnTheMembers() async throws {
        let cluster = QuorumCluster(size: 3)
        try cluster.start()
        defer { cluster.stopAll() }
        _ = try cluster.waitForLeader()
        let proxy = try Proxy(endpoints: cluster.endpoints)
        defer { proxy.stop() }
        let baseline = try Self.memberWatchers(cluster)
        let watchers = 40
        let created = Counter()
        let received = Counter()
        try await EtcdClient.with(port: proxy.port) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<watchers {
                    group.addTask {
                        var request = Etcdserverpb_WatchRequest()
                        request.createRequest.key = Data("hot".utf8)
                        let first = request
                        try await client.watch.watch(
                            request: StreamingClientRequest { writer in
                                try await writer.write(first)
                                try await Task.sleep(for: .seconds(600))
                            }
                        ) { response in
                            for try await message in response.messages {
                                if message.created { created.increment() }
                                if message.events.contains(where: { $0.kv.value == Data("now".utf8) }) {
                                    received.increment()
                                    return
                                }
                            }
                        }
                    }
                }
                // Every watcher is created; the members hold one watch for all of them.
                try await Self.waitUntil("all watchers created") { created.value == watchers }
                let text = try proxy.metrics()
                #expect(Self.metric(text, "quorum_grpc_proxy_upstream_watches") == 1, "\(text)")
                #expect(Self.metric(text, "quorum_grpc_proxy_client_watchers") == Double(watchers))
                #expect(Self.metric(text, "etcd_grpc_proxy_watchers_coalescing_total") == Double(watchers - 1))
                #expect(try Self.memberWatchers(cluster) == baseline + 1)
                // One put reaches all of them.
                _ = try await client.put("hot", "now")
                try await group.waitForAll()
            }
        }
        #expect(received.value == watchers)
        // With every watcher gone, so is the watch on the members.
        try await Self.waitUntil("upstream watch cancelled") {
            Self.metric(try proxy.metrics(), "quorum_grpc_proxy_upstream_watches") == 0
        }
        try await Self.waitUntil("member watch gone") { try Self.memberWatchers(cluster) == baseline }
    }

    final class Counter: Sendable {
        private let count = Atomic<Int>(0)
        func increment() { count.add(1, ordering: .relaxed) }
        var value: Int { count.load(ordering: .relaxed) }
    }

    static func waitUntil(_ what: String, timeout: Double = 60, _ condition: () throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("\(what) did not happen within \(timeout)s")
    }

    /// A watcher that stops reading is cut off once 1024 responses queue up for it (its HTTP/2 window is full long
    /// before), while a watcher of the same key that reads gets every event.
    @Test func aWatcherThatDoesNotReadIsCutOffWithoutHoldingUpOthers() async throws {
        let cluster = QuorumCluster(size: 1)
        try cluster.start()
        defer { cluster.stopAll() }
        let proxy = try Proxy(endpoints: cluster.endpoints)
        defer { proxy.stop() }
        let puts = 1_300
        let received = Counter()
        var request = Etcdserverpb_WatchRequest()
        request.createRequest.key = Data("busy".utf8)
        let create = request
        // The slow one: raw HTTP/2 that sends its watch and then never reads nor credits a byte of flow-control
        // window, so the proxy can send it 64 KiB and no more.
        let slow = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(slow) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(proxy.port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(slow, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        #expect(connected == 0)
        let bytes = ClientFloodTests.floodBytes(
            requests: 1, complete: 1, request: "/etcdserverpb.Watch/Watch", body: try create.serializedBytes(),
            authority: proxy.endpoint)
        #expect(bytes.withUnsafeBytes { send(slow, $0.baseAddress, $0.count, 0) } == bytes.count)
        do {
            try await EtcdClient.with(port: proxy.port) { client in
                try await withThrowingTaskGroup(of: Void.self) { reading in
                    reading.addTask {
                        try await client.watch.watch(
                            request: StreamingClientRequest { writer in
                                try await writer.write(create)
                                try await Task.sleep(for: .seconds(600))
                            }
                        ) { response in
                            for try await message in response.messages {
                                for _ in message.events { received.increment() }
                                if received.value >= puts { return }
                            }
                        }
                    }
                    try await Self.waitUntil("both watchers created") {
                        Self.metric(try proxy.metrics(), "quorum_grpc_proxy_client_watchers") == 2
                    }
                    // One at a time, so that each event is a response of its own (the member batches concurrent ones).
                    let value = String(repeating: "v", count: 1_000)
                    for i in 0..<puts { _ = try await client.put("busy", "\(i)-\(value)") }
                    try await Self.waitUntil("every event reached the reading watcher", timeout: 120) {
                        received.value >= puts
                    }
                    try await reading.waitForAll()
                }
                try await Self.waitUntil("the slow watcher cut off") {
                    let text = try proxy.metrics()
                    return Self.metric(text, "quorum_grpc_proxy_slow_watch_streams_total") == 1
                        && Self.metric(text, "quorum_grpc_proxy_client_watchers") == 1
                }
            }
        }
        #expect(received.value == puts)
        #expect(proxy.command.output.contains("watch stream cut off"))
    }

    @Test func aMemberKilledBehindTheProxyDoesNotBreakClients() throws {
        let cluster = QuorumCluster(size: 3)
        try cluster.start()
        defer { cluster.stopAll() }
        _ = try cluster.waitForLeader()
        // The proxy uses the first endpoint until it fails.
        let proxy = try Proxy(endpoints: cluster.endpoints)
        defer { proxy.stop() }
        #expect(try etcdctl(proxy.endpoint, ["put", "k", "before"]).stdout == "OK\n")
        let watch = try etcdctlInBackground(proxy.endpoint, ["watch", "k"])
        defer { watch.stop() }
        try watch.waitFor(timeout: 30) { output in
            if output.contains("PUT\nk\nwatched") { return true }
            _ = try? etcdctl(proxy.endpoint, ["put", "k", "watched"])
            return false
        }
        cluster.members[0].stop(signal: SIGKILL)
        // Writes, reads and the open watch carry on through the other members.
        try eventually(timeout: 60, "a write through the proxy after the kill") {
            try etcdctl(proxy.endpoint, ["put", "k", "after"]).stdout == "OK\n"
        }
        #expect(try etcdctl(proxy.endpoint, ["get", "k", "--print-value-only"]).stdout == "after\n")
        try watch.waitFor(timeout: 60) { $0.contains("PUT\nk\nafter") }
        #expect(proxy.command.output.contains("switching"))
    }

    /// etcd's tests start one proxy per member with the same (default) data directory and `--auto-tls`: they share
    /// one self-signed pair, made by the first under a lock, and every one of them serves TLS with it.
    @Test func proxiesSharingADataDirectoryShareOneAutoTLSCertificate() throws {
        let cluster = QuorumCluster(size: 1)
        try cluster.start()
        defer { cluster.stopAll() }
        _ = try cluster.waitForLeader()
        let dataDir = TemporaryDirectory()
        let ports = (0..<3).map { _ in freePort() }
        // Started together, so that they race for the files.
        let proxies = try ports.map { port in
            try BackgroundCommand(
                Paths.quorum,
                [
                    "grpc-proxy", "start", "--endpoints=\(cluster.endpoints)", "--listen-addr=127.0.0.1:\(port)",
                    "--auto-tls", "--data-dir=\(dataDir.path)",
                ])
        }
        defer { for proxy in proxies { proxy.stop() } }
        for proxy in proxies { try proxy.waitFor(timeout: 60) { $0.contains("started gRPC proxy") } }
        for (n, port) in ports.enumerated() {
            let put = try etcdctl(
                "https://127.0.0.1:\(port)",
                ["--insecure-transport=false", "--insecure-skip-tls-verify", "put", "k\(n)", "v"])
            #expect(put.stdout == "OK\n", "proxy \(n): \(put.stderr)\n\(proxies[n].output.suffix(2000))")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dataDir.path + "/fixtures/proxy")
        #expect(Set(files).isSuperset(of: ["cert.pem", "key.pem"]), "\(files)")
    }

    @Test func namespacePrefixesKeysAndStripsThem() throws {
        let cluster = QuorumCluster(size: 1)
        try cluster.start()
        defer { cluster.stopAll() }
        let proxy = try Proxy(endpoints: cluster.endpoints, ["--namespace=tenant/"])
        defer { proxy.stop() }
        let member = cluster.members[0].endpoint
        #expect(try etcdctl(proxy.endpoint, ["put", "a", "1"]).stdout == "OK\n")
        #expect(try etcdctl(member, ["get", "tenant/a", "--print-value-only"]).stdout == "1\n")
        #expect(try etcdctl(member, ["put", "outside", "x"]).stdout == "OK\n")
        // Keys come back without the prefix, and nothing outside it is seen.
        #expect(try etcdctl(proxy.endpoint, ["get", "a"]).stdout == "a\n1\n")
        #expect(try etcdctl(proxy.endpoint, ["get", "", "--prefix", "--keys-only"]).stdout == "a\n\n")
        let watch = try etcdctlInBackground(proxy.endpoint, ["watch", "--prefix", "b", "--prev-kv"])
        defer { watch.stop() }
        try watch.waitFor(timeout: 30) { output in
            if output.contains("PUT\nb1\n2") { return true }
            _ = try? etcdctl(member, ["put", "tenant/b1", "2"])
            return false
        }
        #expect(!watch.output.contains("tenant/"))
        let deleted = try etcdctl(proxy.endpoint, ["del", "a", "--prev-kv"]).stdout
        #expect(deleted == "1\na\n1\n", "\(deleted)")
    }

    @Test func authTokensPassThroughTheProxy() throws {
        let cluster = QuorumCluster(size: 1)
        try cluster.start()
        defer { cluster.stopAll() }
        let member = cluster.members[0].endpoint
        for step in [
            ["user", "add", "root:rootpw"], ["user", "grant-role", "root", "root"], ["role", "add", "reader"],
            ["role", "grant-permission", "reader", "read", "pub"], ["user", "add", "alice:pw"],
            ["user", "grant-role", "alice", "reader"], ["auth", "enable"],
        ] {
            let result = try etcdctl(member, step)
            #expect(result.status == 0, "\(step): \(result)")
        }
        let proxy = try Proxy(endpoints: cluster.endpoints)
        defer { proxy.stop() }
        #expect(try etcdctl(proxy.endpoint, ["--user=root:rootpw", "put", "pub", "v"]).stdout == "OK\n")
        #expect(try etcdctl(proxy.endpoint, ["--user=root:rootpw", "put", "secret", "s"]).stdout == "OK\n")
        // Each call carries its client's token: alice reads what her role allows and nothing else, cached or not.
        #expect(try etcdctl(proxy.endpoint, ["--user=alice:pw", "get", "pub", "--print-value-only"]).stdout == "v\n")
        for consistency in ["l", "s"] {
            let denied = try etcdctl(
                proxy.endpoint, ["--user=alice:pw", "get", "secret", "--consistency=\(consistency)"])
            #expect(denied.status != 0 && denied.stderr.contains("permission denied"), "\(denied)")
        }
        let write = try etcdctl(proxy.endpoint, ["--user=alice:pw", "put", "pub", "x"])
        #expect(write.status != 0 && write.stderr.contains("permission denied"), "\(write)")
        let anonymous = try etcdctl(proxy.endpoint, ["get", "pub"])
        #expect(anonymous.status != 0 && anonymous.stderr.contains("user name is empty"), "\(anonymous)")
        // A watch through the proxy with alice's token sees root's writes.
        let watch = try etcdctlInBackground(proxy.endpoint, ["--user=alice:pw", "watch", "pub"])
        defer { watch.stop() }
        try watch.waitFor(timeout: 30) { output in
            if output.contains("PUT\npub\nfresh") { return true }
            _ = try? etcdctl(proxy.endpoint, ["--user=root:rootpw", "put", "pub", "fresh"])
            return false
        }
    }

    @Test func proxiesRegisteredUnderAResolverPrefixListEachOther() throws {
        let cluster = QuorumCluster(size: 1)
        try cluster.start()
        defer { cluster.stopAll() }
        let first = try Proxy(
            endpoints: cluster.endpoints, ["--resolver-prefix=___grpc_proxy_endpoint", "--resolver-ttl=5"])
        defer { first.stop() }
        let secondPort = freePort()
        let second = try Proxy(
            endpoints: cluster.endpoints,
            [
                "--resolver-prefix=___grpc_proxy_endpoint", "--resolver-ttl=5",
                "--advertise-client-url=127.0.0.1:\(secondPort)",
            ])
        defer { second.stop() }
        // The first advertises etcd's default (127.0.0.1:23790); both are the "members" either one lists.
        try eventually(timeout: 30, "both proxies listed") {
            let list = try etcdctl(first.endpoint, ["member", "list"]).stdout
            return list.contains("127.0.0.1:23790") && list.contains("127.0.0.1:\(secondPort)")
        }
        // Their registrations are leased keys in the cluster (clientv3's endpoints records).
        let keys = try etcdctl(cluster.members[0].endpoint, ["get", "___grpc_proxy_endpoint", "--prefix"]).stdout
        #expect(keys.contains("\"Addr\":\"127.0.0.1:\(secondPort)\""), "\(keys)")
        // A proxy that stops is gone once its lease expires.
        second.stop()
        try eventually(timeout: 30, "stopped proxy delisted") {
            !(try etcdctl(first.endpoint, ["member", "list"]).stdout.contains("127.0.0.1:\(secondPort)"))
        }
    }

    @Test func refusalsAreEtcds() throws {
        let unknown = try run(Paths.quorum, ["grpc-proxy", "start", "--nope"])
        #expect(unknown.status == 1 && unknown.stderr.hasPrefix("Error: unknown flag: --nope\n"), "\(unknown)")
        let ttl = try run(Paths.quorum, ["grpc-proxy", "start", "--resolver-prefix=p"])
        #expect(ttl.status == 1 && ttl.stderr.contains("invalid resolver-ttl 0"), "\(ttl)")
        let help = try run(Paths.quorum, ["grpc-proxy", "start", "--help"])
        #expect(help.status == 0 && help.stdout.contains("--advertise-client-url"), "\(help)")
    }
}
