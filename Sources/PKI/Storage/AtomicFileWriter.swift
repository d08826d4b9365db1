import Foundation

#if canImport(Darwin)
    import Darwin
#elseif canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Crash-safe file replacement.
///
/// A member that dies half-way through writing `server.key` must not come back with a truncated key: every write goes
/// to a temporary file in the same directory, is fsynced, renamed over the target (atomic on POSIX), and the directory
/// is fsynced so the rename itself survives power loss. The replaced content is first preserved as `<name>.prev`
/// (written the same way) so an operator can roll back by hand.
public enum AtomicFileWriter {
    /// What a write did, for event reporting.
    public enum Outcome: String, Sendable, Equatable {
        case created
        case replaced
        /// The file already had exactly this content; nothing was touched (keeps `.prev` meaningful).
        case unchanged
    }

    public static let privateKeyMode: mode_t = 0o600
    public static let certificateMode: mode_t = 0o644
    public static let directoryMode: mode_t = 0o700

    @discardableResult
    public static func write(
        _ text: String,
        to url: URL,
        mode: mode_t,
        keepPrevious: Bool = true
    ) throws -> Outcome {
        try write(Array(text.utf8), to: url, mode: mode, keepPrevious: keepPrevious)
    }

    @discardableResult
    public static func write(
        _ bytes: [UInt8],
        to url: URL,
        mode: mode_t,
        keepPrevious: Bool = true
    ) throws -> Outcome {
        let existing = FileManager.default.contents(atPath: url.path).map(Array.init)
        if let existing, existing == bytes {
            try setMode(mode, at: url)
            return .unchanged
        }
        if keepPrevious, let existing {
            let existingMode = currentMode(of: url) ?? mode
            try replace(url: PKILayout.previousCopy(of: url), with: existing, mode: existingMode)
        }
        try replace(url: url, with: bytes, mode: mode)
        return existing == nil ? .created : .replaced
    }

    /// Creates the directory and its parents with mode 0700, and tightens the mode of an existing one.
    public static func ensureDirectory(_ url: URL) throws {
        do {
            try FileManager.default.createDirectory(
                at: url, withIntermediateDirectories: true,
                attributes: [.posixPermissions: NSNumber(value: directoryMode)])
        } catch {
            throw PKIError.fileSystem(
                operation: "create directory", path: url.path, reason: PEMCodec.reason(for: error))
        }
        try setMode(directoryMode, at: url)
    }

    /// Removes a file, keeping its content as `.prev` first when asked; removing a missing file is not an error, so
    /// retried cleanup steps stay idempotent.
    public static func remove(_ url: URL, keepPrevious: Bool = true) throws {
        guard let existing = FileManager.default.contents(atPath: url.path) else { return }
        if keepPrevious {
            try replace(
                url: PKILayout.previousCopy(of: url), with: Array(existing), mode: currentMode(of: url) ?? 0o600)
        }
        guard unlink(url.path) == 0 || errno == ENOENT else { throw posixError("remove", url) }
        try syncDirectory(of: url)
    }

    private static func replace(url: URL, with bytes: [UInt8], mode: mode_t) throws {
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(
            ".\(url.lastPathComponent).tmp-\(getpid())-\(UUID().uuidString.prefix(8))")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw posixError("create", temporary) }
        var succeeded = false
        defer {
            if !succeeded { unlink(temporary.path) }
        }
        do {
            defer { close(fd) }
            guard fchmod(fd, mode) == 0 else { throw posixError("chmod", temporary) }
            try bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = systemWrite(fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw posixError("write", temporary)
                    }
                    offset += written
                }
            }
            guard fsync(fd) == 0 else { throw posixError("fsync", temporary) }
        }
        guard rename(temporary.path, url.path) == 0 else { throw posixError("rename into place", url) }
        succeeded = true
        try syncDirectory(of: url)
    }

    private static func syncDirectory(of url: URL) throws {
        let directory = url.deletingLastPathComponent()
        let fd = open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("open directory", directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixError("fsync directory", directory) }
    }

    static func setMode(_ mode: mode_t, at url: URL) throws {
        guard chmod(url.path, mode) == 0 else { throw posixError("chmod", url) }
    }

    static func currentMode(of url: URL) -> mode_t? {
        var info = stat()
        guard stat(url.path, &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    private static func posixError(_ operation: String, _ url: URL) -> PKIError {
        PKIError.fileSystem(operation: operation, path: url.path, reason: String(cString: strerror(errno)))
    }
}

#if canImport(Darwin)
    private let systemWrite = Darwin.write
#elseif canImport(Glibc)
    private let systemWrite = Glibc.write
#elseif canImport(Musl)
    private let systemWrite = Musl.write
#endif
