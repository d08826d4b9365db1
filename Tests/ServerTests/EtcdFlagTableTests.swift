import Foundation
import TestSupport
import Testing

@testable import Server

/// Every flag of etcd 3.4.23 and 3.5.1, read from the real binaries' `--help` at test time (plus the flags their
/// `--help` does not list, each checked against the binary), is accepted by Quorum on the command line, as an
/// `ETCD_*` variable and as a YAML key, and is either implemented or documented as having no effect (and then
/// logged when given).
@Suite struct EtcdFlagTableTests {
    /// etcd's binaries: Debian's etcd 3.4 and etcd 3.5.1 (scripts/etcd35.sh; QUORUM_ETCD35_DIR).
    static let binaries: [(version: String, path: String)] = [
        (
            "3.4.23",
            ["/usr/bin/etcd", "/usr/local/bin/etcd"].first { FileManager.default.isExecutableFile(atPath: $0) }
                ?? "/usr/bin/etcd"
        ),
        ("3.5.1", (ProcessInfo.processInfo.environment["QUORUM_ETCD35_DIR"] ?? "/tmp/etcd-3.5.1") + "/etcd"),
    ]

    /// Flags etcd registers without listing them in `--help` (from etcdmain/config.go of each version); each is
    /// checked against the binary below, so the list cannot claim a flag the binary does not take.
    static let hidden: [String: [String]] = [
        "3.4.23": [
            "enable-grpc-gateway", "log-output", "unsafe-no-fsync", "experimental-enable-lease-checkpoint-persist",
        ] + EtcdFlags.legacyFlags,
        "3.5.1": [
            "enable-grpc-gateway", "raft-read-timeout", "raft-write-timeout", "client-cert-file", "client-key-file",
            "peer-client-cert-file", "peer-client-key-file", "experimental-downgrade-check-time",
            "experimental-memory-mlock",
        ] + EtcdFlags.legacyFlags,
    ]

    static func output(_ path: String, _ arguments: [String]) throws -> (status: Int32, text: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try spawn(process)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The flags a binary's `--help` lists (`  --name 'default'` lines).
    static func helpFlags(_ path: String) throws -> [String] {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestError("\(path) is missing: scripts/test.sh installs etcd 3.4 and fetches etcd 3.5.1")
        }
        let help = try output(path, ["--help"]).text
        var names: [String] = []
        for line in help.split(separator: "\n") where line.hasPrefix("  --") {
            let name = line.dropFirst(4).prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            if !name.isEmpty && !names.contains(String(name)) { names.append(String(name)) }
        }
        return names
    }

    struct TestError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// A value of the flag's type, for the three ways of giving it.
    static func sample(_ flag: EtcdFlag) -> (text: String, yaml: String) {
        switch flag.kind {
        case .bool: return flag.effect == .legacy ? ("true", "true") : ("false", "false")
        case .int, .uint: return ("7", "7")
        case .duration: return ("3s", "\"3s\"")
        case .string: return ("sample", "\"sample\"")
        }
    }

    static func etcdFlags() throws -> [(version: String, name: String)] {
        var all: [(String, String)] = []
        for (version, path) in binaries {
            let listed = try helpFlags(path)
            #expect(listed.count >= 70, "etcd \(version) --help listed only \(listed.count) flags")
            for name in listed + (hidden[version] ?? []) where !["version", "help", "h"].contains(name) {
                all.append((version, name))
            }
        }
        return all
    }

    @Test func theHiddenFlagsAreRealFlagsOfEachBinary() throws {
        for (version, path) in Self.binaries {
            for name in Self.hidden[version] ?? [] {
                // Go's flag package parses everything before --version is acted on: an unknown flag exits 2.
                let result = try Self.output(
                    path, ["--\(name)=\(name == "log-output" ? "stderr" : "1s")", "--version"])
                #expect(
                    !result.text.contains("flag provided but not defined"),
                    "etcd \(version) does not take --\(name): \(result.text.prefix(200))")
            }
        }
    }

    @Test func everyEtcdFlagIsAcceptedAsAFlagAVariableAndAYAMLKey() throws {
        var missing: [String] = []
        for (version, name) in try Self.etcdFlags() {
            guard let flag = EtcdFlags.byName[name] else {
                missing.append("\(name) (etcd \(version))")
                continue
            }
            let value = Self.sample(flag)
            // Command line, both spellings.
            let parsed = try EtcdFlags.parse(arguments: ["--\(name)=\(value.text)"]).0
            #expect(parsed.values[name] == value.text, "--\(name)")
            if flag.kind != .bool {
                let spaced = try EtcdFlags.parse(arguments: ["-\(name)", value.text]).0
                #expect(spaced.values[name] == value.text, "-\(name) value")
            }
            // ETCD_* variable.
            var fromEnvironment = EtcdFlags()
            try fromEnvironment.applyEnvironment([EtcdFlags.environmentName(of: name): value.text])
            #expect(fromEnvironment.values[name] == value.text, "\(EtcdFlags.environmentName(of: name))")
            #expect(
                fromEnvironment.notices.map(\.message) == ["recognized and used environment variable"],
                "\(EtcdFlags.environmentName(of: name)): \(fromEnvironment.notices)")
            // YAML key.
            let file = NSTemporaryDirectory() + "quorum-flag-\(getpid())-\(name).yaml"
            try "\(name): \(value.yaml)\n".write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let loaded = try EtcdFlags.load(configFile: file)
            #expect(loaded.values[name] == value.text, "YAML \(name): \(loaded.values)")
            #expect(loaded.notices.isEmpty, "YAML \(name): \(loaded.notices)")
            // Implemented, or logged as having no effect when given.
            switch flag.effect {
            case .implemented:
                break
            case .noEffect(let why):
                #expect(!why.isEmpty)
                let notices = parsed.ignoredFlagNotices().map(\.message)
                #expect(notices == ["flag --\(name) has no effect in Quorum: \(why)"], "\(notices)")
            case .legacy:
                let notices = parsed.ignoredFlagNotices().map(\.message)
                #expect(notices == ["flag \"-\(name)\" is no longer supported - ignoring."], "\(notices)")
            }
        }
        #expect(missing.isEmpty, "etcd flags Quorum does not accept: \(missing)")
    }

    @Test func aFlagWithNoEffectStillResolvesAndIsLogged() throws {
        for flag in EtcdFlags.table {
            guard case .noEffect = flag.effect else { continue }
            var value = Self.sample(flag).text
            switch flag.name {
            case "discovery-fallback": value = "exit"
            case "v2-deprecation": value = "gone"
            case "metrics": value = "extensive"
            default: break
            }
            let flags = EtcdFlags(values: [flag.name: value])
            _ = try flags.resolve()
            #expect(flags.ignoredFlagNotices().count == 1, "--\(flag.name)")
        }
    }

    @Test func unsupportedV2FeaturesAreRefusedWithAReason() throws {
        for (name, value, words) in [
            ("enable-v2", "true", "v3 API only"), ("experimental-enable-v2v3", "/v2", "v3 API only"),
            ("proxy", "on", "no v2 proxy"), ("discovery", "https://discovery.etcd.io/x", "v2 discovery service"),
        ] {
            #expect(throws: ConfigError.self, "--\(name)=\(value)") { try EtcdFlags(values: [name: value]).resolve() }
            do {
                _ = try EtcdFlags(values: [name: value]).resolve()
            } catch {
                #expect("\(error)".contains(words), "\(error)")
            }
        }
        // Their defaults, given explicitly (as kops and kubeadm do), are fine.
        _ = try EtcdFlags(values: ["enable-v2": "false", "proxy": "off"]).resolve()
    }

    @Test func environmentFollowsEtcdsRules() throws {
        var flags = try EtcdFlags.parse(arguments: ["--name", "cli"]).0
        #expect(throws: ConfigError.self) { try flags.applyEnvironment(["ETCD_NAME": "env"]) }
        do {
            try flags.applyEnvironment(["ETCD_NAME": "env"])
        } catch let error as ConfigError {
            #expect(error.exitStatus == 1)
            #expect(
                error.description
                    == "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag "
                    + "(either unset environment variable or disable flag)")
        }
        flags = EtcdFlags()
        try flags.applyEnvironment(["ETCD_FOO": "bar", "ETCD_DATA_DIR": "/d", "ETCDCTL_API": "3", "HOME": "/root"])
        #expect(flags.values == ["data-dir": "/d"])
        #expect(
            flags.notices.map(\.text) == [
                "recognized and used environment variable ETCD_DATA_DIR=/d",
                "unrecognized environment variable ETCD_FOO=bar",
            ])
        #expect(flags.notices[1].fields == ["environment-variable": "ETCD_FOO=bar"])
        var bad = EtcdFlags()
        #expect(throws: ConfigError.self) { try bad.applyEnvironment(["ETCD_SNAPSHOT_COUNT": "lots"]) }
    }

    @Test func yamlTakesEtcdsShapes() throws {
        let file = NSTemporaryDirectory() + "quorum-yaml-\(getpid()).yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try """
        name: y
        log-outputs: [stderr, /tmp/q.log]
        grpc-keepalive-min-time: 3000000000
        experimental-watch-progress-notify-interval: 2s
        enable-v2: false
        client-transport-security:
          client-cert-auth: true
          crl-file: /c.crl
        peer-transport-security:
          allowed-cn: m
          skip-client-san-verification: true
        no-such-key: 1
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let flags = try EtcdFlags.load(configFile: file)
        #expect(flags.values["log-outputs"] == "stderr,/tmp/q.log")
        #expect(flags.values["grpc-keepalive-min-time"] == "3000000000ns")
        #expect(flags.values["client-cert-auth"] == "true" && flags.values["client-crl-file"] == "/c.crl")
        #expect(flags.values["peer-cert-allowed-cn"] == "m")
        #expect(flags.values["experimental-peer-skip-client-san-verification"] == "true")
        #expect(flags.notices.map(\.text) == ["unrecognized config file key no-such-key in \(file)"])
        let config = try EtcdFlags(values: ["grpc-keepalive-min-time": "3000000000ns"]).resolve()
        #expect(config.keepalive.minTime == .seconds(3))
    }

    /// A mapping key that is a mapping or a list (`? ` complex keys) is refused with the line it is on; Yams trapped
    /// on it (config fuzz target, Tests/FuzzTests/Regressions/config/complex-mapping-key).
    @Test(arguments: ["socket-options:\n? reync: false\n", "name: m\n? [a, b]\n: c\n", "? {a: 1}\n: 2\n"])
    func aMappingKeyThatIsNotAPlainValueIsRefused(yaml: String) throws {
        let file = NSTemporaryDirectory() + "quorum-yaml-key-\(getpid()).yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        let error = #expect(throws: ConfigError.self) { try EtcdFlags.load(configFile: file) }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("a mapping key must be a plain value"), "\(text)")
    }

    /// A YAML 1.1 base-60 integer that overflows made Yams trap multiplying it (config fuzz target,
    /// Tests/FuzzTests/Regressions/config/sexagesimal-overflow); values are now read as decimal numbers or strings,
    /// and the flag's own check judges them.
    @Test func aNumberYAMLWouldReadInBase60IsAStringTheFlagRefuses() throws {
        let file = NSTemporaryDirectory() + "quorum-yaml-60-\(getpid()).yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "1:1:1:11:1:1:1:1:1:1:1:0\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try EtcdFlags.load(configFile: file) }
        try "snapshot-count: 1:1:1:11:1:1:1:1:1:1:1:0\nmax-wals: 3\nenable-v2: no\n".write(
            toFile: file, atomically: true, encoding: .utf8)
        let error = #expect(throws: ConfigError.self) { try EtcdFlags.load(configFile: file) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("snapshot-count"))
        try "max-wals: 3\nenable-v2: no\nsnapshot-count: 10000\n".write(toFile: file, atomically: true, encoding: .utf8)
        let flags = try EtcdFlags.load(configFile: file)
        #expect(flags.values["max-wals"] == "3" && flags.values["snapshot-count"] == "10000")
        #expect(flags.values["enable-v2"] == "false")
    }

    @Test func implementedFlagsReachTheConfiguration() throws {
        let config = try EtcdFlags(values: [
            "wal-dir": "/w", "max-wals": "2", "unsafe-no-fsync": "true", "experimental-compaction-batch-limit": "10",
            "experimental-watch-progress-notify-interval": "1s", "experimental-enable-lease-checkpoint": "true",
            "experimental-lease-checkpoint-interval": "2s", "grpc-keepalive-min-time": "1s",
            "grpc-keepalive-interval": "3s", "grpc-keepalive-timeout": "4s", "socket-reuse-port": "true",
            "socket-reuse-address": "true", "enable-pprof": "true", "max-concurrent-streams": "9",
            "experimental-warning-apply-duration": "5ms", "value-cache-bytes": "1024",
        ]).resolve()
        #expect(config.node.walDirectory == "/w" && config.node.maxWALFiles == 2 && !config.node.fsync)
        #expect(config.node.compactionBatchLimit == 10)
        #expect(config.node.valueCacheBytes == 1024)
        #expect(config.node.watchProgressNotifyNanoseconds == 1_000_000_000)
        #expect(config.node.leaseCheckpointNanoseconds == 2_000_000_000)
        #expect(config.node.warningApplyNanoseconds == 5_000_000)
        #expect(config.keepalive.minTime == .seconds(1) && config.keepalive.interval == .seconds(3))
        #expect(config.keepalive.timeout == .seconds(4))
        #expect(config.socketOptions.reusePort && config.socketOptions.reuseAddress && config.enablePprof)
        #expect(config.maxConcurrentStreams == 9)
        let defaults = try EtcdFlags().resolve()
        #expect(defaults.node.walDirectory == "default.quorum/member/wal" && defaults.node.maxWALFiles == 5)
        #expect(defaults.node.leaseCheckpointNanoseconds == 0 && defaults.node.fsync)
        #expect(defaults.node.valueCacheBytes == 256 << 20)
        #expect(throws: ConfigError.self) { try EtcdFlags(values: ["value-cache-bytes": "-1"]).resolve() }
        let logging = try EtcdFlags(values: ["logger": "capnslog", "log-outputs": "stdout,/tmp/a", "debug": "true"])
            .logSettings()
        #expect(logging.format == .capnslog && logging.outputs == ["stdout", "/tmp/a"] && logging.level == .debug)
        #expect(throws: ConfigError.self) { try EtcdFlags(values: ["logger": "glog"]).logSettings() }
        #expect(throws: ConfigError.self) {
            try EtcdFlags(values: ["experimental-enable-lease-checkpoint-persist": "true"]).resolve()
        }
    }
}

/// `--discovery-srv`: the initial cluster from DNS SRV records, through a fake resolver and through the real DNS
/// client against a small DNS server in the test.
@Suite struct SRVDiscoveryTests {
    struct FakeResolver: SRVResolver {
        var records: [String: [SRVRecord]]
        func lookupSRV(_ name: String) throws -> [SRVRecord] { records[name] ?? [] }
    }

    @Test func theClusterComesFromTheRecordsWithThisMemberNamed() throws {
        let resolver = FakeResolver(records: [
            "_etcd-server._tcp.example.test": [
                SRVRecord(port: 2380, target: "127.0.0.1."), SRVRecord(port: 2480, target: "127.0.0.1."),
                SRVRecord(port: 2580, target: "127.0.0.1."),
            ]
        ])
        let flags = EtcdFlags(values: [
            "name": "b", "discovery-srv": "example.test", "initial-advertise-peer-urls": "http://127.0.0.1:2480",
        ])
        let config = try flags.resolve(srvResolver: resolver)
        let cluster = config.node.initialCluster.map { "\($0.name)=\($0.peerURLs.joined(separator: ","))" }
        #expect(cluster == ["0=http://127.0.0.1:2380", "b=http://127.0.0.1:2480", "1=http://127.0.0.1:2580"])
        // A member the records do not name cannot start, as in etcd.
        let stranger = EtcdFlags(values: [
            "name": "z", "discovery-srv": "example.test", "initial-advertise-peer-urls": "http://127.0.0.1:2999",
        ])
        #expect(throws: ConfigError.self) { try stranger.resolve(srvResolver: resolver) }
        // With --initial-cluster as well: etcd's conflict.
        let both = EtcdFlags(values: ["discovery-srv": "example.test", "initial-cluster": "default=http://a:1"])
        #expect(throws: ConfigError.self) { try both.resolve(srvResolver: resolver) }
    }

    @Test func serviceNameSuffixAndTLSRecords() throws {
        let resolver = FakeResolver(records: [
            "_etcd-server-ssl-prod._tcp.example.test": [SRVRecord(port: 2380, target: "127.0.0.1.")]
        ])
        let found = try SRVDiscovery.initialCluster(
            domain: "example.test", serviceName: "prod", name: "a", advertisePeerURLs: ["https://127.0.0.1:2380"],
            resolver: resolver)
        #expect(found == ["a=https://127.0.0.1:2380"])
    }

    /// A DNS server on a loopback UDP port answering SRV queries: the wire client's real peer.
    final class TinyDNSServer: @unchecked Sendable {
        let fd: Int32
        let port: UInt16
        private var thread: Thread?

        init(records: [String: [SRVRecord]]) throws {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            self.fd = fd
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            port = UInt16(bigEndian: address.sin_port)
            let thread = Thread {
                var buffer = [UInt8](repeating: 0, count: 512)
                while true {
                    var peer = sockaddr_storage()
                    var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    let n = withUnsafeMutablePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            recvfrom(fd, &buffer, buffer.count, 0, $0, &peerLength)
                        }
                    }
                    if n <= 0 { return }
                    let query = Array(buffer[0..<n])
                    guard let parsed = try? DNSWire.readName(query, at: 12) else { continue }
                    let (name, end) = parsed
                    let answers = records[String(name.dropLast())]
                    // Header: same id, response + RD + RA, NXDOMAIN when unknown.
                    var reply: [UInt8] = [query[0], query[1], 0x81, answers == nil ? 0x83 : 0x80, 0, 1]
                    let count = answers?.count ?? 0
                    reply += [UInt8(count >> 8), UInt8(count & 0xff), 0, 0, 0, 0]
                    reply += query[12..<(end + 4)]
                    for record in answers ?? [] {
                        reply += [0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60]  // pointer to the question name, SRV, IN, TTL
                        let target = DNSWire.encodeName(record.target)
                        let length = 6 + target.count
                        reply += [UInt8(length >> 8), UInt8(length & 0xff)]
                        for value in [record.priority, record.weight, record.port] {
                            reply += [UInt8(value >> 8), UInt8(value & 0xff)]
                        }
                        reply += target
                    }
                    _ = withUnsafePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(fd, reply, reply.count, 0, $0, peerLength)
                        }
                    }
                }
            }
            thread.start()
            self.thread = thread
        }

        func stop() {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    @Test func theDNSClientReadsSRVAnswersFromARealServer() throws {
        let server = try TinyDNSServer(records: [
            "_etcd-server._tcp.cluster.test": [
                SRVRecord(priority: 0, weight: 10, port: 2380, target: "127.0.0.1."),
                SRVRecord(priority: 0, weight: 10, port: 2480, target: "localhost."),
            ]
        ])
        defer { server.stop() }
        let resolver = SystemSRVResolver(servers: [("127.0.0.1", server.port)])
        let records = try resolver.lookupSRV("_etcd-server._tcp.cluster.test")
        #expect(Set(records.map(\.port)) == [2380, 2480])
        #expect(Set(records.map(\.target)) == ["127.0.0.1.", "localhost."])
        #expect(throws: (any Error).self) { try resolver.lookupSRV("_etcd-server._tcp.nowhere.test") }
        let flags = EtcdFlags(values: [
            "name": "a", "discovery-srv": "cluster.test", "initial-advertise-peer-urls": "http://127.0.0.1:2380",
        ])
        let config = try flags.resolve(srvResolver: resolver)
        #expect(config.node.initialCluster.map(\.name).sorted() == ["0", "a"])
    }
}
