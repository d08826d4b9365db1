import Foundation
import TestSupport
import Testing

/// etcd's command line: flags, ETCD_* variables, the YAML config file, and exit status 2 on bad flags.
@Suite(.ownThread) struct FlagTests {
    @Test func unknownAndMalformedFlagsExitWithStatus2() throws {
        let unknown = try run(Paths.quorum, ["--no-such-flag"])
        #expect(unknown.status == 2 && unknown.stderr.contains("flag provided but not defined: -no-such-flag"))
        let malformed = try run(Paths.quorum, ["--snapshot-count", "lots"])
        #expect(malformed.status == 2 && malformed.stderr.contains("invalid value \"lots\" for flag -snapshot-count"))
        let missing = try run(Paths.quorum, ["--name"])
        #expect(missing.status == 2 && missing.stderr.contains("flag needs an argument: -name"))
        let badURL = try run(Paths.quorum, ["--listen-client-urls", "tcp://nowhere"])
        #expect(badURL.status == 2 && badURL.stderr.contains("invalid URL"))
        let name = try run(Paths.quorum, ["--listen-client-urls", "http://example.com:2379"])
        #expect(
            name.status == 2 && name.stderr.contains("expected IP in URL for binding (http://example.com:2379)"),
            "\(name.stderr)")
        let timing = try run(Paths.quorum, ["--heartbeat-interval", "500", "--election-timeout", "1000"])
        #expect(timing.status == 2 && timing.stderr.contains("should be at least as 5 times as --heartbeat-interval"))
    }

    @Test func authFlagsAreValidatedAsEtcdNamesThem() throws {
        let cost = try run(Paths.quorum, ["--bcrypt-cost", "3"])
        #expect(cost.status == 2 && cost.stderr.contains("invalid bcrypt-cost"), "\(cost.stderr)")
        let token = try run(Paths.quorum, ["--auth-token", "magic"])
        #expect(token.status == 2 && token.stderr.contains("auth: invalid auth options"), "\(token.stderr)")
        let jwt = try run(Paths.quorum, ["--auth-token", "jwt,pub-key=/no/such/key,sign-method=RS256"])
        #expect(jwt.status == 2 && jwt.stderr.contains("auth: invalid auth options"), "\(jwt.stderr)")
        let ttl = try run(Paths.quorum, ["--auth-token-ttl", "0"])
        #expect(ttl.status == 2 && ttl.stderr.contains("--auth-token-ttl"), "\(ttl.stderr)")
        let fromEnvironment = try run(Paths.quorum, [], environment: ["ETCD_BCRYPT_COST": "99"])
        #expect(fromEnvironment.status == 2 && fromEnvironment.stderr.contains("invalid bcrypt-cost"))
        let help = try run(Paths.quorum, ["--help"])
        for flag in ["--auth-token", "--auth-token-ttl", "--bcrypt-cost"] {
            #expect(help.stdout.contains(flag) || help.stderr.contains(flag), "\(flag) in --help")
        }
    }

    @Test func aTakenPortStopsStartUpBeforeTheDataDirectoryIsTouched() throws {
        let scratch = TemporaryDirectory()
        let port = freePort()
        // Hold the port as another process would.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        #expect(bound == 0 && listen(fd, 1) == 0)
        let dataDir = scratch.path + "/member"
        let peer = freePort()
        let result = try run(
            Paths.quorum,
            [
                "--data-dir", dataDir, "--listen-client-urls", "http://127.0.0.1:\(port)",
                "--advertise-client-urls", "http://127.0.0.1:\(port)", "--listen-peer-urls", "http://127.0.0.1:\(peer)",
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(peer)",
                "--initial-cluster", "default=http://127.0.0.1:\(peer)",
            ])
        #expect(result.status == 1)
        #expect(
            result.stderr.contains("listen tcp 127.0.0.1:\(port): bind: address already in use"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dataDir))
    }

    @Test func electionTickAdvanceIsEtcdsBooleanFlag() throws {
        let bad = try run(Paths.quorum, ["--initial-election-tick-advance=sometimes"])
        #expect(
            bad.status == 2
                && bad.stderr.contains("invalid boolean value \"sometimes\" for flag -initial-election-tick-advance"))
        let help = try run(Paths.quorum, ["--help"])
        #expect(help.ok && help.stdout.contains("--initial-election-tick-advance"))
    }

    @Test func versionAndHelp() throws {
        let version = try run(Paths.quorum, ["--version"])
        #expect(version.ok && version.stdout.contains("quorum Version:") && version.stdout.contains("3.5.13"))
        let help = try run(Paths.quorum, ["--help"])
        #expect(help.ok && help.stdout.contains("--initial-cluster-token"))
    }

    @Test func environmentVariablesConfigureTheMember() async throws {
        let scratch = TemporaryDirectory()
        let port = freePort()
        let peer = freePort()
        let log = scratch.path + "/log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = try BackgroundCommand(
            Paths.quorum, [],
            environment: [
                "ETCD_NAME": "from-env", "ETCD_DATA_DIR": scratch.path + "/env.data",
                "ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:\(port)",
                "ETCD_ADVERTISE_CLIENT_URLS": "http://127.0.0.1:\(port)",
                "ETCD_LISTEN_PEER_URLS": "http://127.0.0.1:\(peer)",
                "ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://127.0.0.1:\(peer)",
                "ETCD_INITIAL_CLUSTER": "from-env=http://127.0.0.1:\(peer)",
            ])
        defer { process.stop() }
        try process.waitFor(timeout: 60) { $0.contains("ready to serve client requests") }
        let members = try etcdctl("http://127.0.0.1:\(port)", ["member", "list"])
        #expect(members.stdout.contains("from-env"))
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/env.data/member/wal"))
    }

    @Test func configFileReplacesFlags() throws {
        let scratch = TemporaryDirectory()
        let port = freePort()
        let peer = freePort()
        let config = """
            name: from-file
            data-dir: \(scratch.path)/file.data
            listen-client-urls: http://127.0.0.1:\(port)
            advertise-client-urls: http://127.0.0.1:\(port)
            listen-peer-urls: http://127.0.0.1:\(peer)
            initial-advertise-peer-urls: http://127.0.0.1:\(peer)
            initial-cluster: from-file=http://127.0.0.1:\(peer)
            initial-cluster-token: file-token
            snapshot-count: 5000
            heartbeat-interval: 100
            election-timeout: 1000
            quota-backend-bytes: 0
            auto-compaction-retention: "1"
            log-level: info
            """
        let path = scratch.path + "/quorum.yaml"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let process = try BackgroundCommand(Paths.quorum, ["--config-file", path, "--name", "ignored"])
        defer { process.stop() }
        try process.waitFor(timeout: 60) { $0.contains("ready to serve client requests") }
        #expect(try etcdctl("http://127.0.0.1:\(port)", ["member", "list"]).stdout.contains("from-file"))
        #expect(process.output.contains(#""msg":"published local member to cluster through raft""#))
    }

    @Test func milestonesAreStructuredJSONInEtcdsOrder() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        let lines = member.log.split(separator: "\n")
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(
                object?["level"] != nil && object?["ts"] != nil && object?["msg"] != nil, "not etcd-style JSON: \(line)"
            )
        }
        let messages = lines.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["msg"] as? String
        }
        let published = try #require(messages.firstIndex(of: "published local member to cluster through raft"))
        let ready = try #require(messages.firstIndex(of: "ready to serve client requests"))
        let capabilities = try #require(messages.firstIndex(of: "enabled capabilities for version"))
        #expect(published < ready && ready < capabilities)
    }
}
