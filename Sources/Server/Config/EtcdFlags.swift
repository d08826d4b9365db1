import Auth
import Foundation
import GoSyntax
import Logging
import Node
import PKI
import Yams

/// Something worth telling the operator while reading the configuration, logged once logging is set up: etcd's own
/// words in each of its formats (zap's message and fields, capnslog's line and package).
public struct ConfigNotice: Sendable, Equatable {
    public enum Level: Sendable, Equatable { case info, warning }
    public var level: Level
    /// zap's `msg`.
    public var message: String
    /// zap's fields.
    public var fields: [String: String]
    /// capnslog's package (`pkg/flags`, `etcdmain`) and text.
    public var package: String
    public var text: String

    public init(_ level: Level, _ message: String, fields: [String: String] = [:], package: String, text: String) {
        self.level = level
        self.message = message
        self.fields = fields
        self.package = package
        self.text = text
    }
}

/// etcd's configuration surface: every flag, its `ETCD_*` environment variable and its config-file key, with
/// etcd's precedence — with `--config-file` (or `ETCD_CONFIG_FILE`) the file alone decides; otherwise a flag or its
/// environment variable, never both (etcd stops on the conflict), over the default.
public struct EtcdFlags: Sendable {
    /// Values as given, by flag name.
    public var values: [String: String] = [:]
    /// Flags given on the command line (an `ETCD_*` variable for one of them is a conflict).
    public var fromCommandLine: Set<String> = []
    /// What to log once logging is set up, in order.
    public var notices: [ConfigNotice] = []

    public init(values: [String: String] = [:]) {
        self.values = values
    }

    /// Parses command-line arguments Go-style: `--flag value`, `--flag=value`, `-flag value`, `-flag=value`,
    /// and bare boolean flags (a boolean takes a value only with `=`, as in Go). Unknown flags and missing values
    /// throw `ConfigError`, with Go's words.
    public static func parse(arguments: [String]) throws -> (EtcdFlags, wantsHelp: Bool, wantsVersion: Bool) {
        var flags = EtcdFlags()
        var i = 0
        var help = false
        var version = false
        while i < arguments.count {
            let argument = arguments[i]
            i += 1
            if argument == "--" { break }
            guard argument.hasPrefix("-"), argument.count > 1 else {
                throw ConfigError("'\(argument)' is not a valid flag")
            }
            var body = argument.dropFirst(argument.hasPrefix("--") ? 2 : 1)
            var value: String? = nil
            if let eq = body.firstIndex(of: "=") {
                value = String(body[body.index(after: eq)...])
                body = body[..<eq]
            }
            let name = String(body)
            if name == "help" || name == "h" {
                help = true
                continue
            }
            if name == "version" {
                if let value, try !parseBool(value, flag: name) { continue }
                version = true
                continue
            }
            guard let flag = byName[name] else { throw ConfigError("flag provided but not defined: -\(name)") }
            if value == nil {
                if flag.kind == .bool {
                    value = "true"
                } else {
                    guard i < arguments.count else { throw ConfigError("flag needs an argument: -\(name)") }
                    value = arguments[i]
                    i += 1
                }
            }
            try check(value!, for: flag, source: "flag -\(name)")
            flags.values[name] = value
            flags.fromCommandLine.insert(name)
        }
        return (flags, help, version)
    }

    /// Go's `strconv.ParseBool` (plus yes/no, which Quorum always accepted).
    static func parseBool(_ text: String, flag: String) throws -> Bool {
        switch text {
        case "1", "t", "T", "true", "TRUE", "True", "yes": return true
        case "0", "f", "F", "false", "FALSE", "False", "no": return false
        default: throw ConfigError("invalid boolean value \"\(text)\" for flag -\(flag)")
        }
    }

    /// Refuses a value Go's flag package would refuse for the flag's type.
    static func check(_ value: String, for flag: EtcdFlag, source: String) throws {
        let valid: Bool
        switch flag.kind {
        case .string: valid = true
        case .bool:
            if flag.effect == .legacy { return }
            _ = try parseBool(value, flag: flag.name)
            valid = true
        case .int: valid = Int64(value) != nil
        case .uint: valid = UInt64(value) != nil
        case .duration: valid = GoDuration.parse(value) != nil
        }
        if !valid { throw ConfigError("invalid value \"\(value)\" for \(source): parse error") }
    }

    /// The `ETCD_*` variable of a flag: `ETCD_DATA_DIR` for `--data-dir`.
    public static func environmentName(of flag: String) -> String {
        "ETCD_" + flag.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// Takes flags not given on the command line from `ETCD_*` variables, as etcd's `flags.SetFlagsFromEnv` does:
    /// each one used is logged ("recognized and used environment variable"), a variable no flag has is warned
    /// about ("unrecognized environment variable"), and a variable for a flag also given on the command line stops
    /// start-up ("conflicting environment variable ... is shadowed by corresponding command-line flag").
    public mutating func applyEnvironment(_ environment: [String: String]) throws {
        for (key, value) in environment.sorted(by: { $0.key < $1.key }) where key.hasPrefix("ETCD_") {
            let name = key.dropFirst(5).lowercased().replacingOccurrences(of: "_", with: "-")
            if let flag = Self.byName[name], Self.environmentName(of: name) == key {
                if fromCommandLine.contains(name) {
                    throw ConfigError(
                        "conflicting environment variable \"\(key)\" is shadowed by corresponding command-line flag "
                            + "(either unset environment variable or disable flag)", exitStatus: 1)
                }
                if !value.isEmpty {
                    do {
                        try Self.check(value, for: flag, source: key)
                    } catch let error as ConfigError {
                        throw ConfigError(error.description, exitStatus: 1)
                    }
                    values[name] = value
                    notices.append(
                        ConfigNotice(
                            .info, "recognized and used environment variable",
                            fields: ["variable-name": key, "variable-value": value], package: "pkg/flags",
                            text: "recognized and used environment variable \(key)=\(value)"))
                    continue
                }
            }
            if key == "ETCD_VERSION" {
                notices.append(
                    ConfigNotice(
                        .warning, "cannot set special environment variable", fields: ["key": key, "value": value],
                        package: "pkg/flags", text: "cannot set special environment variable \(key)=\(value)"))
                continue
            }
            notices.append(
                ConfigNotice(
                    .warning, "unrecognized environment variable", fields: ["environment-variable": "\(key)=\(value)"],
                    package: "pkg/flags", text: "unrecognized environment variable \(key)=\(value)"))
        }
    }

    /// Keys of the `client-transport-security` and `peer-transport-security` sections, and the flags they set
    /// (without the `peer-` prefix).
    static let securityKeys: [String: String] = [
        "cert-file": "cert-file", "key-file": "key-file", "client-cert-file": "client-cert-file",
        "client-key-file": "client-key-file", "client-cert-auth": "client-cert-auth",
        "trusted-ca-file": "trusted-ca-file", "auto-tls": "auto-tls", "crl-file": "crl-file",
        "allowed-cn": "cert-allowed-cn", "allowed-hostname": "cert-allowed-hostname",
        "skip-client-san-verification": "skip-client-san-verification",
    ]

    /// A mapping key that is itself a mapping or a list (YAML's `? ` complex keys), anywhere in the document. Yams
    /// traps on one when it builds dictionaries (its keys must be strings): found by the config fuzz target, a
    /// config file of `socket-options:` followed by `? reync: false` stopped the member at start-up.
    static func firstKeyThatIsNotAScalar(in node: Yams.Node) -> Yams.Node? {
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                guard case .scalar = key else { return key }
                if let found = firstKeyThatIsNotAScalar(in: value) { return found }
            }
        case .sequence(let sequence):
            for element in sequence {
                if let found = firstKeyThatIsNotAScalar(in: element) { return found }
            }
        case .scalar, .alias:
            break
        }
        return nil
    }

    /// The document as dictionaries, arrays, strings, numbers, booleans and nulls, converted here rather than by
    /// Yams' constructors: those trap on input a config file can hold. A YAML 1.1 base-60 integer that overflows
    /// (`1:1:1:11:1:1:1:1:1:1:1:0`, the config fuzz target) trapped in Yams' multiplication. Integers and floats are
    /// read as decimal numbers only; anything else stays a string, which the flag's own check then judges.
    static func plainValue(_ node: Yams.Node) -> Any {
        switch node {
        case .scalar(let scalar):
            let text = scalar.string
            switch Yams.Resolver.default.resolveTag(of: node) {
            case .null: return NSNull()
            case .bool: return ["true", "yes", "on", "y"].contains(text.lowercased())
            case .int: return Int(text) ?? text
            case .float: return Double(text) ?? text
            default: return text
            }
        case .mapping(let mapping):
            var dictionary: [String: Any] = [:]
            for (key, value) in mapping {
                // Keys are scalars (`firstKeyThatIsNotAScalar`); a repeated key keeps its last value, as Yams did.
                if case .scalar(let name) = key { dictionary[name.string] = plainValue(value) }
            }
            return dictionary
        case .sequence(let sequence):
            return sequence.map(plainValue)
        case .alias:
            return NSNull()
        }
    }

    /// Loads etcd's YAML configuration file: the flags' names as keys, `client-transport-security` and
    /// `peer-transport-security` sections, lists for list values (`log-outputs`, `cipher-suites`), durations as Go
    /// strings or (as etcd's file holds them) integer nanoseconds. The file replaces flags and environment entirely.
    /// A key etcd does not know is warned about rather than silently dropped.
    public static func load(configFile path: String) throws -> EtcdFlags {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError("cannot read config file \(path)")
        }
        let root: Yams.Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigError("config file \(path): \(error)")
        }
        guard let root else { return EtcdFlags() }
        if let key = Self.firstKeyThatIsNotAScalar(in: root) {
            throw ConfigError(
                "config file \(path): line \(key.mark?.line ?? 0): a mapping key must be a plain value, not a "
                    + "mapping or a list")
        }
        let parsed: Any? = Self.plainValue(root)
        guard let document = parsed as? [String: Any] else {
            throw ConfigError("config file \(path) is not a YAML mapping")
        }
        var flags = EtcdFlags()
        func unrecognized(_ key: String) {
            flags.notices.append(
                ConfigNotice(
                    .warning, "unrecognized config file key", fields: ["key": key, "path": path], package: "etcdmain",
                    text: "unrecognized config file key \(key) in \(path)"))
        }
        func put(_ name: String, _ raw: Any, key: String) throws {
            guard let flag = byName[name] else { return unrecognized(key) }
            let value: String
            switch raw {
            case let list as [Any]: value = list.map { "\($0)" }.joined(separator: ",")
            case let b as Bool: value = b ? "true" : "false"
            case let n as Int where flag.kind == .duration: value = n == 0 ? "0" : "\(n)ns"
            default: value = "\(raw)"
            }
            try check(value, for: flag, source: "config file key \(key)")
            flags.values[name] = value
        }
        for (key, raw) in document.sorted(by: { $0.key < $1.key }) {
            if raw is NSNull { continue }
            switch key {
            case "client-transport-security", "peer-transport-security":
                guard let section = raw as? [String: Any] else {
                    throw ConfigError("config file \(path): \(key) must be a mapping")
                }
                let peer = key.hasPrefix("peer")
                for (sub, value) in section.sorted(by: { $0.key < $1.key }) where !(value is NSNull) {
                    guard var name = securityKeys[sub] else {
                        unrecognized("\(key).\(sub)")
                        continue
                    }
                    if peer {
                        name =
                            name == "skip-client-san-verification"
                            ? "experimental-peer-skip-client-san-verification" : "peer-" + name
                    } else if name == "crl-file" {
                        name = "client-crl-file"
                    } else if name == "cert-allowed-hostname" {
                        name = "client-cert-allowed-hostname"
                    } else if name == "cert-allowed-cn" || name == "skip-client-san-verification" {
                        unrecognized("\(key).\(sub)")
                        continue
                    }
                    try put(name, value, key: "\(key).\(sub)")
                }
            case "socket-options":
                guard let section = raw as? [String: Any] else {
                    throw ConfigError("config file \(path): \(key) must be a mapping")
                }
                for (sub, value) in section.sorted(by: { $0.key < $1.key }) {
                    switch sub {
                    case "reuse-port": try put("socket-reuse-port", value, key: "\(key).\(sub)")
                    case "reuse-address": try put("socket-reuse-address", value, key: "\(key).\(sub)")
                    default: unrecognized("\(key).\(sub)")
                    }
                }
            default:
                try put(key, raw, key: key)
            }
        }
        return flags
    }

    // MARK: Resolution

    func string(_ name: String) -> String? {
        guard let v = values[name], !v.isEmpty else { return nil }
        return v
    }

    func bool(_ name: String) throws -> Bool {
        guard let v = values[name] else { return false }
        if v.isEmpty { return true }
        return try Self.parseBool(v, flag: name)
    }

    func duration(_ name: String, default value: Duration) throws -> Duration {
        guard let text = string(name) else { return value }
        guard let parsed = GoDuration.parse(text) else {
            throw ConfigError("invalid value \"\(text)\" for flag -\(name): parse error")
        }
        return parsed
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }

    /// One line per flag given that has no effect in Quorum (etcd 2's flags with etcd's own warning), to log at
    /// start: nothing given is silently ignored.
    public func ignoredFlagNotices() -> [ConfigNotice] {
        Self.table.compactMap { flag -> ConfigNotice? in
            guard values[flag.name] != nil else { return nil }
            switch flag.effect {
            case .implemented:
                return nil
            case .noEffect(let why):
                let text = "flag --\(flag.name) has no effect in Quorum: \(why)"
                return ConfigNotice(.warning, text, fields: [:], package: "etcdmain", text: text)
            case .legacy:
                let text = "flag \"-\(flag.name)\" is no longer supported - ignoring."
                return ConfigNotice(.warning, text, fields: [:], package: "pkg/flags", text: text)
            }
        }
    }

    /// `--logger`, `--log-outputs` (or 3.4's `--log-output`), `--log-level` (or 3.4's `--debug`).
    public func logSettings() throws -> LogSettings {
        var settings = LogSettings()
        switch string("logger") ?? "zap" {
        case "zap": settings.format = .zap
        case "capnslog": settings.format = .capnslog
        case let other:
            throw ConfigError("unknown logger option \"\(other)\" (use --logger=zap or --logger=capnslog)")
        }
        let outputs = string("log-outputs") ?? string("log-output") ?? "default"
        settings.outputs = outputs.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        if settings.outputs.isEmpty { settings.outputs = ["default"] }
        if settings.outputs.count > 1 && settings.outputs.contains("default") {
            throw ConfigError("multi logoutput for \"default\" is not supported yet")
        }
        settings.level = try logLevel()
        return settings
    }

    func integer(_ name: String, default value: Int64) throws -> Int64 {
        guard let v = string(name) else { return value }
        guard let n = Int64(v) else { throw ConfigError("invalid value \"\(v)\" for flag -\(name): parse error") }
        return n
    }

    func urls(_ name: String, default value: String) throws -> [String] {
        (string(name) ?? value).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    /// `--backup-*`: scheduled backups, when `--backup-dir` is given.
    func backupSettings() throws -> BackupSettings? {
        guard let destination = string("backup-dir") else {
            for flag in ["backup-interval", "backup-s3-endpoint", "backup-retention-hourly", "backup-retention-daily"]
            where string(flag) != nil {
                throw ConfigError("--\(flag) needs --backup-dir")
            }
            return nil
        }
        func duration(_ name: String, default value: TimeInterval) throws -> TimeInterval {
            guard let text = string(name) else { return value }
            if text == "0" { return 0 }
            guard let parsed = GoDuration.parse(text), parsed >= .zero else {
                throw ConfigError(
                    "invalid value \"\(text)\" for flag -\(name): expected a duration such as 15m or 168h")
            }
            return Double(parsed.components.seconds) + Double(parsed.components.attoseconds) / 1e18
        }
        var settings = BackupSettings(destination: destination)
        settings.interval = try duration("backup-interval", default: settings.interval)
        settings.hourlyRetention = try duration("backup-retention-hourly", default: settings.hourlyRetention)
        settings.dailyRetention = try duration("backup-retention-daily", default: settings.dailyRetention)
        settings.s3Endpoint = string("backup-s3-endpoint")
        return settings
    }

    /// A URL to listen on: as etcd, an IP address or `localhost`, never a name to look up.
    static func bindURL(_ text: String) throws -> ListenURL {
        let url = try ListenURL(text)
        if url.unixPath != nil { return url }
        var v4 = in_addr()
        var v6 = in6_addr()
        guard
            url.host == "localhost" || inet_pton(AF_INET, url.host, &v4) == 1 || inet_pton(AF_INET6, url.host, &v6) == 1
        else { throw ConfigError("expected IP in URL for binding (\(text))") }
        return url
    }

    /// Builds the server configuration, validating as etcd does. `srvResolver` answers `--discovery-srv`'s DNS
    /// queries (the system's resolver unless a test gives its own).
    public func resolve(srvResolver: any SRVResolver = SystemSRVResolver()) throws -> ServerConfig {
        var config = ServerConfig()
        var node = NodeConfig()
        node.name = string("name") ?? "default"
        node.dataDir = string("data-dir") ?? "\(node.name).quorum"
        let listenClient = try urls("listen-client-urls", default: "http://127.0.0.1:2379")
        let listenPeer = try urls("listen-peer-urls", default: "http://127.0.0.1:2380")
        config.listenClientURLs = try listenClient.map(Self.bindURL)
        config.listenPeerURLs = try listenPeer.map(Self.bindURL)
        config.listenMetricsURLs = try urls("listen-metrics-urls", default: "").map(Self.bindURL)
        node.advertiseClientURLs = try urls("advertise-client-urls", default: listenClient.joined(separator: ","))
        node.advertisePeerURLs = try urls("initial-advertise-peer-urls", default: "http://127.0.0.1:2380")
        for url in node.advertiseClientURLs + node.advertisePeerURLs { _ = try ListenURL(url) }
        let defaultCluster = node.advertisePeerURLs.map { "\(node.name)=\($0)" }.joined(separator: ",")
        try refuseUnsupported()
        let bootstrapFlags = ["initial-cluster", "discovery", "discovery-srv"].filter { string($0) != nil }
        if bootstrapFlags.count > 1 {
            throw ConfigError(
                "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or "
                    + "\"discovery-srv\"")
        }
        if let domain = string("discovery-srv") {
            let found = try SRVDiscovery.initialCluster(
                domain: domain, serviceName: string("discovery-srv-name"), name: node.name,
                advertisePeerURLs: node.advertisePeerURLs, resolver: srvResolver)
            for member in found {
                config.notices.append(
                    ConfigNotice(
                        .info, "got bootstrap from DNS for etcd-server", fields: ["node": member], package: "embed",
                        text: "got bootstrap from DNS for etcd-server at \(member)"))
            }
            node.initialCluster = try Self.parseInitialCluster(found.joined(separator: ","))
            guard node.initialCluster.contains(where: { $0.name == node.name }) else {
                throw ConfigError("cannot find local etcd member \"\(node.name)\" in SRV records")
            }
        } else {
            node.initialCluster = try Self.parseInitialCluster(string("initial-cluster") ?? defaultCluster)
        }
        switch string("initial-cluster-state") ?? "new" {
        case "new": node.initialClusterState = .new
        case "existing": node.initialClusterState = .existing
        case let other:
            throw ConfigError(
                "invalid value \"\(other)\" for flag -initial-cluster-state: valid values are \"new\", \"existing\"")
        }
        node.initialClusterToken = string("initial-cluster-token") ?? "etcd-cluster"
        node.snapshotCount = UInt64(max(1, try integer("snapshot-count", default: 100_000)))
        node.forceNewCluster = try bool("force-new-cluster")
        config.backup = try backupSettings()
        node.heartbeatMilliseconds = Int(try integer("heartbeat-interval", default: 100))
        node.electionMilliseconds = Int(try integer("election-timeout", default: 1000))
        if node.heartbeatMilliseconds <= 0 { throw ConfigError("--heartbeat-interval must be positive") }
        if 5 * node.heartbeatMilliseconds > node.electionMilliseconds {
            throw ConfigError(
                "--election-timeout[\(node.electionMilliseconds)ms] should be at least as 5 times as --heartbeat-interval[\(node.heartbeatMilliseconds)ms]"
            )
        }
        if node.electionMilliseconds > 50_000 {
            throw ConfigError(
                "--election-timeout[\(node.electionMilliseconds)ms] is too long, and should be set less than 50000ms")
        }
        let quota = try integer("quota-backend-bytes", default: 0)
        if quota < 0 { throw ConfigError("--quota-backend-bytes must not be negative") }
        node.quotaBackendBytes = quota == 0 ? 2 << 30 : quota
        let valueCache = try integer("value-cache-bytes", default: Int64(NodeConfig().valueCacheBytes))
        if valueCache < 0 { throw ConfigError("--value-cache-bytes must not be negative") }
        node.valueCacheBytes = Int(valueCache)
        node.maxRequestBytes = Int(try integer("max-request-bytes", default: 1_572_864))
        node.maxTxnOps = Int(try integer("max-txn-ops", default: 128))
        if node.maxRequestBytes <= 0 || node.maxTxnOps <= 0 {
            throw ConfigError("--max-request-bytes and --max-txn-ops must be positive")
        }
        config.autoCompactionMode = string("auto-compaction-mode") ?? "periodic"
        guard ["periodic", "revision"].contains(config.autoCompactionMode) else {
            throw ConfigError("unknown auto-compaction-mode \"\(config.autoCompactionMode)\"")
        }
        config.autoCompactionRetention = string("auto-compaction-retention") ?? "0"
        if config.autoCompactionMode == "revision" {
            guard Int64(config.autoCompactionRetention) != nil else {
                throw ConfigError(
                    "invalid auto-compaction-retention \"\(config.autoCompactionRetention)\" for revision mode")
            }
        } else if Double(config.autoCompactionRetention) == nil
            && GoDuration.parse(config.autoCompactionRetention) == nil
        {
            throw ConfigError("invalid auto-compaction-retention \"\(config.autoCompactionRetention)\"")
        }
        _ = try logSettings()
        node.strictReconfigCheck = values["strict-reconfig-check"] == nil ? true : try bool("strict-reconfig-check")
        node.initialElectionTickAdvance =
            values["initial-election-tick-advance"] == nil ? true : try bool("initial-election-tick-advance")
        node.snapshotCatchUpEntries = UInt64(
            max(1, try integer("experimental-snapshot-catchup-entries", default: 5000)))
        config.initialCorruptCheck = try bool("experimental-initial-corrupt-check")
        if let text = string("experimental-corrupt-check-time") {
            guard let interval = GoDuration.parse(text) else {
                throw ConfigError("invalid value \"\(text)\" for flag -experimental-corrupt-check-time")
            }
            config.corruptCheckInterval = interval
        }
        node.authToken = string("auth-token") ?? "simple"
        let ttl = try integer("auth-token-ttl", default: 300)
        guard ttl > 0 else { throw ConfigError("--auth-token-ttl must be positive") }
        node.authTokenTTL = .seconds(ttl)
        let cost = try integer("bcrypt-cost", default: Int64(Bcrypt.defaultCost))
        guard (Int64(Bcrypt.minimumCost)...Int64(Bcrypt.maximumCost)).contains(cost) else {
            throw ConfigError(
                "invalid bcrypt-cost: should be between \(Bcrypt.minimumCost) and \(Bcrypt.maximumCost), got \(cost)")
        }
        node.bcryptCost = Int(cost)
        // The token options and their key files are checked now, before anything starts.
        do {
            _ = try makeTokenProvider(
                authToken: node.authToken, simpleTokenTTL: node.authTokenTTL,
                readFile: { path in Array(try Data(contentsOf: URL(fileURLWithPath: path))) })
        } catch {
            throw ConfigError("--auth-token: \(error)")
        }
        node.walDir = string("wal-dir")
        node.maxWALFiles = Int(try integer("max-wals", default: 5))
        node.fsync = !(try bool("unsafe-no-fsync"))
        let batch = try integer("experimental-compaction-batch-limit", default: 1000)
        node.compactionBatchLimit = batch > 0 ? Int(batch) : 1000
        let progress = try duration("experimental-watch-progress-notify-interval", default: .seconds(600))
        if progress <= .zero {
            throw ConfigError("--experimental-watch-progress-notify-interval must be >0 (set to \(progress))")
        }
        node.watchProgressNotifyNanoseconds = Self.nanoseconds(progress)
        let checkpoints = try bool("experimental-enable-lease-checkpoint")
        if try bool("experimental-enable-lease-checkpoint-persist") && !checkpoints {
            throw ConfigError(
                "experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint")
        }
        let checkpointInterval = try duration("experimental-lease-checkpoint-interval", default: .seconds(300))
        if checkpoints {
            guard checkpointInterval > .zero else {
                throw ConfigError("--experimental-lease-checkpoint-interval must be positive")
            }
            node.leaseCheckpointNanoseconds = Self.nanoseconds(checkpointInterval)
        }
        node.warningApplyNanoseconds = Self.nanoseconds(
            try duration("experimental-warning-apply-duration", default: .milliseconds(100)))
        config.keepalive.minTime = try duration("grpc-keepalive-min-time", default: config.keepalive.minTime)
        config.keepalive.interval = try duration("grpc-keepalive-interval", default: config.keepalive.interval)
        config.keepalive.timeout = try duration("grpc-keepalive-timeout", default: config.keepalive.timeout)
        let streams = try integer("max-concurrent-streams", default: Int64(UInt32.max))
        config.maxConcurrentStreams = Int(min(max(1, streams), Int64(Int32.max)))
        config.socketOptions.reusePort = try bool("socket-reuse-port")
        config.socketOptions.reuseAddress = try bool("socket-reuse-address")
        config.enablePprof = try bool("enable-pprof")
        config.extensiveMetrics = string("metrics") == "extensive"
        config.node = node
        config.tls = try resolveTLS(config: config)
        return config
    }

    /// Values Quorum cannot honour, refused with the reason rather than ignored: etcd's v2 API, its v2 proxy and its
    /// v2 discovery service. Values are checked as etcd checks them.
    func refuseUnsupported() throws {
        if try bool("enable-v2") {
            throw ConfigError(
                "--enable-v2=true is not supported: Quorum serves etcd's v3 API only (the v2 API is gone from etcd "
                    + "3.6); migrate v2 clients to v3, or leave --enable-v2 unset")
        }
        if let prefix = string("experimental-enable-v2v3") {
            throw ConfigError(
                "--experimental-enable-v2v3=\(prefix) is not supported: Quorum serves etcd's v3 API only, without a "
                    + "v2 emulation")
        }
        let proxy = string("proxy") ?? "off"
        guard ["off", "readonly", "on"].contains(proxy) else {
            throw ConfigError(
                "invalid value \"\(proxy)\" for flag -proxy: valid values are \"off\", \"readonly\", \"on\"")
        }
        if proxy != "off" {
            throw ConfigError("--proxy=\(proxy) is not supported: Quorum has no v2 proxy mode (use --proxy=off)")
        }
        if let url = string("discovery") {
            throw ConfigError(
                "--discovery=\(url) is not supported: Quorum does not use etcd's v2 discovery service; bootstrap with "
                    + "--initial-cluster or --discovery-srv")
        }
        let fallback = string("discovery-fallback") ?? "proxy"
        guard ["exit", "proxy"].contains(fallback) else {
            throw ConfigError(
                "invalid value \"\(fallback)\" for flag -discovery-fallback: valid values are \"exit\", \"proxy\"")
        }
        if let stage = string("v2-deprecation"),
            !["not-yet", "write-only", "write-only-drop-data", "gone"].contains(stage)
        {
            throw ConfigError(
                "invalid value \"\(stage)\" for flag -v2-deprecation: valid values are \"not-yet\", \"write-only\", "
                    + "\"write-only-drop-data\", \"gone\"")
        }
        if let metrics = string("metrics"), !["basic", "extensive"].contains(metrics) {
            throw ConfigError("unknown metrics option \"\(metrics)\" (use 'basic' or 'extensive')")
        }
    }

    /// The TLS flags, validated as etcd validates them (a certificate needs its key, versions must be ordered,
    /// cipher suites must be known), plus Quorum's managed-PKI flags.
    func resolveTLS(config: ServerConfig) throws -> TLSSettings {
        var tls = TLSSettings()
        func side(_ prefix: String, cert: String, key: String, ca: String, auth: String, crl: String) throws
            -> TLSSideSettings
        {
            var side = TLSSideSettings()
            side.certFile = string(cert)
            side.keyFile = string(key)
            side.trustedCAFile = string(ca)
            side.clientCertAuth = try bool(auth)
            side.crlFile = string(crl)
            side.autoTLS = try bool(prefix + "auto-tls")
            if (side.certFile == nil) != (side.keyFile == nil) {
                throw ConfigError("--\(cert) and --\(key) must be given together")
            }
            for path in [side.certFile, side.keyFile, side.trustedCAFile, side.crlFile].compactMap({ $0 }) {
                guard FileManager.default.fileExists(atPath: path) else {
                    throw ConfigError("open \(path): no such file or directory")
                }
            }
            return side
        }
        tls.client = try side(
            "", cert: "cert-file", key: "key-file", ca: "trusted-ca-file", auth: "client-cert-auth",
            crl: "client-crl-file")
        tls.client.allowedHostname = string("client-cert-allowed-hostname")
        tls.peer = try side(
            "peer-", cert: "peer-cert-file", key: "peer-key-file", ca: "peer-trusted-ca-file",
            auth: "peer-client-cert-auth", crl: "peer-crl-file")
        tls.peer.allowedCN = string("peer-cert-allowed-cn")
        tls.peer.allowedHostname = string("peer-cert-allowed-hostname")
        if tls.peer.allowedCN != nil && tls.peer.allowedHostname != nil {
            throw ConfigError("--peer-cert-allowed-cn and --peer-cert-allowed-hostname are mutually exclusive")
        }
        tls.managedPKI = try bool("managed-pki")
        tls.clientCertAuthOptOut = values["client-cert-auth"] == nil ? false : !(try bool("client-cert-auth"))
        if let text = string("pki-leaf-validity") {
            do {
                tls.leafValidity = try LeafLifetime(parsing: text)
            } catch {
                throw ConfigError("invalid value \"\(text)\" for flag -pki-leaf-validity: \(error)")
            }
        }
        if let text = string("pki-key-algorithm") {
            guard let algorithm = KeyAlgorithm(flagValue: text) else {
                throw ConfigError("invalid value \"\(text)\" for flag -pki-key-algorithm: use ecdsa-p256 or rsa-2048")
            }
            tls.keyAlgorithm = algorithm
        }
        if let text = string("pki-renewal-fraction") {
            guard let fraction = Double(text), fraction > 0, fraction < 1 else {
                throw ConfigError("invalid value \"\(text)\" for flag -pki-renewal-fraction: expected 0 < f < 1")
            }
            tls.renewalFraction = fraction
        }
        if let dir = string("pki-ca-dir") {
            guard FileManager.default.fileExists(atPath: dir) else {
                throw ConfigError("--pki-ca-dir \(dir): no such directory (create it with quorumctl pki init --out)")
            }
            tls.caSourceDirectory = dir
        }
        let years = try integer("self-signed-cert-validity", default: 1)
        guard years >= 1 else {
            throw ConfigError("--self-signed-cert-validity must be at least 1 year, got \(years)")
        }
        tls.selfSignedCertValidityYears = Int(years)
        if let text = string("cipher-suites") { tls.cipherSuites = try TLSFlagParsing.cipherSuites(text) }
        if let text = string("tls-min-version") {
            tls.minimumVersion = try TLSFlagParsing.version(text, flag: "tls-min-version")
        }
        if let text = string("tls-max-version") {
            tls.maximumVersion = try TLSFlagParsing.version(text, flag: "tls-max-version")
        }
        if let maximum = tls.maximumVersion, TLSFlagParsing.rank(maximum) < TLSFlagParsing.rank(tls.minimumVersion) {
            throw ConfigError("--tls-min-version must be less than or equal to --tls-max-version")
        }
        if !tls.cipherSuites.isEmpty && tls.minimumVersion == .tlsv13 {
            throw ConfigError("cipher suites cannot be configured when only TLS1.3 is enabled")
        }
        let httpsClient = (config.listenClientURLs + config.listenMetricsURLs).contains(where: \.isTLS)
        if tls.client.clientCertAuth && tls.client.trustedCAFile == nil
            && tls.clientMode(httpsURLs: httpsClient) == .files
        {
            throw ConfigError("--client-cert-auth needs --trusted-ca-file to verify client certificates against")
        }
        return tls
    }

    public func logLevel() throws -> Logger.Level {
        if string("log-level") == nil, try bool("debug") { return .debug }
        switch (string("log-level") ?? "info").lowercased() {
        case "debug": return .debug
        case "info": return .info
        case "warn", "warning": return .warning
        case "error": return .error
        case "dpanic", "panic", "fatal": return .critical
        case let other: throw ConfigError("unknown log level \"\(other)\"")
        }
    }

    static func parseInitialCluster(_ text: String) throws -> [(name: String, peerURLs: [String])] {
        var order: [String] = []
        var urls: [String: [String]] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw ConfigError("invalid --initial-cluster entry \"\(item)\": expected name=peerURL")
            }
            _ = try ListenURL(parts[1])
            if urls[parts[0]] == nil { order.append(parts[0]) }
            urls[parts[0], default: []].append(parts[1])
        }
        if order.isEmpty { throw ConfigError("--initial-cluster must not be empty") }
        return order.map { ($0, urls[$0]!) }
    }
}
