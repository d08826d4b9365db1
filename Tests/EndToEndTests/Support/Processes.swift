import Foundation
import Synchronization
import TestSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// A `quorum` member started by a test, stopped by pid when the test ends.
final class QuorumProcess: @unchecked Sendable {
    let name: String
    let dataDir: String
    let clientPort: Int
    let peerPort: Int
    let logPath: String
    private(set) var process: Process?
    var extraArguments: [String]
    /// `--initial-cluster`; defaults to this member alone.
    var initialCluster: String?
    var clusterState = "new"
    /// Variables added to the inherited environment (e.g. AWS credentials for an S3 backup destination).
    var environment: [String: String] = [:]
    /// The process's working directory (relative paths in flags, e.g. `unix://` sockets); nil: the test's.
    var workingDirectory: String?
    /// `--listen-peer-urls`, `--initial-advertise-peer-urls` and this member's `--initial-cluster` entry, when not
    /// `peerURL` (e.g. a `unix://` socket).
    var peerURLOverride: String?

    var endpoint: String { "http://127.0.0.1:\(clientPort)" }
    var peerURL: String { "http://127.0.0.1:\(peerPort)" }

    init(
        in scratch: TemporaryDirectory, name: String = "m1", extraArguments: [String] = [], clientPort: Int? = nil,
        peerPort: Int? = nil
    ) {
        self.name = name
        dataDir = scratch.path + "/\(name).quorum"
        self.clientPort = clientPort ?? freePort()
        self.peerPort = peerPort ?? freePort()
        logPath = scratch.path + "/\(name).log"
        self.extraArguments = extraArguments
    }

    var arguments: [String] {
        [
            "--name", name, "--data-dir", dataDir,
            "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
            "--listen-peer-urls", peerURLOverride ?? peerURL, "--initial-advertise-peer-urls",
            peerURLOverride ?? peerURL,
            "--initial-cluster", initialCluster ?? "\(name)=\(peerURLOverride ?? peerURL)",
            "--initial-cluster-state", clusterState,
        ] + extraArguments
    }

    /// Starts the member and waits for etcd's "ready to serve client requests" milestone.
    func start(timeout: Double = 60, waitReady: Bool = true) throws {
        precondition(process == nil, "already running")
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Paths.quorum)
        p.arguments = arguments
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        if let workingDirectory { p.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        let offset = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
        try spawn(p)
        process = p
        if !waitReady { return }
        try waitUntilReady(since: offset, timeout: timeout)
    }

    /// Waits for "ready to serve client requests" written after byte `offset` of the log.
    func waitUntilReady(since offset: Int = 0, timeout: Double = 60) throws {
        guard let p = process else { throw TestFailure("not started") }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !p.isRunning {
                throw TestFailure("quorum exited with \(p.terminationStatus) during start-up:\n\(logTail())")
            }
            if let text = try? String(contentsOfFile: logPath, encoding: .utf8),
                text.utf8.count > offset,
                String(text.utf8.dropFirst(offset))?.contains("ready to serve client requests") == true
            {
                return
            }
            usleep(20_000)
        }
        throw TestFailure("quorum did not become ready within \(timeout)s:\n\(logTail())")
    }

    /// Stops it with a signal (SIGTERM: graceful; SIGKILL: a crash) and waits for the exit.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: Double = 20) -> Int32 {
        guard let p = process else { return 0 }
        kill(p.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(5000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        process = nil
        return p.terminationStatus
    }

    var isRunning: Bool { process?.isRunning ?? false }

    func logTail(_ lines: Int = 30) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    deinit {
        if let p = process, p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
    }
}

/// Runs the real etcdctl (v3 API) against endpoints.
func etcdctl(_ endpoint: String, _ arguments: [String], input: String? = nil, timeout: Double = 30) throws
    -> CommandResult
{
    guard let path = Paths.tool("etcdctl") else {
        throw TestFailure("etcdctl is not installed: run scripts/test.sh, which installs Debian's etcd-client")
    }
    return try run(
        path, ["--endpoints=\(endpoint)", "--command-timeout=15s"] + arguments, input: input,
        environment: ["ETCDCTL_API": "3"], timeout: timeout)
}

/// A plain HTTP request (for /health, /version, /metrics and the JSON gateway).
func http(_ url: String, method: String = "GET", body: String? = nil) async throws -> (status: Int, body: String) {
    var request = URLRequest(url: URL(string: url)!)
    request.httpMethod = method
    if let body { request.httpBody = Data(body.utf8) }
    let (data, response) = try await URLSession.shared.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// Parses etcdctl's JSON. Member and cluster ids are 64-bit unsigned and may not fit the parser's integers,
/// so they are turned into strings first.
func etcdJSON(_ text: String) throws -> Any {
    let quoted = text.replacingOccurrences(
        of: #""(cluster_id|member_id|leader|ID)":([0-9]+)"#, with: #""$1":"$2""#, options: .regularExpression)
    return try JSONSerialization.jsonObject(with: Data(quoted.utf8))
}
