import Foundation
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A long-running command (e.g. `etcdctl watch`) whose output the test polls; killed by pid at the end.
final class BackgroundCommand: @unchecked Sendable {
    let process = Process()
    let outputPath: String
    private let scratch = TemporaryDirectory("bg")

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        outputPath = scratch.path + "/out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try spawn(process)
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Waits until the output satisfies `condition`; fails after `timeout` seconds.
    func waitFor(timeout: Double = 15, _ condition: (String) -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(output) { return }
            if !process.isRunning && !condition(output) {
                throw TestFailure("background command exited (\(process.terminationStatus)): \(output)")
            }
            usleep(20_000)
        }
        throw TestFailure("timed out waiting; output so far:\n\(output)")
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// `etcdctl watch ...` in the background.
func etcdctlInBackground(_ endpoint: String, _ arguments: [String]) throws -> BackgroundCommand {
    guard let path = Paths.tool("etcdctl") else { throw TestFailure("etcdctl is not installed") }
    return try BackgroundCommand(path, ["--endpoints=\(endpoint)"] + arguments, environment: ["ETCDCTL_API": "3"])
}
