#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file descriptor with positioned reads and writes that retry short transfers and EINTR, turning failures into
/// `BoltError`s that name the file and the offset. Reads never go through a mapping of the file, so a file that
/// shrinks or lies about its size costs an error, not a SIGBUS.
final class FileDescriptor {
    let path: String
    private(set) var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    static func openForReading(_ path: String) throws(BoltError) -> FileDescriptor {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BoltError(.io, path: path, "cannot open for reading: \(errnoText())") }
        return FileDescriptor(path: path, fd: fd)
    }

    /// Creates the file, or empties an existing one.
    static func create(_ path: String) throws(BoltError) -> FileDescriptor {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BoltError(.io, path: path, "cannot create: \(errnoText())") }
        return FileDescriptor(path: path, fd: fd)
    }

    func size() throws(BoltError) -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw BoltError(.io, path: path, "cannot stat: \(errnoText())") }
        return Int64(st.st_size)
    }

    /// Reads exactly `count` bytes at `offset`; a file that ends first is `truncated`.
    func read(count: Int, at offset: Int64, pageID: UInt64? = nil) throws(BoltError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let done = try fill(&buffer, at: offset, pageID: pageID)
        guard done == count else {
            throw BoltError(
                .truncated, path: path,
                "file ends at byte \(offset + Int64(done)) but \(count) bytes were expected from offset \(offset)",
                pageID: pageID, offset: offset)
        }
        return buffer
    }

    /// Reads up to `count` bytes at `offset` (fewer only at the end of the file).
    func readUpTo(count: Int, at offset: Int64) throws(BoltError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let done = try fill(&buffer, at: offset, pageID: nil)
        buffer.removeLast(count - done)
        return buffer
    }

    /// Reads into `buffer` from `offset` until it is full or the file ends, retrying short reads and EINTR;
    /// returns how many bytes were read.
    private func fill(_ buffer: inout [UInt8], at offset: Int64, pageID: UInt64?) throws(BoltError) -> Int {
        var done = 0
        var failure: BoltError?
        buffer.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            while done < raw.count {
                let n = pread(fd, base + done, raw.count - done, off_t(offset) + off_t(done))
                if n > 0 {
                    done += n
                } else if n == 0 {
                    return
                } else if errno != EINTR {
                    failure = BoltError(.io, path: path, "read failed: \(errnoText())", pageID: pageID, offset: offset)
                    return
                }
            }
        }
        if let failure { throw failure }
        return done
    }

    func write(_ bytes: [UInt8], at offset: Int64) throws(BoltError) {
        var done = 0
        var failure: BoltError?
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            while done < raw.count {
                let n = pwrite(fd, base + done, raw.count - done, off_t(offset) + off_t(done))
                if n >= 0 {
                    done += n
                } else if errno != EINTR {
                    failure = BoltError(.io, path: path, "write failed: \(errnoText())", offset: offset + Int64(done))
                    return
                }
            }
        }
        if let failure { throw failure }
    }

    func sync() throws(BoltError) {
        guard fsync(fd) == 0 else { throw BoltError(.io, path: path, "fsync failed: \(errnoText())") }
    }

    func close() {
        if fd >= 0 {
            _ = closeDescriptor(fd)
            fd = -1
        }
    }

    deinit { close() }
}

private func closeDescriptor(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
        Glibc.close(fd)
    #else
        Darwin.close(fd)
    #endif
}

func errnoText() -> String {
    String(cString: strerror(errno))
}
