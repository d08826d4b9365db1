import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs system commands (`ip`, `tc`) for the fault harness, with their output captured for error messages.
enum Shell {
    struct Failure: Error, CustomStringConvertible {
        var command: String
        var status: Int32
        var output: String
        var description: String { "`\(command)` failed (\(status)): \(output)" }
    }

    /// Runs `arguments[0]` with the rest; throws unless it exits 0 (or `allowFailure`).
    @discardableResult
    static func run(_ arguments: [String], allowFailure: Bool = false) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        if process.terminationStatus != 0 && !allowFailure {
            throw Failure(command: arguments.joined(separator: " "), status: process.terminationStatus, output: output)
        }
        return output
    }

    /// The prefix that gives a command the network privileges it needs: nothing as root, `sudo -n` otherwise.
    static let privileged: [String] = getuid() == 0 ? [] : ["sudo", "-n"]
}
