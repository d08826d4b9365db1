import Foundation
import Node

/// A URL from etcd's `--listen-*-urls` flags, split into what binding needs.
public struct ListenURL: Sendable, Equatable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int

    public init(_ text: String) throws {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host, let port = url.port
        else {
            throw ConfigError("invalid URL \"\(text)\": expected scheme://host:port with scheme http or https")
        }
        self.scheme = scheme
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        self.port = port
    }

    public var isTLS: Bool { scheme == "https" }
    public var description: String { "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// A configuration problem, reported to the operator before anything starts.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
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

    public init() {}
}
