import Auth
import Foundation
import Logging
import Node
import PKI
import Yams

/// etcd's configuration surface: every flag, its `ETCD_*` environment variable and its config-file key, with
/// etcd's precedence — with `--config-file` the file alone decides; otherwise a flag wins over its environment
/// variable, which wins over the default.
public struct EtcdFlags: Sendable {
    /// Flag names (without dashes) this member understands, with a one-line description each (for `--help`).
    public static let known: [(name: String, help: String)] = [
        ("name", "Human-readable name for this member."),
        ("data-dir", "Path to the data directory (default: ${name}.quorum)."),
        ("wal-dir", "Path to a dedicated write-ahead-log directory (default: inside data-dir)."),
        ("listen-client-urls", "List of URLs to listen on for client traffic."),
        ("advertise-client-urls", "List of this member's client URLs to advertise to the rest of the cluster."),
        ("listen-peer-urls", "List of URLs to listen on for peer traffic."),
        ("initial-advertise-peer-urls", "List of this member's peer URLs to advertise to the rest of the cluster."),
        ("listen-metrics-urls", "List of URLs to serve /metrics and /health on (besides the client URLs)."),
        ("initial-cluster", "Initial cluster configuration for bootstrapping (name=peerURL,...)."),
        ("initial-cluster-state", "Initial cluster state ('new' or 'existing')."),
        ("initial-cluster-token", "Initial cluster token for the cluster during bootstrap."),
        ("snapshot-count", "Number of committed transactions to trigger a snapshot to disk."),
        ("force-new-cluster", "Force to create a new one member cluster."),
        ("backup-dir", "Scheduled backups (leader only): a directory, or s3://bucket/prefix (Quorum)."),
        ("backup-interval", "Time between scheduled backups, e.g. 15m; 0 disables them (Quorum)."),
        ("backup-s3-endpoint", "S3-protocol endpoint for an s3:// --backup-dir other than AWS, e.g. MinIO (Quorum)."),
        ("backup-retention-hourly", "Keep one backup per hour for this long, after the last hour (Quorum)."),
        ("backup-retention-daily", "Then one backup per day for this long (Quorum)."),
        ("heartbeat-interval", "Time (in milliseconds) of a heartbeat interval."),
        ("election-timeout", "Time (in milliseconds) for an election to timeout."),
        ("quota-backend-bytes", "Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB)."),
        ("max-request-bytes", "Maximum client request size in bytes the server will accept."),
        ("max-txn-ops", "Maximum number of operations permitted in a transaction."),
        ("auto-compaction-mode", "Interpret 'auto-compaction-retention' as 'periodic' (duration) or 'revision'."),
        ("auto-compaction-retention", "Auto compaction retention (0 disables)."),
        ("log-level", "Log level: debug, info, warn, error, panic or fatal."),
        ("logger", "Logger: 'zap' (structured JSON) is the only one."),
        ("log-outputs", "Where to write logs: 'stderr', 'stdout', or file paths (comma-separated)."),
        ("config-file", "Path to the server configuration file (YAML); other flags and variables are then ignored."),
        ("strict-reconfig-check", "Reject reconfiguration requests that would cause quorum loss."),
        (
            "initial-election-tick-advance",
            "Whether to fast-forward initial election ticks on boot for faster election."
        ),
        ("experimental-snapshot-catchup-entries", "Entries kept behind a snapshot for slow followers to catch up."),
        ("experimental-initial-corrupt-check", "Compare the key-space hash with the other members before serving."),
        ("experimental-corrupt-check-time", "How often the leader compares hashes with the members (0 disables)."),
        ("enable-pprof", "Accepted for compatibility; Quorum has no pprof endpoint."),
        ("cert-file", "Path to the client server TLS cert file."),
        ("key-file", "Path to the client server TLS key file."),
        ("trusted-ca-file", "Path to the client server TLS trusted CA cert file."),
        ("client-cert-auth", "Enable client cert authentication."),
        ("client-crl-file", "Path to the client certificate revocation list file."),
        ("client-cert-allowed-hostname", "Allowed TLS hostname for client cert authentication."),
        ("auto-tls", "Client TLS using generated certificates."),
        ("peer-cert-file", "Path to the peer server TLS cert file."),
        ("peer-key-file", "Path to the peer server TLS key file."),
        ("peer-trusted-ca-file", "Path to the peer server TLS trusted CA file."),
        ("peer-client-cert-auth", "Enable peer client cert authentication."),
        ("peer-crl-file", "Path to the peer certificate revocation list file."),
        ("peer-cert-allowed-cn", "Allowed CN for inter peer authentication."),
        ("peer-cert-allowed-hostname", "Allowed TLS hostname for inter peer authentication."),
        ("peer-auto-tls", "Peer TLS using generated certificates."),
        ("self-signed-cert-validity", "Validity period of auto-generated certificates, in years."),
        ("cipher-suites", "Comma-separated list of supported TLS cipher suites between client/server and peers."),
        ("tls-min-version", "Minimum TLS version supported: TLS1.2 or TLS1.3."),
        ("tls-max-version", "Maximum TLS version supported: TLS1.2 or TLS1.3 (empty: no maximum)."),
        ("auth-token", "Specify auth token type and its options ('simple' or 'jwt')."),
        ("auth-token-ttl", "The lifetime in seconds of the auth token."),
        ("bcrypt-cost", "Specify bcrypt algorithm cost factor for auth password hashing."),
        ("managed-pki", "Issue and renew member certificates from the data directory's CA (Quorum)."),
        ("pki-leaf-validity", "Lifetime of managed leaf certificates, e.g. 8760h, 30d, 90s (Quorum)."),
        ("pki-key-algorithm", "Key algorithm of managed certificates: ecdsa-p256 or rsa-2048 (Quorum)."),
        ("pki-renewal-fraction", "Renew a managed leaf when less than this fraction of its lifetime remains (Quorum)."),
        ("pki-ca-dir", "Directory with the cluster CAs from 'quorumctl pki init', imported on first start (Quorum)."),
    ]

    /// Boolean flags may be given without a value.
    public static let booleans: Set<String> = [
        "client-cert-auth", "auto-tls", "peer-client-cert-auth", "peer-auto-tls", "strict-reconfig-check",
        "initial-election-tick-advance",
        "enable-pprof", "managed-pki", "experimental-initial-corrupt-check", "force-new-cluster",
    ]

    /// Values as given, by flag name.
    public var values: [String: String] = [:]

    public init(values: [String: String] = [:]) {
        self.values = values
    }

    /// Parses command-line arguments Go-style: `--flag value`, `--flag=value`, `-flag value`, `-flag=value`,
    /// and bare boolean flags. Unknown flags and missing values throw `ConfigError`.
    public static func parse(arguments: [String]) throws -> (EtcdFlags, wantsHelp: Bool, wantsVersion: Bool) {
        var flags = EtcdFlags()
        let names = Set(known.map(\.name))
        var i = 0
        var help = false
        var version = false
        while i < arguments.count {
            let argument = arguments[i]
            i += 1
            guard argument.hasPrefix("-"), argument.count > 1 else {
                throw ConfigError("'\(argument)' is not a valid flag")
            }
            var body = argument.drop { $0 == "-" }
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
                version = true
                continue
            }
            guard names.contains(name) else { throw ConfigError("flag provided but not defined: -\(name)") }
            if value == nil {
                if booleans.contains(name) {
                    value = "true"
                } else {
                    guard i < arguments.count else { throw ConfigError("flag needs an argument: -\(name)") }
                    value = arguments[i]
                    i += 1
                }
            }
            flags.values[name] = value
        }
        return (flags, help, version)
    }

    /// Fills flags not given from `ETCD_*` variables (`ETCD_DATA_DIR` for `--data-dir`).
    public mutating func applyEnvironment(_ environment: [String: String]) throws {
        let names = Set(Self.known.map(\.name))
        for (key, value) in environment where key.hasPrefix("ETCD_") {
            let name = key.dropFirst(5).lowercased().replacingOccurrences(of: "_", with: "-")
            if ["version", "help"].contains(name) { continue }
            guard names.contains(name) else { continue }
            if values[name] == nil { values[name] = value }
        }
    }

    /// Loads etcd's YAML configuration file (etcd's keys, nested `client-transport-security` and
    /// `peer-transport-security` sections); the file replaces flags and environment entirely.
    public static func load(configFile path: String) throws -> EtcdFlags {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError("cannot read config file \(path)")
        }
        guard let document = try Yams.load(yaml: text) as? [String: Any] else {
            throw ConfigError("config file \(path) is not a YAML mapping")
        }
        var flags = EtcdFlags()
        let names = Set(known.map(\.name))
        func put(_ key: String, _ raw: Any) throws {
            guard names.contains(key) else { return }
            switch raw {
            case let list as [Any]: flags.values[key] = list.map { "\($0)" }.joined(separator: ",")
            case let b as Bool: flags.values[key] = b ? "true" : "false"
            default: flags.values[key] = "\(raw)"
            }
        }
        for (key, raw) in document {
            if key == "client-transport-security" || key == "peer-transport-security",
                let section = raw as? [String: Any]
            {
                let prefix = key.hasPrefix("peer") ? "peer-" : ""
                for (sub, value) in section {
                    let mapped =
                        (sub == "auto-tls" || sub == "cert-file" || sub == "key-file" || sub == "trusted-ca-file"
                            || sub == "client-cert-auth" || sub == "crl-file" || sub == "allowed-cn"
                            || sub == "allowed-hostname")
                    guard mapped else { continue }
                    var name = prefix + sub
                    if name == "crl-file" { name = "client-crl-file" }
                    if name == "peer-allowed-cn" { name = "peer-cert-allowed-cn" }
                    if name == "peer-allowed-hostname" { name = "peer-cert-allowed-hostname" }
                    if name == "allowed-hostname" { name = "client-cert-allowed-hostname" }
                    try put(name, value)
                }
                continue
            }
            if raw is NSNull { continue }
            try put(key, raw)
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
        switch v.lowercased() {
        case "", "true", "1", "t", "yes": return true
        case "false", "0", "f", "no": return false
        default: throw ConfigError("invalid boolean value \"\(v)\" for flag -\(name)")
        }
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
        var v4 = in_addr()
        var v6 = in6_addr()
        guard
            url.host == "localhost" || inet_pton(AF_INET, url.host, &v4) == 1 || inet_pton(AF_INET6, url.host, &v6) == 1
        else { throw ConfigError("expected IP in URL for binding (\(text))") }
        return url
    }

    /// Builds the server configuration, validating as etcd does.
    public func resolve() throws -> ServerConfig {
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
        node.initialCluster = try Self.parseInitialCluster(string("initial-cluster") ?? defaultCluster)
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
        if let logger = string("logger"), logger != "zap" {
            throw ConfigError("unknown logger option \"\(logger)\" (Quorum logs structured JSON: use --logger=zap)")
        }
        _ = try logLevel()
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
        config.node = node
        config.tls = try resolveTLS(config: config)
        return config
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
        let httpsClient = config.listenClientURLs.contains(where: \.isTLS)
        if tls.client.clientCertAuth && tls.client.trustedCAFile == nil
            && tls.clientMode(httpsURLs: httpsClient) == .files
        {
            throw ConfigError("--client-cert-auth needs --trusted-ca-file to verify client certificates against")
        }
        return tls
    }

    public func logLevel() throws -> Logger.Level {
        switch (string("log-level") ?? "info").lowercased() {
        case "debug": return .debug
        case "info": return .info
        case "warn", "warning": return .warning
        case "error": return .error
        case "dpanic", "panic", "fatal": return .critical
        case let other: throw ConfigError("unknown log level \"\(other)\"")
        }
    }

    public var logOutputs: [String] {
        (string("log-outputs") ?? "stderr").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
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
