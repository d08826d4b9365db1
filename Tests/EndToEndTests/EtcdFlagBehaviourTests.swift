import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// etcd's flags that change behaviour, each checked on real `quorum` processes: a metrics listener of its own,
/// `--wal-dir`, WAL retention, gRPC keepalive, watch progress notifications, lease checkpoints, log outputs and
/// formats, v2 refusal, `ETCD_*` warnings, flags without effect, socket reuse and pprof.
@Suite(.ownThread) struct EtcdFlagBehaviourTests {
    // MARK: Metrics listener

    @Test func metricsAndHealthOnASeparatePlainPort() async throws {
        let scratch = TemporaryDirectory()
        let metricsPort = freePort()
        let member = QuorumProcess(
            in: scratch, extraArguments: ["--listen-metrics-urls", "http://127.0.0.1:\(metricsPort)"])
        try member.start()
        defer { member.stop() }
        let base = "http://127.0.0.1:\(metricsPort)"
        let metrics = try await http(base + "/metrics")
        #expect(metrics.status == 200 && metrics.body.contains("etcd_server_has_leader"))
        let health = try await http(base + "/health")
        #expect(health.status == 200 && health.body.contains(#""health":"true""#))
        #expect(try await http(base + "/livez").status == 200)
        #expect(try await http(base + "/readyz").status == 200)
        // Only those: the metrics port serves no key-value API.
        #expect(try await http(base + "/version").status == 404)
        #expect(try await http(base + "/v3/kv/range", method: "POST", body: #"{"key":"Zm9v"}"#).status == 404)
        #expect(member.log.contains(#""msg":"serving metrics""#))
    }

    @Test func metricsOverHTTPSWithTheClientTLSMaterial() throws {
        let scratch = TemporaryDirectory()
        let metricsPort = freePort()
        let member = QuorumProcess(
            in: scratch, extraArguments: ["--listen-metrics-urls", "https://127.0.0.1:\(metricsPort)", "--auto-tls"])
        try member.start()
        defer { member.stop() }
        let curl = try #require(Paths.tool("curl"), "curl is installed by scripts/test.sh")
        let secure = try run(curl, ["-sk", "https://127.0.0.1:\(metricsPort)/metrics"])
        #expect(secure.ok && secure.stdout.contains("etcd_server_has_leader"), "\(secure.stderr)")
        // Plaintext to the https port is refused.
        let plain = try run(curl, ["-s", "http://127.0.0.1:\(metricsPort)/metrics"])
        #expect(!plain.stdout.contains("etcd_server_has_leader"))
    }

    // MARK: WAL

    static func walFiles(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".wal") }
    }

    @Test func walDirHoldsTheLogAndRestartsFromIt() throws {
        let scratch = TemporaryDirectory()
        let walDir = scratch.path + "/elsewhere/wal"
        let member = QuorumProcess(in: scratch, extraArguments: ["--wal-dir", walDir])
        try member.start()
        #expect(try etcdctl(member.endpoint, ["put", "k", "v"]).ok)
        #expect(member.stop() == 0)
        #expect(!Self.walFiles(walDir).isEmpty)
        #expect(Self.walFiles(member.dataDir + "/member/wal").isEmpty)
        try member.start()
        defer { member.stop() }
        #expect(try etcdctl(member.endpoint, ["get", "k", "--print-value-only"]).stdout == "v\n")
    }

    /// Small segments (QUORUM_TESTING_WAL_SEGMENT_BYTES) and a snapshot after every entry (so that every segment but
    /// the newest is obsolete): `--max-wals 2` leaves two segment files, `--max-wals 0` keeps them all; a member restarts from a log with old segments kept. Quorum writes no
    /// snapshot files, so `--max-snapshots` is logged as having no effect and `member/snap` holds the database only.
    @Test func maxWALsRemovesOldSegmentsAndMaxSnapshotsIsLogged() throws {
        let scratch = TemporaryDirectory()
        let value = String(repeating: "x", count: 7000)
        var counts: [String: Int] = [:]
        for limit in ["2", "0"] {
            let member = QuorumProcess(
                in: scratch, name: "m\(limit)",
                extraArguments: ["--max-wals", limit, "--snapshot-count", "1", "--max-snapshots", "1"])
            member.environment = ["QUORUM_TESTING_WAL_SEGMENT_BYTES": "16384"]
            try member.start()
            for i in 0..<40 { #expect(try etcdctl(member.endpoint, ["put", "key\(i)", value]).ok) }
            let walDir = member.dataDir + "/member/wal"
            if limit == "2" {
                try eventually("old segments removed") { Self.walFiles(walDir).count <= 2 }
            }
            #expect(member.stop() == 0)
            counts[limit] = Self.walFiles(walDir).count
            #expect(member.log.contains("flag --max-snapshots has no effect in Quorum"))
            let snap = (try? FileManager.default.contentsOfDirectory(atPath: member.dataDir + "/member/snap")) ?? []
            #expect(snap.allSatisfy { $0.hasPrefix("db") }, "\(snap)")
            // Restart from what was kept, the data intact.
            try member.start()
            #expect(try etcdctl(member.endpoint, ["get", "key39", "--print-value-only"]).stdout == value + "\n")
            member.stop()
        }
        #expect(counts["2"]! <= 2, "\(counts)")
        #expect(counts["0"]! >= 8, "\(counts)")
    }

    // MARK: Keepalive

    /// A raw HTTP/2 connection: the preface and an empty SETTINGS, then frames read one by one.
    final class RawHTTP2: @unchecked Sendable {
        let fd: Int32
        private var buffer: [UInt8] = []

        init(port: Int) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { throw TestFailure("connect: \(errno)") }
            send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Self.frame(type: 0x4, payload: []))
        }

        deinit { close(fd) }

        static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8]) -> [UInt8] {
            let n = payload.count
            return [UInt8(n >> 16), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags]
                + [UInt8(stream >> 24), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)]
                + payload
        }

        func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } }

        func ping(_ n: UInt8) { send(Self.frame(type: 0x6, payload: [0, 0, 0, 0, 0, 0, 0, n])) }

        /// The next frame (type, flags, payload), nil when the server closed the connection, or a failure after
        /// `timeout` seconds without one.
        func next(timeout: Double) throws -> (type: UInt8, flags: UInt8, payload: [UInt8])? {
            let deadline = Date().addingTimeInterval(timeout)
            while true {
                if buffer.count >= 9 {
                    let length = Int(buffer[0]) << 16 | Int(buffer[1]) << 8 | Int(buffer[2])
                    if buffer.count >= 9 + length {
                        let frame = (buffer[3], buffer[4], Array(buffer[9..<(9 + length)]))
                        buffer.removeFirst(9 + length)
                        return frame
                    }
                }
                let left = deadline.timeIntervalSinceNow
                guard left > 0 else { throw TestFailure("no frame within \(timeout)s") }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, Int32(left * 1000) + 1) > 0 else { continue }
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = recv(fd, &chunk, chunk.count, 0)
                if n <= 0 { return nil }
                buffer += chunk[0..<n]
            }
        }
    }

    @Test func aClientPingingTooOftenIsSentAwayAndAQuietOneIsPinged() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(
            in: scratch,
            extraArguments: [
                "--grpc-keepalive-min-time", "5s", "--grpc-keepalive-interval", "1s", "--grpc-keepalive-timeout", "1s",
            ])
        try member.start()
        defer { member.stop() }

        // Pings with no call open, back to back: grpc-go's third strike gets GOAWAY ENHANCE_YOUR_CALM.
        let eager = try RawHTTP2(port: member.clientPort)
        for n in 1...5 { eager.ping(UInt8(n)) }
        var goaway: [UInt8]?
        while let frame = try eager.next(timeout: 10) {
            if frame.type == 0x7 {
                goaway = frame.payload
                break
            }
        }
        let payload = try #require(goaway, "no GOAWAY")
        let code = UInt32(payload[4]) << 24 | UInt32(payload[5]) << 16 | UInt32(payload[6]) << 8 | UInt32(payload[7])
        #expect(code == 0xb, "ENHANCE_YOUR_CALM")
        #expect(String(decoding: payload.dropFirst(8), as: UTF8.self) == "too_many_pings")
        #expect(try eager.next(timeout: 10) == nil, "the connection is closed after GOAWAY")

        // A connection that stays silent is pinged after the interval, then closed when it does not answer.
        let quiet = try RawHTTP2(port: member.clientPort)
        var pinged = false
        while let frame = try quiet.next(timeout: 10) {
            if frame.type == 0x6 && frame.flags & 0x1 == 0 { pinged = true }
        }
        #expect(pinged, "the server pinged the silent connection before closing it")

        // A client that answers keeps its connection, and etcdctl is not bothered by the policy.
        #expect(try etcdctl(member.endpoint, ["put", "k", "v"]).ok)
    }

    // MARK: Watch progress

    @Test func watchersThatAskGetProgressNotificationsAtTheInterval() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(
            in: scratch, extraArguments: ["--experimental-watch-progress-notify-interval", "1s"])
        try member.start()
        defer { member.stop() }
        let watch = try BackgroundCommand(
            try RealEtcd.etcd35("etcdctl"), ["--endpoints=\(member.endpoint)", "watch", "--progress-notify", "k"])
        defer { watch.stop() }
        try watch.waitFor(timeout: 20) { $0.components(separatedBy: "progress notify:").count >= 3 }
    }

    // MARK: Lease checkpoints

    @Test func aLeasesRemainingTTLSurvivesALeaderChange() throws {
        let cluster = QuorumCluster(
            size: 3,
            extraArguments: ["--experimental-enable-lease-checkpoint", "--experimental-lease-checkpoint-interval=1s"])
        try cluster.start()
        defer { cluster.stopAll() }
        let leader = try cluster.waitForLeader()
        let grant = try etcdctl(leader.endpoint, ["lease", "grant", "60"])
        let id = try #require(
            grant.stdout.split(separator: " ").dropFirst().first.map(String.init), "lease grant: \(grant.stdout)")
        func remaining(_ endpoint: String) throws -> Int {
            let text = try etcdctl(endpoint, ["lease", "timetolive", id]).stdout
            // "lease 694d... granted with TTL(60s), remaining(57s)"
            guard let open = text.range(of: "remaining("), let close = text[open.upperBound...].firstIndex(of: "s")
            else { throw TestFailure("unexpected timetolive output: \(text)") }
            return Int(text[open.upperBound..<close]) ?? -1
        }
        // Checkpoints every second: once the lease has run 5 s, several have been recorded.
        try eventually(timeout: 30, "the lease ran 5 s") { try remaining(leader.endpoint) <= 55 }
        let before = try remaining(leader.endpoint)
        let target = try #require(cluster.members.first { $0 !== leader })
        let list = try etcdctl(cluster.endpoints, ["member", "list"]).stdout
        let line = try #require(list.split(separator: "\n").first { $0.contains(target.peerURL) })
        #expect(try etcdctl(leader.endpoint, ["move-leader", String(line.split(separator: ",")[0])]).ok)
        try eventually("the new leader leads") { try cluster.leader() === target }
        let after = try remaining(target.endpoint)
        // Without checkpoints the new leader would restart the lease at its whole TTL (60 s).
        // (A checkpoint rounds the remaining TTL up and may be up to an interval old: a second or two more.)
        #expect(
            after <= before + 2 && after <= 57, "remaining TTL before \(before)s, after the leader change \(after)s")
    }

    // MARK: Logging

    @Test func logOutputsWriteEveryLineToEachFile() throws {
        let scratch = TemporaryDirectory()
        let first = scratch.path + "/one.log"
        let second = scratch.path + "/two.log"
        let member = QuorumProcess(in: scratch, extraArguments: ["--log-outputs", "\(first),\(second)"])
        try member.start(waitReady: false)
        defer { member.stop() }
        try eventually(timeout: 60, "ready in both files") {
            [first, second].allSatisfy {
                ((try? String(contentsOfFile: $0, encoding: .utf8)) ?? "").contains("ready to serve client requests")
            }
        }
        let one = try String(contentsOfFile: first, encoding: .utf8)
        let two = try String(contentsOfFile: second, encoding: .utf8)
        #expect(one.split(separator: "\n").first == two.split(separator: "\n").first)
        #expect(!member.log.contains("ready to serve client requests"), "standard error is not an output here")
    }

    @Test func capnslogWritesEtcd34sTextLines() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch, extraArguments: ["--logger", "capnslog"])
        member.environment = ["ETCD_FOO": "bar"]
        try member.start()
        defer { member.stop() }
        let log = member.log
        #expect(log.contains("[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead"))
        #expect(log.contains(" W | pkg/flags: unrecognized environment variable ETCD_FOO=bar"))
        let pattern = #"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} [CEWNIDT] \| [^ ]+: "#
        let lines = log.split(separator: "\n").filter { !$0.hasPrefix("[WARNING]") }
        #expect(!lines.isEmpty)
        for line in lines {
            #expect(line.range(of: pattern, options: .regularExpression) != nil, "not capnslog: \(line)")
        }
        #expect(lines.contains { $0.contains(" I | quorum: ready to serve client requests") })
    }

    // MARK: Refusals, warnings, flags without effect

    @Test func enableV2IsRefusedAndUnknownVariablesAreWarnedAbout() throws {
        let refused = try run(Paths.quorum, ["--enable-v2=true"])
        #expect(
            refused.status == 2 && refused.stderr.contains("--enable-v2=true is not supported"), "\(refused.stderr)")
        // A flag also given as its ETCD_* variable stops start-up, as etcd's fatal log does.
        let conflict = try run(Paths.quorum, ["--name", "a"], environment: ["ETCD_NAME": "b"])
        #expect(
            conflict.status == 1
                && conflict.stderr.contains(
                    "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag"),
            "\(conflict.stderr)")

        let scratch = TemporaryDirectory()
        let member = QuorumProcess(
            in: scratch,
            extraArguments: [
                "--enable-v2=false", "--pre-vote", "--experimental-memory-mlock", "--enable-grpc-gateway=false",
                "--experimental-backend-bbolt-freelist-type", "map", "--proxy-dial-timeout", "10", "--vv",
            ])
        member.environment = ["ETCD_FOO": "bar", "ETCD_SNAPSHOT_COUNT": "500"]
        try member.start()
        defer { member.stop() }
        let log = member.log
        #expect(log.contains(#""msg":"unrecognized environment variable","environment-variable":"ETCD_FOO=bar""#))
        #expect(log.contains(#""msg":"recognized and used environment variable""#))
        for flag in [
            "pre-vote", "experimental-memory-mlock", "enable-grpc-gateway", "experimental-backend-bbolt-freelist-type",
            "proxy-dial-timeout",
        ] {
            #expect(log.contains("flag --\(flag) has no effect in Quorum: "), "--\(flag) not logged")
        }
        #expect(log.contains(#"flag \"-vv\" is no longer supported - ignoring."#))
        #expect(!log.contains("flag --enable-v2 "))
    }

    @Test func helpListsEveryFlagAndVersionIsEtcds() throws {
        let help = try run(Paths.quorum, ["--help"])
        for flag in [
            "--listen-metrics-urls", "--experimental-enable-lease-checkpoint", "--socket-reuse-port",
            "--v2-deprecation",
        ] {
            #expect(help.stdout.contains("  \(flag) "), "\(flag)")
        }
        #expect(help.stdout.contains("[No effect in Quorum:"))
        let version = try run(Paths.quorum, ["--version"])
        #expect(version.stdout.hasPrefix("etcd Version: 3.5.13\nGit SHA: "))
    }

    // MARK: Sockets and pprof

    @Test func reusePortLetsAMemberShareItsPort() throws {
        let port = freePort()
        // Another listener on the port, with SO_REUSEPORT (the kernel requires it of every socket that shares).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var open = true
        defer { if open { close(fd) } }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        // As every Go and Quorum listener: the port may have been a server's in an earlier test, with connections
        // of it still in TIME_WAIT, which refuse a bind without SO_REUSEADDR (it never lets two sockets listen).
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(bound == 0 && listen(fd, 8) == 0, "the test's own listener on port \(port): errno \(errno)")
        let scratch = TemporaryDirectory()
        let refused = QuorumProcess(in: scratch, name: "refused", clientPort: port)
        try refused.start(waitReady: false)
        try eventually(timeout: 30, "the member without --socket-reuse-port exits") { !refused.isRunning }
        #expect(refused.stop() == 1)
        #expect(refused.log.contains("bind: address already in use"), "\(refused.log)")
        let member = QuorumProcess(
            in: scratch, name: "shared", extraArguments: ["--socket-reuse-port"], clientPort: port)
        try member.start()
        defer { member.stop() }
        // It bound and is ready while the other listener holds the port. The kernel spreads new connections over
        // both listeners, and the other never accepts: once it is gone, every connection reaches the member.
        #expect(member.isRunning)
        close(fd)
        open = false
        try eventually(timeout: 30, "a put through the shared port") {
            (try? etcdctl(member.endpoint, ["put", "k", "v"], timeout: 10).ok) ?? false
        }
    }

    @Test func pprofServesHeapAndCPUReportsWhenEnabled() async throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch, extraArguments: ["--enable-pprof"])
        try member.start()
        defer { member.stop() }
        let index = try await http(member.endpoint + "/debug/pprof/")
        #expect(index.status == 200 && index.body.contains("heap"))
        let heap = try await http(member.endpoint + "/debug/pprof/heap")
        #expect(heap.status == 200 && heap.body.contains("malloc_info") && heap.body.contains("VmRSS"))
        let profile = try await http(member.endpoint + "/debug/pprof/profile?seconds=1")
        #expect([200, 501].contains(profile.status) && !profile.body.isEmpty, "\(profile.status) \(profile.body)")

        let plain = QuorumProcess(in: scratch, name: "plain")
        try plain.start()
        defer { plain.stop() }
        #expect(try await http(plain.endpoint + "/debug/pprof/heap").status == 404)
    }
}

/// `--discovery-srv` on a real process: its SRV query goes to a small DNS server in the test (`QUORUM_DNS_SERVER`),
/// whose record names this member's peer URL.
@Suite(.ownThread) struct DiscoverySRVTests {
    /// Answers `_etcd-server._tcp.<domain>` with one SRV record, NXDOMAIN otherwise.
    final class OneRecordDNS: @unchecked Sendable {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let port: Int

        init(name: String, target: String, targetPort: Int) {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = self.fd
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            port = Int(UInt16(bigEndian: address.sin_port))
            func encode(_ name: String) -> [UInt8] {
                name.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
            }
            let question = encode(name)
            let targetName = encode(target)
            Thread {
                var buffer = [UInt8](repeating: 0, count: 512)
                while true {
                    var peer = sockaddr_storage()
                    var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    let n = withUnsafeMutablePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            recvfrom(fd, &buffer, buffer.count, 0, $0, &peerLength)
                        }
                    }
                    if n <= 12 { return }
                    let asked = Array(buffer[12..<min(n, 12 + question.count)])
                    let known = asked == question
                    var reply: [UInt8] = [buffer[0], buffer[1], 0x81, known ? 0x80 : 0x83, 0, 1, 0, known ? 1 : 0]
                    reply += [0, 0, 0, 0] + Array(buffer[12..<n])
                    if known {
                        let length = 6 + targetName.count
                        reply += [0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60, UInt8(length >> 8), UInt8(length & 0xff)]
                        reply += [0, 0, 0, 10, UInt8(targetPort >> 8), UInt8(targetPort & 0xff)] + targetName
                    }
                    _ = withUnsafePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(fd, reply, reply.count, 0, $0, peerLength)
                        }
                    }
                }
            }.start()
        }

        deinit {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    @Test func aMemberBootstrapsFromSRVRecords() throws {
        let scratch = TemporaryDirectory()
        let client = freePort()
        let peer = freePort()
        let dns = OneRecordDNS(name: "_etcd-server._tcp.cluster.test", target: "127.0.0.1", targetPort: peer)
        let member = try BackgroundCommand(
            Paths.quorum,
            [
                "--name", "srv", "--data-dir", scratch.path + "/srv.quorum",
                "--listen-client-urls", "http://127.0.0.1:\(client)", "--advertise-client-urls",
                "http://127.0.0.1:\(client)", "--listen-peer-urls", "http://127.0.0.1:\(peer)",
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(peer)", "--discovery-srv", "cluster.test",
            ],
            environment: ["QUORUM_DNS_SERVER": "127.0.0.1:\(dns.port)"])
        defer { member.stop() }
        try member.waitFor(timeout: 60) { $0.contains("ready to serve client requests") }
        let list = try etcdctl("http://127.0.0.1:\(client)", ["member", "list"]).stdout
        #expect(list.contains("srv, http://127.0.0.1:\(peer)"), "\(list)")
        #expect(member.output.contains("got bootstrap from DNS for etcd-server"))

        // No record names this member: it does not start, as etcd.
        let stranger = try run(
            Paths.quorum,
            [
                "--name", "x", "--data-dir", scratch.path + "/x.quorum", "--initial-advertise-peer-urls",
                "http://127.0.0.1:\(freePort())", "--discovery-srv", "cluster.test",
            ],
            environment: ["QUORUM_DNS_SERVER": "127.0.0.1:\(dns.port)"])
        #expect(stranger.status == 2 && stranger.stderr.contains("cannot find local etcd member \"x\" in SRV records"))
    }
}
