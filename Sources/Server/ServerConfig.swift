import Foundation
import Node
import RPCTransport

/// A URL from etcd's `--listen-*-urls` flags, split into what binding needs.
public struct ListenURL: Sendable, Equatable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int

    public init(_ text: String) throws {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
            ["http", "https", "unix", "unixs"].contains(scheme), let host = url.host,
            let port = url.port ?? (scheme.hasPrefix("unix") ? 0 : nil)
        else {
            throw ConfigError(
                "invalid URL \"\(text)\": expected scheme://host:port with scheme http, https, unix or unixs")
        }
        self.scheme = scheme
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        self.port = port
    }

    public var isTLS: Bool { scheme == "https" || scheme == "unixs" }

    /// For `unix://` and `unixs://` URLs, the socket's path: what follows the scheme (`unix://etcd.sock:1` is the file
    /// `etcd.sock:1`, relative to the working directory), as etcd listens on and dials them.
    public var unixPath: String? {
        guard scheme.hasPrefix("unix") else { return nil }
        return port == 0 ? host : "\(host):\(port)"
    }

    public var description: String {
        if let unixPath { return "\(scheme)://\(unixPath)" }
        return "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }
}

/// A configuration problem, reported to the operator before anything starts.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The exit status etcd uses for the same mistake: 2 for a bad flag (Go's flag package), 1 for what etcd
    /// reports through its fatal log (a flag shadowed by an `ETCD_*` variable).
    public var exitStatus: Int32
    public init(_ description: String, exitStatus: Int32 = 2) {
        self.description = description
        self.exitStatus = exitStatus
    }
}

/// Everything the server needs beyond the member itself.
public struct ServerConfig: Sendable {
    public var node = NodeConfig()
    public var listenClientURLs: [ListenURL] = []
    public var listenPeerURLs: [ListenURL] = []
    public var listenMetricsURLs: [ListenURL] = []
    /// "periodic" or "revision"; empty retention or "0" disables auto compaction.
    public var autoCompactionMode = "periodic"
    public var autoCompactionRetention = "0"
    /// Compare hashes with the other members before serving (etcd's --experimental-initial-corrupt-check).
    public var initialCorruptCheck = false
    /// How often the leader compares key-space hashes with the members; zero disables.
    public var corruptCheckInterval: Duration = .zero
    /// Certificates, verification and the managed PKI for the client and peer listeners.
    public var tls = TLSSettings()
    /// Scheduled backups (`--backup-dir`); nil: none.
    public var backup: BackupSettings?
    /// gRPC keepalive on the client URLs (`--grpc-keepalive-*`).
    public var keepalive = KeepaliveSettings()
    /// `--max-concurrent-streams`: HTTP/2 streams a client connection may have open at once.
    public var maxConcurrentStreams = Int(Int32.max)
    /// `--socket-reuse-port` and `--socket-reuse-address` on every listener.
    public var socketOptions = SocketOptions()
    /// `--enable-pprof`: `/debug/pprof/` on the client URLs.
    public var enablePprof = false
    /// `--metrics extensive`: the per-method gRPC handling-time histograms too, as etcd.
    public var extensiveMetrics = false
    /// What resolving the configuration found worth logging at start (e.g. the members DNS discovery found).
    public var notices: [ConfigNotice] = []

    public init() {}
}
