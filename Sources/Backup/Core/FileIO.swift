import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Thin POSIX file access. Foundation's `FileHandle` hides `fsync` of directories and reports errors without the path;
/// backups need both: durability is the point (write, fsync, rename, fsync the directory), and every error should name
/// the file.
enum FileIO {
    /// Chunk size for streaming copies and hashing: large enough for sequential throughput, small enough to bound memory.
    static let chunkSize = 1 << 20

    static func error(_ path: String, _ operation: String, _ code: Int32 = errno) -> BackupError {
        .io(path: path, operation: operation, detail: String(cString: strerror(code)))
    }

    /// Size of a regular file, nil when it does not exist.
    static func size(_ path: String) throws -> Int64? {
        var st = stat()
        if stat(path, &st) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw error(path, "stat")
        }
        return Int64(st.st_size)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Modification time, nil when the path does not exist.
    static func modificationTime(_ path: String) -> Date? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        #if canImport(Darwin)
            let ts = st.st_mtimespec
        #else
            let ts = st.st_mtim
        #endif
        return Date(timeIntervalSince1970: Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9)
    }

    /// `fsync` of a directory, so that entries created, renamed or removed in it survive a crash.
    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw error(path, "open directory") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw error(path, "fsync directory") }
    }

    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw error(path, "mkdir") }
    }

    /// Creates the directory and its missing parents (like `mkdir -p`).
    static func makeDirectories(_ path: String) throws {
        if isDirectory(path) { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try makeDirectories(parent) }
        try makeDirectory(path)
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Foundation.rename(from, to) == 0 else { throw error(from, "rename to \(to)") }
    }

    /// Removes a file; a missing file is not an error.
    static func removeFile(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw error(path, "unlink") }
    }

    /// Removes an empty directory; a missing one is not an error.
    static func removeDirectory(_ path: String) throws {
        if rmdir(path) != 0 && errno != ENOENT { throw error(path, "rmdir") }
    }

    /// Names in a directory, without `.` and `..`; nil when the directory does not exist.
    static func entries(_ path: String) throws -> [String]? {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return nil }
            throw error(path, "opendir")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Reads a small file whole, refusing anything larger than `limit` (manifests are a few hundred bytes; a huge file
    /// where a manifest should be is damage, not data).
    static func readSmallFile(_ path: String, limit: Int) throws -> [UInt8] {
        let reader = try FileReader(path: path)
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = try reader.read(into: &chunk)
            if n == 0 { return result }
            result.append(contentsOf: chunk[0..<n])
            if result.count > limit {
                throw BackupError.io(path: path, operation: "read", detail: "larger than \(limit) bytes")
            }
        }
    }

    /// Writes `bytes` to `path` atomically and durably: a temporary file in the same directory, fsync, rename, fsync of
    /// the directory. Readers see either the old content or the new, never a prefix.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp"
        let writer = try FileWriter(path: temporary)
        do {
            try bytes.withUnsafeBytes { try writer.write($0) }
            try writer.sync()
            try writer.close()
            try rename(temporary, path)
        } catch {
            try? removeFile(temporary)
            throw error
        }
        try syncDirectory((path as NSString).deletingLastPathComponent)
    }
}

/// A file open for sequential reading. Closed on deinit.
final class FileReader {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileIO.error(path, "open") }
    }

    deinit { close(fd) }

    /// Fills `buffer` from the start as far as the file allows; returns the byte count, 0 at end of file.
    func read(into buffer: inout [UInt8], maximum: Int? = nil) throws -> Int {
        let limit = min(maximum ?? buffer.count, buffer.count)
        return try buffer.withUnsafeMutableBytes { try read(upTo: limit, into: $0) }
    }

    /// Reads up to `count` bytes into fresh memory via `body` (used to fill network buffers without an extra copy).
    func read(upTo count: Int, into pointer: UnsafeMutableRawBufferPointer) throws -> Int {
        var filled = 0
        let limit = min(count, pointer.count)
        while filled < limit {
            let n = Foundation.read(fd, pointer.baseAddress! + filled, limit - filled)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIO.error(path, "read")
            }
            if n == 0 { break }
            filled += n
        }
        return filled
    }

    func seek(to offset: Int64) throws {
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else { throw FileIO.error(path, "seek") }
    }
}

/// A file created (or truncated) for writing. `close()` reports errors; deinit closes silently as a fallback.
final class FileWriter {
    let path: String
    private var fd: Int32

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileIO.error(path, "create") }
    }

    deinit { if fd >= 0 { Foundation.close(fd) } }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var written = 0
        while written < bytes.count {
            let n = Foundation.write(fd, bytes.baseAddress! + written, bytes.count - written)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIO.error(path, "write")
            }
            written += n
        }
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw FileIO.error(path, "fsync") }
    }

    func close() throws {
        guard fd >= 0 else { return }
        let result = Foundation.close(fd)
        fd = -1
        guard result == 0 else { throw FileIO.error(path, "close") }
    }
}
