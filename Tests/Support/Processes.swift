import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where the package lives, so tests find the binaries `swift build` produced and the tools on PATH.
public enum Paths {
    /// The package's root: this file is `Tests/Support/Processes.swift`.
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The debug `quorum` that `swift build` made.
    public static var quorum: String { packageRoot + "/.build/debug/quorum" }

    /// An executable on PATH (etcdctl, etcd, openssl), or nil.
    public static func tool(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}

/// A test's own failure with a message that says what did not happen.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The result of running a command to completion.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var ok: Bool { status == 0 }

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Serialises `Process.run()` across the whole test process.
///
/// Foundation's `Process.run()` on Linux was seen to crash (SIGSEGV in a `memcpy` under `Process.run`) when tests on
/// several threads started children at the same moment; starting one child at a time costs microseconds.
private let spawnLock = Mutex(())

/// Starts `process`, one spawn at a time across the test process (see `spawnLock`).
public func spawn(_ process: Process) throws {
    try spawnLock.withLock { _ in try process.run() }
}

/// Starts the process; the returned semaphore is signalled when it exits, so waiting for the exit is waiting for
/// the event itself.
public func launch(_ process: Process) throws -> DispatchSemaphore {
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try spawn(process)
    return exited
}

/// Runs a command with a time limit. Output goes through files, so a large output never blocks on a pipe.
public func run(
    _ executable: String, _ arguments: [String], input: String? = nil, environment: [String: String] = [:],
    timeout: Double = 60
) throws -> CommandResult {
    let scratch = TemporaryDirectory("command")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let outPath = scratch.file("out")
    let errPath = scratch.file("err")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    if let input {
        let inPath = scratch.file("in")
        _ = FileManager.default.createFile(atPath: inPath, contents: Data(input.utf8))
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
    } else {
        process.standardInput = FileHandle.nullDevice
    }
    let exited = try launch(process)
    if exited.wait(timeout: .now() + timeout) == .timedOut {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)s")
    }
    process.waitUntilExit()
    return CommandResult(
        status: process.terminationStatus,
        stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
}

/// Polls `condition` until it holds or `timeout` passes; the condition is the event, the poll only its check.
public func waitUntil(_ what: String, timeout: Double = 60, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        usleep(20_000)
    }
    throw TestFailure("\(what) did not happen within \(timeout)s")
}

/// The next port `freePort` tries, from a random start (any free port will do).
private let nextPort = Mutex(10_000 + Int.random(in: 0..<20_000))

/// A loopback port nothing listens on, below Linux's ephemeral range (32768 and up): a port the kernel handed out
/// and took back could be given next as the source port of some other test's outgoing connection, and the member
/// meant to listen on it would fail with "address already in use".
public func freePort() -> Int {
    for _ in 0..<20_000 {
        let candidate = nextPort.withLock { port -> Int in
            defer { port = port >= 31_999 ? 10_000 : port + 1 }
            return port
        }
        if canBind(candidate) { return candidate }
    }
    fatalError("no free port between 10000 and 31999")
}

private func canBind(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}
