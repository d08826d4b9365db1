import Foundation
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The real etcd releases the interop tests run against, and where their binaries are.
///
/// etcd 3.4 is Debian's (`etcd-server`, `etcd-client` in /usr/bin); etcd 3.5.1's official binaries live in the
/// folder `QUORUM_ETCD35_DIR` names (default /tmp/etcd-3.5.1), which scripts/test.sh fills with
/// shared/bench/etcd35.sh.
enum EtcdRelease: String, CaseIterable, CustomStringConvertible, Sendable {
    case v34 = "3.4"
    case v35 = "3.5"

    var description: String { "etcd \(rawValue)" }

    var directory: String {
        switch self {
        case .v34: return "/usr/bin"
        case .v35: return ProcessInfo.processInfo.environment["QUORUM_ETCD35_DIR"] ?? "/tmp/etcd-3.5.1"
        }
    }

    /// The cluster version a member of this release writes to its backend.
    var clusterVersion: String { rawValue + ".0" }

    func binary(_ name: String) throws -> String {
        let path = directory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            switch self {
            case .v34:
                throw TestFailure(
                    "\(path) is missing: etcd 3.4 comes from Debian's etcd-server and etcd-client (scripts/test.sh "
                        + "installs them)")
            case .v35:
                throw TestFailure(
                    "\(path) is missing: etcd 3.5.1's etcd, etcdctl and etcdutl are expected in \(directory) "
                        + "(QUORUM_ETCD35_DIR); scripts/test.sh fetches them with shared/bench/etcd35.sh")
            }
        }
        return path
    }

    /// etcdctl against `endpoint` (v3 API).
    func etcdctl(_ endpoint: String, _ arguments: [String], input: String? = nil) throws -> CommandResult {
        try run(
            try binary("etcdctl"), ["--endpoints=\(endpoint)", "--command-timeout=20s"] + arguments, input: input,
            environment: ["ETCDCTL_API": "3"])
    }

    /// The offline snapshot tool: `etcdctl snapshot …` in 3.4, `etcdutl snapshot …` in 3.5.
    func snapshotTool(_ arguments: [String]) throws -> CommandResult {
        try run(
            try binary(self == .v34 ? "etcdctl" : "etcdutl"), ["snapshot"] + arguments,
            environment: ["ETCDCTL_API": "3"])
    }

    /// `snapshot status -w json`, parsed.
    func status(of path: String) throws -> ToolStatus {
        let result = try snapshotTool(["status", path, "-w", "json"])
        guard result.ok else { throw TestFailure("\(self) snapshot status \(path) failed: \(result.stderr)") }
        print("\(self) snapshot status: \(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))")
        return try JSONDecoder().decode(ToolStatus.self, from: Data(result.stdout.utf8))
    }

    /// `snapshot restore` into `dataDirectory`, for a one-member cluster `name` at `peerURL`.
    func restore(_ path: String, into dataDirectory: String, name: String, peerURL: String) throws {
        let result = try snapshotTool([
            "restore", path, "--name", name, "--data-dir", dataDirectory, "--initial-cluster", "\(name)=\(peerURL)",
            "--initial-advertise-peer-urls", peerURL,
        ])
        guard result.ok else {
            throw TestFailure("\(self) snapshot restore failed:\n\(result.stdout)\n\(result.stderr)")
        }
    }
}

/// `snapshot status -w json`.
struct ToolStatus: Decodable, Equatable {
    var hash: UInt32
    var revision: Int64
    var totalKey: Int
    var totalSize: Int64
}

/// A real etcd member on loopback, started by a test and stopped by its pid.
final class EtcdMember {
    let release: EtcdRelease
    let name: String
    let dataDirectory: String
    let clientPort = freePort()
    let peerPort = freePort()
    let logPath: String
    private var process: Process?
    private var exited: DispatchSemaphore?

    var endpoint: String { "http://127.0.0.1:\(clientPort)" }
    var peerURL: String { "http://127.0.0.1:\(peerPort)" }

    init(_ release: EtcdRelease, in scratch: TemporaryDirectory, name: String = "m1") {
        self.release = release
        self.name = name
        dataDirectory = scratch.file("\(name)-\(release.rawValue).etcd")
        logPath = scratch.file("\(name)-\(release.rawValue).log")
    }

    /// Starts etcd and waits for its "ready to serve client requests" line.
    func start(timeout: Double = 60) throws {
        precondition(process == nil, "already running")
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try release.binary("etcd"))
        p.arguments = [
            "--name", name, "--data-dir", dataDirectory, "--listen-client-urls", endpoint, "--advertise-client-urls",
            endpoint, "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster",
            "\(name)=\(peerURL)",
        ]
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        exited = try launch(p)
        process = p
        try waitUntil("\(release) ready to serve clients", timeout: timeout) {
            guard p.isRunning else {
                throw TestFailure("\(release) exited with \(p.terminationStatus) during start-up:\n\(logTail())")
            }
            return (try? String(contentsOfFile: logPath, encoding: .utf8))?.contains("ready to serve client requests")
                ?? false
        }
    }

    /// Stops this member (SIGTERM to its own pid, SIGKILL if it lingers) and waits for the exit.
    func stop() {
        guard let p = process, let exited else { return }
        kill(p.processIdentifier, SIGTERM)
        if exited.wait(timeout: .now() + 20) == .timedOut {
            kill(p.processIdentifier, SIGKILL)
            exited.wait()
        }
        process = nil
    }

    func etcdctl(_ arguments: [String], input: String? = nil) throws -> CommandResult {
        let result = try release.etcdctl(endpoint, arguments, input: input)
        guard result.ok else {
            throw TestFailure("\(release) etcdctl \(arguments.joined(separator: " ")) failed: \(result.stderr)")
        }
        return result
    }

    /// `etcdctl get "" --prefix -w json` (at `revision` when given): the header revision and every key.
    func getAll(revision: Int64? = nil) throws -> (revision: Int64, kvs: [ObservedKV]) {
        var arguments = ["get", "", "--prefix", "-w", "json"]
        if let revision { arguments.append("--rev=\(revision)") }
        let response = try JSONDecoder().decode(GetResponse.self, from: Data(try etcdctl(arguments).stdout.utf8))
        let kvs = try (response.kvs ?? []).map { kv in
            guard let key = Data(base64Encoded: kv.key), let value = Data(base64Encoded: kv.value ?? "") else {
                throw TestFailure("etcdctl printed a key or value that is not base64")
            }
            return ObservedKV(
                key: Array(key), value: Array(value), createRevision: kv.create_revision, modRevision: kv.mod_revision,
                version: kv.version, lease: kv.lease ?? 0)
        }
        return (response.header.revision, kvs.sorted())
    }

    /// `etcdctl lease list` and `lease timetolive` for each: lease ID → (granted TTL, remaining TTL).
    func leases() throws -> [Int64: (granted: Int64, remaining: Int64)] {
        let list = try JSONDecoder().decode(
            LeaseList.self, from: Data(try etcdctl(["lease", "list", "-w", "json"]).stdout.utf8))
        var leases: [Int64: (Int64, Int64)] = [:]
        for lease in list.leases ?? [] {
            let output = try etcdctl([
                "lease", "timetolive", String(UInt64(bitPattern: lease.id), radix: 16), "-w", "json",
            ])
            let ttl = try JSONDecoder().decode(TimeToLive.self, from: Data(output.stdout.utf8))
            leases[lease.id] = (ttl.granted, ttl.ttl)
        }
        return leases
    }

    func logTail(_ lines: Int = 30) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    deinit { stop() }

    private struct GetResponse: Decodable {
        struct Header: Decodable { var revision: Int64 }
        struct KV: Decodable {
            var key: String
            var create_revision: Int64
            var mod_revision: Int64
            var version: Int64
            var value: String?
            var lease: Int64?
        }
        var header: Header
        var kvs: [KV]?
    }

    private struct LeaseList: Decodable {
        struct Lease: Decodable { var id: Int64 }
        var leases: [Lease]?
    }

    private struct TimeToLive: Decodable {
        var ttl: Int64
        var granted: Int64
        enum CodingKeys: String, CodingKey {
            case ttl
            case granted = "granted-ttl"
        }
    }
}
