import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2

#if canImport(Glibc)
    import Glibc
#endif

/// The `quorum` processes of a chaos run, one per host of the network, started and stopped by pid.
public final class ChaosMembers: @unchecked Sendable {
    let network: ChaosNetwork
    let binary: String
    let workDirectory: String
    /// Members speak mutual TLS on both sides from shared CAs, with leaves of this lifetime (nil: plaintext).
    let tls: ChaosTLS?
    /// Extra flags for every member.
    let extraFlags: [String]
    /// Where each member keeps its data, if not in the work directory (the power-loss harness puts them on file
    /// systems of their own).
    let dataDirectories: [String]?
    private var processes: [Int: Process] = [:]
    private var paused: Set<Int> = []
    private let lock = NSLock()

    public init(
        network: ChaosNetwork, binary: String, workDirectory: String, tls: ChaosTLS? = nil, extraFlags: [String] = [],
        dataDirectories: [String]? = nil
    ) {
        self.network = network
        self.binary = binary
        self.workDirectory = workDirectory
        self.tls = tls
        self.extraFlags = extraFlags
        self.dataDirectories = dataDirectories
    }

    public var count: Int { network.hosts }
    public func clientEndpoint(_ host: Int) -> (host: String, port: Int) { (network.address(host), 2379) }
    func logPath(_ host: Int) -> String { "\(workDirectory)/m\(host).log" }
    public func dataDirectory(_ host: Int) -> String { dataDirectories?[host] ?? "\(workDirectory)/m\(host).quorum" }

    /// What member `host` has logged so far (across restarts).
    public func log(_ host: Int) -> String {
        (try? String(contentsOfFile: logPath(host), encoding: .utf8)) ?? ""
    }

    var scheme: String { tls == nil ? "http" : "https" }

    /// How the harness's clients connect: plaintext, or mutual TLS with the harness's current client identity.
    var clientSecurity: HTTP2ClientTransport.Posix.TransportSecurity { tls?.transportSecurity ?? .plaintext }

    /// Runs `body` with a gRPC client connected to member `host`'s client port.
    public func withClient<Result: Sendable>(
        _ host: Int, _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let endpoint = clientEndpoint(host)
        return try await withGRPCClient(
            transport: .http2NIOPosix(
                target: .ipv4(address: endpoint.host, port: endpoint.port), transportSecurity: clientSecurity,
                config: .clientDefaults),
            handleClient: body)
    }

    var initialCluster: String {
        (0..<count).map { "m\($0)=\(scheme)://\(network.address($0)):2380" }.joined(separator: ",")
    }

    /// Starts (or restarts, on the same data directory) the member of `host`.
    public func start(_ host: Int) throws {
        lock.lock()
        defer { lock.unlock() }
        if let p = processes[host], p.isRunning { return }
        let address = network.address(host)
        var arguments = [
            binary, "--name", "m\(host)", "--data-dir", dataDirectory(host),
            "--listen-client-urls", "\(scheme)://\(address):2379", "--advertise-client-urls",
            "\(scheme)://\(address):2379",
            "--listen-peer-urls", "\(scheme)://\(address):2380",
            "--initial-advertise-peer-urls", "\(scheme)://\(address):2380",
            "--initial-cluster", initialCluster, "--heartbeat-interval", "50", "--election-timeout", "500",
            "--snapshot-count", "500", "--experimental-snapshot-catchup-entries", "100",
        ]
        if let tls {
            arguments += [
                "--pki-ca-dir", tls.caDirectory, "--client-cert-auth", "--peer-client-cert-auth",
                "--pki-leaf-validity", tls.leafValidity, "--pki-renewal-fraction", "0.5",
            ]
        }
        arguments += extraFlags
        if !FileManager.default.fileExists(atPath: logPath(host)) {
            _ = FileManager.default.createFile(atPath: logPath(host), contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath(host)))
        log.seekToEndOfFile()
        let process = Process()
        let command = network.exec(host: host) + arguments
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        processes[host] = process
        paused.remove(host)
    }

    /// `kill -9`: the member dies without a chance to flush anything.
    public func crash(_ host: Int) {
        signal(host, SIGKILL, wait: true)
    }

    public func pause(_ host: Int) {
        signal(host, SIGSTOP, wait: false)
        lock.withLock { _ = paused.insert(host) }
    }

    public func resume(_ host: Int) {
        signal(host, SIGCONT, wait: false)
        lock.withLock { _ = paused.remove(host) }
    }

    public func isRunning(_ host: Int) -> Bool { lock.withLock { processes[host]?.isRunning ?? false } }

    private func signal(_ host: Int, _ sig: Int32, wait: Bool) {
        guard let p = lock.withLock({ processes[host] }), p.isRunning else { return }
        // The process is `env` → `sudo`? → `ip netns exec` → quorum; without sudo they are one pid (exec chain).
        kill(p.processIdentifier, sig)
        if wait { p.waitUntilExit() }
    }

    /// Resumes paused members and restarts crashed ones.
    public func reviveAll() throws {
        for h in 0..<count {
            if lock.withLock({ paused.contains(h) }) { resume(h) }
            if !isRunning(h) { try start(h) }
        }
    }

    public func stopAll() {
        for h in 0..<count {
            resume(h)
            signal(h, SIGKILL, wait: true)
        }
    }

    deinit { stopAll() }
}
