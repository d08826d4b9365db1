import Foundation
import Synchronization
import TestSupport

@testable import Backup

#if canImport(Glibc)
    import Glibc
#endif

/// moto's standalone S3-protocol server (`python3 -m moto.server`), started on a loopback port the OS picks and
/// stopped by its process ID. Each test gets its own, so tests share no state.
///
/// Needs `python3 -m pip install 'moto[server]==5.2.1'` (moto with Flask, which its server mode needs).
///
/// Two details of running it from a test process: the child inherits the test thread's blocked-signal mask, in which
/// SIGTERM is blocked, so `stop` sends SIGKILL (moto keeps nothing worth flushing); and the server is started through
/// a two-line wrapper that exits when its standard input closes, so it cannot outlive a test process that crashes.
final class MotoServer: Sendable {
    let endpoint: String
    let port: Int
    private let process: Process
    private let stdin: Pipe
    private let output: Shared<[String]>

    struct StartError: Error, CustomStringConvertible {
        var description: String
    }

    static let hint = "The S3 tests need moto's server: python3 -m pip install 'moto[server]==5.2.1'"

    static let wrapper = """
        import os, sys, threading, runpy
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
        sys.argv = ["moto.server", "-H", "127.0.0.1", "-p", "0"]
        runpy.run_module("moto.server", run_name="__main__")
        """

    /// Starts the server and returns once it listens; throws with its output if it does not within `timeout` seconds.
    static func start(timeout: TimeInterval = 60) async throws -> MotoServer {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", wrapper]
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONUNBUFFERED"] = "1"
        process.environment = environment
        let pipe = Pipe()
        let stdin = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = stdin
        do {
            try spawn(process)
        } catch {
            throw StartError(description: "could not run python3 to start moto: \(error). \(Self.hint)")
        }

        // The server prints "Running on http://127.0.0.1:PORT" once it listens. A thread reads all of its output (so
        // that the server never blocks on a full pipe), keeps the last lines, and reports the port once.
        let output = Shared<[String]>([])
        enum Outcome: Sendable {
            case listening(Int)
            case exited
            case timedOut
        }
        let outcome = Shared<(result: Outcome?, continuation: CheckedContinuation<Outcome, Never>?)>((nil, nil))
        @Sendable func finish(_ result: Outcome) {
            let c = outcome.update { state -> CheckedContinuation<Outcome, Never>? in
                guard state.result == nil else { return nil }
                state.result = result
                return state.continuation
            }
            c?.resume(returning: result)
        }
        let reader = pipe.fileHandleForReading
        Thread.detachNewThread {
            var pending = ""
            while true {
                let data = reader.availableData
                if data.isEmpty { break }
                pending += String(decoding: data, as: UTF8.self)
                while let newline = pending.firstIndex(of: "\n") {
                    let line = String(pending[..<newline])
                    pending = String(pending[pending.index(after: newline)...])
                    output.update { lines in
                        lines.append(line)
                        if lines.count > 200 { lines.removeFirst(lines.count - 200) }
                    }
                    if let range = line.range(of: "Running on http://127.0.0.1:"),
                        let port = Int(line[range.upperBound...].prefix { $0.isNumber })
                    {
                        finish(.listening(port))
                    }
                }
            }
            finish(.exited)
        }
        let timer = Task {
            try? await Task.sleep(for: .seconds(timeout))
            finish(.timedOut)
        }
        let result = await withCheckedContinuation { (c: CheckedContinuation<Outcome, Never>) in
            let early = outcome.update { state -> Outcome? in
                if let result = state.result { return result }
                state.continuation = c
                return nil
            }
            if let early { c.resume(returning: early) }
        }
        timer.cancel()
        let port: Int
        switch result {
        case .listening(let p):
            port = p
        case .exited, .timedOut:
            MotoServer(process: process, stdin: stdin, port: 0, output: output).stop()
            let why = if case .exited = result { "it exited" } else { "no port within \(Int(timeout))s" }
            throw StartError(
                description: """
                    moto's S3 server did not start (\(why)). \(Self.hint)
                    Its output:
                    \(output.value.suffix(20).joined(separator: "\n"))
                    """)
        }
        let server = MotoServer(process: process, stdin: stdin, port: port, output: output)
        print("moto server pid \(process.processIdentifier) listening on 127.0.0.1:\(port)")
        return server
    }

    private init(process: Process, stdin: Pipe, port: Int, output: Shared<[String]>) {
        self.process = process
        self.stdin = stdin
        self.port = port
        self.output = output
        endpoint = "http://127.0.0.1:\(port)"
    }

    /// Stops the server: SIGKILL to its pid, then waits for it.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? stdin.fileHandleForWriting.close()
    }

    /// The server's latest output lines (its request log), for failure messages.
    var recentOutput: String { output.value.suffix(30).joined(separator: "\n") }

    deinit { stop() }
}
