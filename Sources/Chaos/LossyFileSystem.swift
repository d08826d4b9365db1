import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One member's disk for the power-loss harness: `scripts/lossyfs.py` (FUSE) mounted on a directory, holding in its
/// own memory every write not yet fsynced and every directory change not yet made durable by a directory fsync
/// (the model is in the script's header). `powerCut()` kills the file system's process, so that memory is gone as a
/// machine's RAM is, unmounts what is left (the kernel's caches of the mount go with it) and mounts the durable
/// state again: what a member finds after a power loss.
///
/// Why FUSE: this kernel has no device-mapper (dm-flakey, dm-log-writes) and `kill -9` keeps the page cache; FUSE
/// works with what Debian ships (`libfuse2`, `fusepy`) and needs nothing of the member: the same binary, the same
/// system calls.
public final class LossyFileSystem: @unchecked Sendable {
    public let script: String
    public let backing: String
    public let mountPoint: String
    let logPath: String
    private let lock = NSLock()
    private var daemon: Process?
    /// How often the file system was mounted (1 + power cuts).
    public private(set) var mounts = 0
    /// The probability that a write makes one unsynced page durable early, whole or torn (0: never); see the
    /// script's header.
    let earlyWriteback: Double
    /// Seeds the choice of those pages; each mount uses the next seed.
    let seed: UInt64

    /// What a cut would drop now, as the file system reports it.
    public struct Unsynced: Sendable, Decodable {
        public var unsyncedFiles: Int
        public var unsyncedBytes: Int
        public var unsyncedDirectories: Int
        /// Pages (or their first sectors) written back before an fsync since the mount.
        public var pagesWrittenEarly: Int?
    }

    public init(
        script: String, backing: String, mountPoint: String, log: String, earlyWriteback: Double = 0, seed: UInt64 = 0
    ) {
        self.earlyWriteback = earlyWriteback
        self.seed = seed
        self.script = script
        self.backing = backing
        self.mountPoint = mountPoint
        self.logPath = log
    }

    /// Whether FUSE file systems can be mounted here: `/dev/fuse`, root (mounting without `fusermount`), and a
    /// python3 that has fusepy (and with it libfuse 2).
    public static func isSupported(script: String) -> Bool {
        guard getuid() == 0, FileManager.default.fileExists(atPath: "/dev/fuse"),
            FileManager.default.fileExists(atPath: script)
        else { return false }
        return (try? Shell.run(["python3", script, "--check"])) != nil
    }

    /// Starts the file system and returns once the kernel has it mounted (the script says so from FUSE's `init`).
    public func mount(timeout: Duration = .seconds(30)) throws {
        try FileManager.default.createDirectory(atPath: backing, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let early =
            earlyWriteback > 0
            ? ["--early-writeback", "\(earlyWriteback)", "--seed", "\(seed &+ UInt64(lock.withLock { mounts }))"] : []
        process.arguments = ["python3", script] + early + [backing, mountPoint]
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        let ready = DispatchSemaphore(value: 0)
        let seen = Mutex("")
        stdout.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                ready.signal()
                return
            }
            let text = seen.withLock { text in
                text += String(decoding: data, as: UTF8.self)
                return text
            }
            if text.contains("lossyfs: mounted") { ready.signal() }
        }
        try process.run()
        lock.withLock { daemon = process }
        let seconds = Double(timeout.components.seconds)
        let outcome = ready.wait(timeout: .now() + seconds)
        guard outcome == .success, seen.withLock({ $0.contains("lossyfs: mounted") }), isMounted else {
            let why = outcome == .timedOut ? "not mounted within \(timeout)" : "exited before mounting"
            kill()
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw ChaosError("lossyfs on \(mountPoint): \(why)\n\(text.suffix(2000))")
        }
        lock.withLock { mounts += 1 }
    }

    /// Whether the kernel lists the mount (fuse.lossyfs at `mountPoint`).
    public var isMounted: Bool {
        let table = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 2 && fields[1] == mountPoint && fields[2] == "fuse.lossyfs"
        }
    }

    /// What a cut now would drop (nil if the file system does not answer).
    public func unsynced() -> Unsynced? {
        guard let data = FileManager.default.contents(atPath: mountPoint + "/.lossyfs-unsynced") else { return nil }
        return try? JSONDecoder().decode(Unsynced.self, from: data)
    }

    /// The power goes out: everything the file system holds only in memory is lost. Whoever uses the mount must
    /// already be dead (a member is killed first, as the whole machine would stop). Then the disk is mounted again.
    public func powerCut() throws {
        kill()
        try mount()
    }

    /// Stops the file system without making anything durable, and removes the mount.
    public func kill() {
        if let process = lock.withLock({ daemon }) {
            if process.isRunning {
                Glibc.kill(process.processIdentifier, SIGKILL)
            }
            process.waitUntilExit()
            lock.withLock { daemon = nil }
        }
        // The connection is gone with the process; a lazy unmount detaches what is left even if a process still
        // has it as its working directory.
        if isMounted {
            _ = try? Shell.run(["umount", "-l", mountPoint], allowFailure: true)
        }
    }

    deinit { kill() }
}
