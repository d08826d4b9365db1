/// One of etcd's flags (or one of Quorum's own), as `quorum --help` lists it and as the parser, the `ETCD_*`
/// variables and the YAML config file accept it.
public struct EtcdFlag: Sendable {
    /// How a value is parsed: as Go's flag package parses it, so a value etcd refuses is refused here too.
    public enum Kind: Sendable, Equatable {
        case string
        case bool
        /// Go's `int`/`int64`.
        case int
        /// Go's `uint`/`uint64`: no sign.
        case uint
        /// Go's `time.Duration` ("1h30m", "500ms"; "0" alone without a unit). In YAML an integer is nanoseconds,
        /// as etcd's config file (JSON-decoded into `time.Duration`) reads it.
        case duration
    }

    /// What the flag does in Quorum.
    public enum Effect: Sendable, Equatable {
        /// It changes Quorum's behaviour as it changes etcd's (or refuses a value Quorum cannot honour, saying why).
        case implemented
        /// Accepted, and logged once at start when given: "flag --X has no effect in Quorum: <reason>".
        case noEffect(String)
        /// One of etcd 2's flags, which etcd itself accepts and ignores with a warning (`flags.IgnoredFlag`).
        case legacy
    }

    /// The groups of `--help`, in etcd's order.
    public enum Section: String, Sendable, CaseIterable {
        case member = "Member"
        case clustering = "Clustering"
        case security = "Security"
        case auth = "Auth"
        case monitoring = "Profiling and Monitoring"
        case logging = "Logging"
        case tracing = "Experimental distributed tracing"
        case proxy = "v2 Proxy (not supported by Quorum)"
        case experimental = "Experimental feature"
        case unsafe = "Unsafe feature"
        case quorum = "Quorum (not in etcd)"
        case legacy = "Ignored (etcd 2 flags that etcd also accepts and ignores)"
    }

    public let name: String
    /// The default as etcd's `--help` shows it (`'default'`, `5000`, `''`).
    public let defaultText: String
    public let help: String
    public let kind: Kind
    public let section: Section
    public let effect: Effect

    init(
        _ name: String, _ defaultText: String, _ help: String, _ kind: Kind = .string, _ section: Section,
        _ effect: Effect = .implemented
    ) {
        self.name = name
        self.defaultText = defaultText
        self.help = help
        self.kind = kind
        self.section = section
        self.effect = effect
    }
}

extension EtcdFlags {
    /// Every flag etcd 3.4 and 3.5 accept (including those their `--help` does not list, such as
    /// `--enable-grpc-gateway`, `--log-output` or `--experimental-memory-mlock`), etcd 2's ignored ones, and Quorum's
    /// own. Those with `.noEffect` are accepted and logged at start with the reason; nothing is silently ignored.
    public static let table: [EtcdFlag] =
        [
            // Member
            .init("name", "'default'", "Human-readable name for this member.", .string, .member),
            .init("data-dir", "'${name}.quorum'", "Path to the data directory.", .string, .member),
            .init(
                "wal-dir", "''", "Path to the dedicated wal directory (default: ${data-dir}/member/wal).", .string,
                .member),
            .init(
                "snapshot-count", "'100000'", "Number of committed transactions to trigger a snapshot to disk.", .uint,
                .member),
            .init("heartbeat-interval", "'100'", "Time (in milliseconds) of a heartbeat interval.", .uint, .member),
            .init(
                "election-timeout", "'1000'",
                "Time (in milliseconds) for an election to timeout. See tuning documentation for details.", .uint,
                .member),
            .init(
                "initial-election-tick-advance", "'true'",
                "Whether to fast-forward initial election ticks on boot for faster election.", .bool, .member),
            .init(
                "listen-peer-urls", "'http://localhost:2380'", "List of URLs to listen on for peer traffic.", .string,
                .member),
            .init(
                "listen-client-urls", "'http://localhost:2379'", "List of URLs to listen on for client traffic.",
                .string,
                .member),
            .init(
                "max-snapshots", "'5'", "Maximum number of snapshot files to retain (0 is unlimited).", .uint, .member,
                .noEffect(
                    "Quorum writes no snapshot files: its snapshot is the backend database itself (member/snap/db), and "
                        + "the files it streams to followers are removed once sent")),
            .init(
                "max-wals", "'5'",
                "Maximum number of wal files to retain (0 is unlimited); only files a snapshot covers are removed.",
                .uint,
                .member),
            .init(
                "quota-backend-bytes", "'0'",
                "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).", .int, .member
            ),
            .init(
                "backend-bbolt-freelist-type", "'map'",
                "BackendFreelistType specifies the type of freelist that boltdb backend uses(array and map are supported types).",
                .string, .member, .noEffect("Quorum's backend is SQLite, not bbolt: there is no bbolt freelist")),
            .init(
                "backend-batch-interval", "''",
                "BackendBatchInterval is the maximum time before commit the backend transaction.", .duration, .member,
                .noEffect(
                    "Quorum commits the backend once per applied batch of the Raft log, which is what makes writes durable"
                )
            ),
            .init(
                "backend-batch-limit", "'0'",
                "BackendBatchLimit is the maximum operations before commit the backend transaction.", .int, .member,
                .noEffect(
                    "Quorum commits the backend once per applied batch of the Raft log, which is what makes writes durable"
                )
            ),
            .init("max-txn-ops", "'128'", "Maximum number of operations permitted in a transaction.", .uint, .member),
            .init(
                "max-request-bytes", "'1572864'", "Maximum client request size in bytes the server will accept.", .uint,
                .member),
            .init(
                "max-concurrent-streams", "'math.MaxUint32'",
                "Maximum concurrent streams that each client can open at a time.", .uint, .member),
            .init(
                "grpc-keepalive-min-time", "'5s'",
                "Minimum duration interval that a client should wait before pinging server.", .duration, .member),
            .init(
                "grpc-keepalive-interval", "'2h'",
                "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).",
                .duration, .member),
            .init(
                "grpc-keepalive-timeout", "'20s'",
                "Additional duration of wait before closing a non-responsive connection (0 to disable).", .duration,
                .member),
            .init(
                "socket-reuse-port", "'false'",
                "Enable to set socket option SO_REUSEPORT on listeners allowing rebinding of a port already in use.",
                .bool, .member),
            .init(
                "socket-reuse-address", "'false'",
                "Enable to set socket option SO_REUSEADDR on listeners allowing binding to an address in `TIME_WAIT` state.",
                .bool, .member),
            .init(
                "raft-read-timeout", "'5s'", "Read timeout set on each rafthttp connection", .duration, .member,
                .noEffect(
                    "members talk over long-lived HTTP/2 streams with heartbeats, not rafthttp; a silent link is detected by "
                        + "the election timeout")),
            .init(
                "raft-write-timeout", "'5s'", "Write timeout set on each rafthttp connection", .duration, .member,
                .noEffect(
                    "members talk over long-lived HTTP/2 streams with heartbeats, not rafthttp; a silent link is detected by "
                        + "the election timeout")),

            // Clustering
            .init(
                "initial-advertise-peer-urls", "'http://localhost:2380'",
                "List of this member's peer URLs to advertise to the rest of the cluster.", .string, .clustering),
            .init(
                "initial-cluster", "'default=http://localhost:2380'",
                "Initial cluster configuration for bootstrapping.",
                .string, .clustering),
            .init(
                "initial-cluster-state", "'new'", "Initial cluster state ('new' or 'existing').", .string, .clustering),
            .init(
                "initial-cluster-token", "'etcd-cluster'",
                "Initial cluster token for the etcd cluster during bootstrap.",
                .string, .clustering),
            .init(
                "advertise-client-urls", "'http://localhost:2379'",
                "List of this member's client URLs to advertise to the public.", .string, .clustering),
            .init(
                "discovery", "''",
                "Discovery URL used to bootstrap the cluster (etcd's v2 discovery service: refused by Quorum).",
                .string,
                .clustering),
            .init(
                "discovery-fallback", "'proxy'", "Expected behavior ('exit' or 'proxy') when discovery services fails.",
                .string, .clustering,
                .noEffect("it applies to --discovery (the v2 discovery service), which Quorum does not support")),
            .init(
                "discovery-proxy", "''", "HTTP proxy to use for traffic to discovery service.", .string, .clustering,
                .noEffect("it applies to --discovery (the v2 discovery service), which Quorum does not support")),
            .init("discovery-srv", "''", "DNS srv domain used to bootstrap the cluster.", .string, .clustering),
            .init(
                "discovery-srv-name", "''", "Suffix to the dns srv name queried when bootstrapping.", .string,
                .clustering),
            .init(
                "strict-reconfig-check", "'true'", "Reject reconfiguration requests that would cause quorum loss.",
                .bool,
                .clustering),
            .init(
                "pre-vote", "'true'", "Enable to run an additional Raft election phase.", .bool, .clustering,
                .noEffect("Quorum's Raft always runs the pre-vote phase")),
            .init(
                "auto-compaction-retention", "'0'",
                "Auto compaction retention length. 0 means disable auto compaction.",
                .string, .clustering),
            .init(
                "auto-compaction-mode", "'periodic'",
                "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, "
                    + "defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based "
                    + "retention.", .string, .clustering),
            .init(
                "enable-v2", "'false'", "Accept etcd V2 client requests (refused: Quorum serves the v3 API only).",
                .bool,
                .clustering),
            .init(
                "v2-deprecation", "'not-yet'",
                "Phase of v2store deprecation ('not-yet', 'write-only', 'write-only-drop-data', 'gone').", .string,
                .clustering, .noEffect("Quorum has no v2 store: it is always at the 'gone' stage")),

            // Security
            .init("cert-file", "''", "Path to the client server TLS cert file.", .string, .security),
            .init("key-file", "''", "Path to the client server TLS key file.", .string, .security),
            .init(
                "client-cert-file", "''",
                "Path to an explicit peer client TLS cert file otherwise cert file will be used when client auth is required.",
                .string, .security,
                .noEffect("a member makes no client connections of its own to client URLs")),
            .init(
                "client-key-file", "''",
                "Path to an explicit peer client TLS key file otherwise key file will be used when client auth is required.",
                .string, .security,
                .noEffect("a member makes no client connections of its own to client URLs")),
            .init("client-cert-auth", "'false'", "Enable client cert authentication.", .bool, .security),
            .init("client-crl-file", "''", "Path to the client certificate revocation list file.", .string, .security),
            .init(
                "client-cert-allowed-hostname", "''", "Allowed TLS hostname for client cert authentication.", .string,
                .security),
            .init("trusted-ca-file", "''", "Path to the client server TLS trusted CA cert file.", .string, .security),
            .init("auto-tls", "'false'", "Client TLS using generated certificates.", .bool, .security),
            .init("peer-cert-file", "''", "Path to the peer server TLS cert file.", .string, .security),
            .init("peer-key-file", "''", "Path to the peer server TLS key file.", .string, .security),
            .init(
                "peer-client-cert-file", "''",
                "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.",
                .string, .security,
                .noEffect("Quorum presents --peer-cert-file (or its managed certificate) when it dials other members")),
            .init(
                "peer-client-key-file", "''",
                "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.",
                .string, .security,
                .noEffect("Quorum presents --peer-key-file (or its managed key) when it dials other members")),
            .init("peer-client-cert-auth", "'false'", "Enable peer client cert authentication.", .bool, .security),
            .init("peer-trusted-ca-file", "''", "Path to the peer server TLS trusted CA file.", .string, .security),
            .init(
                "peer-cert-allowed-cn", "''", "Required CN for client certs connecting to the peer endpoint.", .string,
                .security),
            .init(
                "peer-cert-allowed-hostname", "''", "Allowed TLS hostname for inter peer authentication.", .string,
                .security),
            .init(
                "peer-auto-tls", "'false'",
                "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.",
                .bool, .security),
            .init(
                "self-signed-cert-validity", "'1'",
                "The validity period of the client and peer certificates that are automatically generated by etcd when you "
                    + "specify ClientAutoTLS and PeerAutoTLS, the unit is year, and the default is 1.", .uint, .security
            ),
            .init("peer-crl-file", "''", "Path to the peer certificate revocation list file.", .string, .security),
            .init(
                "cipher-suites", "''",
                "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be "
                    + "auto-populated by the TLS library).", .string, .security),
            .init(
                "tls-min-version", "'TLS1.2'", "Minimum TLS version supported: TLS1.2 or TLS1.3.", .string, .security),
            .init(
                "tls-max-version", "''", "Maximum TLS version supported: TLS1.2 or TLS1.3 (empty: no maximum).",
                .string,
                .security),
            .init(
                "cors", "'*'",
                "Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, (empty or * means allow all).",
                .string, .security,
                .noEffect("Quorum's HTTP endpoints send no CORS headers; browsers cannot call them cross-origin")),
            .init(
                "host-whitelist", "'*'",
                "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all).",
                .string, .security,
                .noEffect("Quorum answers HTTP requests whatever their Host header (as etcd does with the default '*')")
            ),
            .init(
                "experimental-peer-skip-client-san-verification", "'false'",
                "Skip verification of SAN field in client certificate for peer connections.", .bool, .security,
                .noEffect(
                    "Quorum does not match a connecting member's certificate SANs against its address (it checks the "
                        + "chain, key usage, CRL and --peer-cert-allowed-cn/-hostname): it always behaves as with =true"
                )),

            // Auth
            .init(
                "auth-token", "'simple'",
                "Specify a v3 authentication token type and its options ('simple' or 'jwt').", .string, .auth),
            .init(
                "bcrypt-cost", "10",
                "Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31.",
                .uint, .auth),
            .init("auth-token-ttl", "300", "Time (in seconds) of the auth-token-ttl.", .uint, .auth),

            // Profiling and Monitoring
            .init(
                "enable-pprof", "'false'",
                "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\" (Quorum: a heap "
                    + "summary from malloc_info and, where perf is installed, a CPU profile).", .bool, .monitoring),
            .init(
                "metrics", "'basic'",
                "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics.",
                .string, .monitoring),
            .init(
                "listen-metrics-urls", "''", "List of URLs to listen on for the metrics and health endpoints.", .string,
                .monitoring),

            // Logging
            .init(
                "logger", "'zap'",
                "Specify 'zap' for structured logging or 'capnslog'. [WARN] 'capnslog' is deprecated (etcd 3.4's text format).",
                .string, .logging),
            .init(
                "log-outputs", "'default'",
                "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma "
                    + "separated output targets ('default' is stderr).", .string, .logging),
            .init(
                "log-output", "'default'", "[TO BE DEPRECATED IN v3.5] use '--log-outputs'.", .string, .logging),
            .init(
                "log-level", "'info'",
                "Configures log level. Only supports debug, info, warn, error, panic, or fatal.", .string, .logging),
            .init(
                "debug", "'false'",
                "Enable debug-level logging for etcd. [WARN] Will be deprecated in v3.5. Use '--log-level=debug' instead.",
                .bool, .logging),
            .init(
                "log-package-levels", "''",
                "Specify a particular log level for each etcd package (eg: 'etcdmain=CRITICAL,etcdserver=DEBUG').",
                .string, .logging, .noEffect("Quorum has one log level for the whole process (--log-level)")),
            .init(
                "enable-log-rotation", "'false'", "Enable log rotation of a single log-outputs file target.", .bool,
                .logging,
                .noEffect("Quorum does not rotate its log files; use logrotate with copytruncate, or journald")),
            .init(
                "log-rotation-config-json",
                "'{\"maxsize\": 100, \"maxage\": 0, \"maxbackups\": 0, \"localtime\": false, \"compress\": false}'",
                "Configures log rotation if enabled with a JSON logger config.", .string, .logging,
                .noEffect("Quorum does not rotate its log files; use logrotate with copytruncate, or journald")),

            // Experimental distributed tracing
            .init(
                "experimental-enable-distributed-tracing", "'false'", "Enable experimental distributed tracing.", .bool,
                .tracing, .noEffect("Quorum has no OpenTelemetry tracing")),
            .init(
                "experimental-distributed-tracing-address", "'localhost:4317'",
                "Distributed tracing collector address.",
                .string, .tracing, .noEffect("Quorum has no OpenTelemetry tracing")),
            .init(
                "experimental-distributed-tracing-service-name", "'etcd'",
                "Distributed tracing service name, must be same across all etcd instances.", .string, .tracing,
                .noEffect("Quorum has no OpenTelemetry tracing")),
            .init(
                "experimental-distributed-tracing-instance-id", "''",
                "Distributed tracing instance ID, must be unique per each etcd instance.", .string, .tracing,
                .noEffect("Quorum has no OpenTelemetry tracing")),

            // v2 proxy
            .init(
                "proxy", "'off'", "Proxy mode setting ('off', 'readonly' or 'on'); Quorum refuses anything but 'off'.",
                .string, .proxy),
            .init(
                "proxy-failure-wait", "5000", "Time (in milliseconds) an endpoint will be held in a failed state.",
                .uint,
                .proxy, .noEffect("Quorum has no v2 proxy mode")),
            .init(
                "proxy-refresh-interval", "30000", "Time (in milliseconds) of the endpoints refresh interval.", .uint,
                .proxy, .noEffect("Quorum has no v2 proxy mode")),
            .init(
                "proxy-dial-timeout", "1000", "Time (in milliseconds) for a dial to timeout.", .uint, .proxy,
                .noEffect("Quorum has no v2 proxy mode")),
            .init(
                "proxy-write-timeout", "5000", "Time (in milliseconds) for a write to timeout.", .uint, .proxy,
                .noEffect("Quorum has no v2 proxy mode")),
            .init(
                "proxy-read-timeout", "0", "Time (in milliseconds) for a read to timeout.", .uint, .proxy,
                .noEffect("Quorum has no v2 proxy mode")),

            // Experimental
            .init(
                "experimental-initial-corrupt-check", "'false'",
                "Enable to check data corruption before serving any client/peer traffic.", .bool, .experimental),
            .init(
                "experimental-corrupt-check-time", "'0s'", "Duration of time between cluster corruption check passes.",
                .duration, .experimental),
            .init(
                "experimental-enable-v2v3", "''",
                "Serve v2 requests through the v3 backend under a given prefix (refused: Quorum serves the v3 API only).",
                .string, .experimental),
            .init(
                "experimental-backend-bbolt-freelist-type", "'array'",
                "ExperimentalBackendFreelistType specifies the type of freelist that boltdb backend uses(array and map are "
                    + "supported types).", .string, .experimental,
                .noEffect("Quorum's backend is SQLite, not bbolt: there is no bbolt freelist")),
            .init(
                "experimental-enable-lease-checkpoint", "'false'",
                "ExperimentalEnableLeaseCheckpoint enables primary lessor to persist lease remainingTTL to prevent "
                    + "indefinite auto-renewal of long lived leases.", .bool, .experimental),
            .init(
                "experimental-enable-lease-checkpoint-persist", "'false'",
                "Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases (Quorum always "
                    + "persists checkpoints).", .bool, .experimental),
            .init(
                "experimental-lease-checkpoint-interval", "'5m0s'",
                "Duration of time between two lease checkpoints (with --experimental-enable-lease-checkpoint).",
                .duration,
                .experimental),
            .init(
                "experimental-compaction-batch-limit", "1000",
                "ExperimentalCompactionBatchLimit sets the maximum revisions deleted in each compaction batch.", .int,
                .experimental),
            .init(
                "experimental-watch-progress-notify-interval", "'10m'",
                "Duration of periodical watch progress notification.", .duration, .experimental),
            .init(
                "experimental-warning-apply-duration", "'100ms'",
                "Warning is generated if requests take more than this duration.", .duration, .experimental),
            .init(
                "experimental-txn-mode-write-with-shared-buffer", "'true'",
                "Enable the write transaction to use a shared buffer in its readonly check operations.", .bool,
                .experimental,
                .noEffect("a bbolt read-buffer optimisation with no counterpart in Quorum's SQLite backend")),
            .init(
                "experimental-bootstrap-defrag-threshold-megabytes", "0",
                "Enable the defrag during etcd server bootstrap on condition that it will free at least the provided "
                    + "threshold of disk space. Needs to be set to non-zero value to take effect.", .uint,
                .experimental,
                .noEffect("Quorum does not defragment at start; run etcdctl defrag when needed")),
            .init(
                "experimental-downgrade-check-time", "'5s'", "Duration of time between two downgrade status check.",
                .duration, .experimental,
                .noEffect("Quorum's leader checks the cluster version and a downgrade job every 2 seconds")),
            .init(
                "experimental-memory-mlock", "'false'",
                "Enable to enforce etcd pages (in particular bbolt) to stay in RAM.", .bool, .experimental,
                .noEffect("Quorum does not lock its memory; keep swap off on members instead")),
            .init(
                "experimental-snapshot-catchup-entries", "5000",
                "Number of entries for a slow follower to catch up after compacting the raft storage entries.", .uint,
                .experimental),

            // Unsafe
            .init("force-new-cluster", "'false'", "Force to create a new one-member cluster.", .bool, .unsafe),
            .init("unsafe-no-fsync", "'false'", "Disables fsync, unsafe, will cause data loss.", .bool, .unsafe),

            // Always served
            .init(
                "enable-grpc-gateway", "'true'", "Enable GRPC gateway.", .bool, .monitoring,
                .noEffect("Quorum always serves the JSON gateway (/v3/...) on its client URLs")),
            .init(
                "config-file", "''",
                "Path to the server configuration file. Note that if a configuration file is provided, other command line "
                    + "flags and environment variables will be ignored.", .string, .member),

            // Quorum's own
            .init(
                "backup-dir", "''", "Scheduled backups (leader only): a directory, or s3://bucket/prefix.", .string,
                .quorum),
            .init(
                "backup-interval", "'0'", "Time between scheduled backups, e.g. 15m; 0 disables them.", .string, .quorum
            ),
            .init(
                "backup-s3-endpoint", "''",
                "S3-protocol endpoint for an s3:// --backup-dir other than AWS, e.g. MinIO.",
                .string, .quorum),
            .init(
                "backup-retention-hourly", "''", "Keep one backup per hour for this long, after the last hour.",
                .string,
                .quorum),
            .init("backup-retention-daily", "''", "Then one backup per day for this long.", .string, .quorum),
            .init(
                "value-cache-bytes", "268435456",
                "Bytes of key values kept in memory (the rest are read from the backend on demand); 0 keeps none.",
                .int, .quorum),
            .init(
                "managed-pki", "'false'", "Issue and renew member certificates from the data directory's CA.", .bool,
                .quorum),
            .init(
                "pki-leaf-validity", "''", "Lifetime of managed leaf certificates, e.g. 8760h, 30d, 90s.", .string,
                .quorum),
            .init(
                "pki-key-algorithm", "'ecdsa-p256'", "Key algorithm of managed certificates: ecdsa-p256 or rsa-2048.",
                .string, .quorum),
            .init(
                "pki-renewal-fraction", "''",
                "Renew a managed leaf when less than this fraction of its lifetime remains.",
                .string, .quorum),
            .init(
                "pki-ca-dir", "''",
                "Directory with the cluster CAs from 'quorumctl pki init', imported on first start.",
                .string, .quorum),
        ] + legacyFlags.map { EtcdFlag($0, "", "", .bool, .legacy, .legacy) }

    /// etcd 2's flags, which etcd 3 still accepts, warning `flag "-X" is no longer supported - ignoring.`
    static let legacyFlags = [
        "cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force", "max-result-buffer",
        "max-retry-attempts", "peer-heartbeat-interval", "peer-election-timeout", "retry-interval", "snapshot", "v",
        "vv",
    ]

    static let byName: [String: EtcdFlag] = Dictionary(table.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })

    /// Flag names (without dashes) with their help, for callers that only list them.
    public static var known: [(name: String, help: String)] { table.map { ($0.name, $0.help) } }

    /// Boolean flags may be given without a value (Go's `IsBoolFlag`).
    public static var booleans: Set<String> { Set(table.filter { $0.kind == .bool }.map(\.name)) }
}
