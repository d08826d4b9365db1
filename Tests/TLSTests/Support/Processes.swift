import Foundation
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The package root, found from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// A product built beside the test bundle (works for any `--scratch-path`), else in `.build/debug`.
func builtProduct(_ name: String) -> URL {
    let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var candidates = [bundleDirectory.appendingPathComponent(name)]
    var probe = bundleDirectory
    for _ in 0..<4 {
        candidates.append(probe.appendingPathComponent(name))
        probe.deleteLastPathComponent()
    }
    candidates.append(packageRoot.appendingPathComponent(".build/debug/\(name)"))
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates.last!
}

/// Outcome of a finished command.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String

    var output: String { stdout + stderr }
}

/// Runs a command to completion (killed after `timeout`), output captured through files so nothing can block on a
/// full pipe.
func runCommand(
    _ executable: String, _ arguments: [String], timeout: TimeInterval = 20, environment: [String: String] = [:]
)
    throws -> CommandResult
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : "/usr/bin/\(executable)")
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env["ETCDCTL_API"] = "3"
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString).out")
    let err = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: out)
        try? FileManager.default.removeItem(at: err)
    }
    process.standardOutput = try FileHandle(forWritingTo: out)
    process.standardError = try FileHandle(forWritingTo: err)
    process.standardInput = FileHandle.nullDevice
    try spawn(process)
    let deadline = Date() + timeout
    while process.isRunning && Date() < deadline { usleep(5_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
    return CommandResult(
        status: process.terminationStatus,
        stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
}

/// A long-running child process (a quorum member, an `etcdctl watch`), stopped by its own pid only.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let logURL: URL

    init(_ executable: URL, _ arguments: [String], log: URL) throws {
        logURL = log
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["ETCDCTL_API"] = "3"
        process.environment = env
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try spawn(process)
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    func stop(grace: TimeInterval = 5) {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = Date() + grace
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Waits (bounded) for the process to exit on its own.
    func waitForExit(timeout: TimeInterval) -> Int32? {
        let deadline = Date() + timeout
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    deinit { stop(grace: 1) }
}

/// A quorum member started from the built binary on free loopback ports.
final class QuorumMember: @unchecked Sendable {
    let child: ChildProcess
    let clientPort: Int
    let dataDir: URL
    let scheme: String

    var endpoint: String { "\(scheme)://127.0.0.1:\(clientPort)" }
    var log: String { child.log }

    /// Starts `quorum` and waits until it logs that it serves (or exits, or 30 s pass).
    init(dataDir: URL, scheme: String = "https", extra: [String], waitReady: Bool = true) throws {
        self.dataDir = dataDir
        self.scheme = scheme
        clientPort = freePort()
        let peerPort = freePort()
        let arguments =
            [
                "--name", "m1", "--data-dir", dataDir.path,
                "--listen-client-urls", "\(scheme)://127.0.0.1:\(clientPort)",
                "--advertise-client-urls", "\(scheme)://127.0.0.1:\(clientPort)",
                "--listen-peer-urls", "http://127.0.0.1:\(peerPort)",
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
                "--initial-cluster", "m1=http://127.0.0.1:\(peerPort)",
            ] + extra
        let logURL = dataDir.deletingLastPathComponent().appendingPathComponent(
            "\(dataDir.lastPathComponent)-\(UUID().uuidString.prefix(4)).log")
        child = try ChildProcess(builtProduct("quorum"), arguments, log: logURL)
        if waitReady {
            let deadline = Date() + 30
            while Date() < deadline && child.isRunning && !child.log.contains("ready to serve client requests") {
                usleep(50_000)
            }
            guard child.isRunning, child.log.contains("ready to serve client requests") else {
                let log = child.log
                child.stop()
                throw SetupError("quorum did not become ready:\n\(log.suffix(4000))")
            }
        }
    }

    func stop() { child.stop() }

    deinit { child.stop() }
}

struct SetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// etcdctl arguments for a TLS endpoint.
func etcdctl(_ member: QuorumMember, cacert: URL?, cert: URL? = nil, key: URL? = nil, _ command: [String]) -> [String] {
    var arguments = ["--endpoints", member.endpoint, "--dial-timeout", "3s", "--command-timeout", "5s"]
    if let cacert { arguments += ["--cacert", cacert.path] }
    if let cert, let key { arguments += ["--cert", cert.path, "--key", key.path] }
    return arguments + command
}
