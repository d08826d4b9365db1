#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An error from the operating system, with the operation and the path it concerned.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var path: String
    public var errno: Int32

    public init(operation: String, path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// A thin owner of a POSIX file descriptor.
///
/// The log and snapshot code needs exactly the calls whose durability semantics it reasons about
/// (`pwrite`, `fdatasync`, `ftruncate`, `rename` + directory `fsync`); Foundation's file APIs hide them.
public final class File: @unchecked Sendable {
    public let path: String
    public let fd: Int32

    /// Opens `path`; `create` makes it if missing with `mode`.
    public init(path: String, writable: Bool, create: Bool = false, truncate: Bool = false, mode: mode_t = 0o644)
        throws
    {
        var flags = writable ? O_RDWR : O_RDONLY
        if create { flags |= O_CREAT }
        if truncate { flags |= O_TRUNC }
        flags |= O_CLOEXEC
        let fd = Glibc.open(path, flags, mode)
        guard fd >= 0 else { throw FileError(operation: "open", path: path, errno: errno) }
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    public var size: Int {
        get throws {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw FileError(operation: "fstat", path: path, errno: errno) }
            return Int(st.st_size)
        }
    }

    /// Writes all of `bytes` at `offset`, retrying short writes and EINTR.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(operation: "write", path: path, errno: errno)
            }
            done += n
        }
    }

    /// Reads up to `count` bytes at `offset` (fewer only at end of file).
    public func read(count: Int, at offset: Int) throws -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var done = 0
        try result.withUnsafeMutableBytes { (buffer) throws in
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileError(operation: "read", path: path, errno: errno)
                }
                if n == 0 { break }
                done += n
            }
        }
        if done < count { result.removeLast(count - done) }
        return result
    }

    /// Makes written data durable. `fdatasync` skips metadata that is not needed to read the data back.
    public func sync(dataOnly: Bool = true) throws {
        #if canImport(Glibc)
            let rc = dataOnly ? fdatasync(fd) : fsync(fd)
        #else
            let rc = fsync(fd)
        #endif
        guard rc == 0 else { throw FileError(operation: "fsync", path: path, errno: errno) }
    }

    public func truncate(to length: Int) throws {
        guard ftruncate(fd, off_t(length)) == 0 else {
            throw FileError(operation: "truncate", path: path, errno: errno)
        }
    }

    /// Reserves `length` bytes so appends do not extend the file; best effort where unsupported.
    public func preallocate(length: Int) {
        #if canImport(Glibc)
            _ = posix_fallocate(fd, 0, off_t(length))
        #endif
    }
}

/// Directory and path helpers with the durability steps spelled out.
public enum FileSystem {
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates `path` and missing parents, durably: a directory's entry is only durable once the directory holding
    /// it is fsynced, so each one created here is followed by an fsync of its parent. Without it, a power loss
    /// shortly after a member's first start could take its whole data directory (log, database and all) with it,
    /// however carefully the files inside were synced: the power-loss harness (docs/POWER_LOSS.md) found exactly that.
    public static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws {
        if isDirectory(path) { return }
        var prefix = path.hasPrefix("/") ? "/" : ""
        var parent = path.hasPrefix("/") ? "/" : "."
        for component in path.split(separator: "/") {
            prefix += component
            if !isDirectory(prefix) {
                if mkdir(prefix, mode) != 0 {
                    guard errno == EEXIST else { throw FileError(operation: "mkdir", path: prefix, errno: errno) }
                } else {
                    try syncDirectory(parent)
                }
            }
            parent = prefix
            prefix += "/"
        }
    }

    /// Names in a directory (no "." or ".."), sorted.
    public static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw FileError(operation: "opendir", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// fsync on a directory makes renames and creations inside it durable.
    public static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileError(operation: "fsync", path: path, errno: errno) }
    }

    public static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw FileError(operation: "rename", path: from, errno: errno) }
    }

    public static func remove(_ path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else {
            throw FileError(operation: "unlink", path: path, errno: errno)
        }
    }

    /// Removes a directory tree (used for scratch data and failed snapshot installs).
    public static func removeTree(_ path: String) throws {
        if !exists(path) { return }
        if isDirectory(path) {
            for name in try list(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 else { throw FileError(operation: "rmdir", path: path, errno: errno) }
        } else {
            try remove(path)
        }
    }

    public static func fileSize(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }

    /// Replaces `path` with `bytes` so that a crash leaves either the old or the new content, never a mix:
    /// write a temporary file in the same directory, fsync it, rename over the target, fsync the directory.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let temporary = path + ".tmp"
        do {
            let file = try File(path: temporary, writable: true, create: true, truncate: true, mode: mode)
            try file.write(bytes, at: 0)
            guard fchmod(file.fd, mode) == 0 else { throw FileError(operation: "chmod", path: temporary, errno: errno) }
            try file.sync(dataOnly: false)
        }
        try rename(temporary, to: path)
        try syncDirectory(directory.isEmpty ? "." : directory)
    }
}
