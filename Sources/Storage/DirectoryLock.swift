#if canImport(Glibc)
    import Glibc
#endif

/// An exclusive advisory lock on a data directory, so two members never write one log.
/// Held for the life of the process; the kernel drops it when the process dies, even by `kill -9`.
public final class DirectoryLock: @unchecked Sendable {
    private let fd: Int32

    public init(directory: String) throws {
        let path = directory + "/LOCK"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(operation: "open", path: path, errno: errno) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            close(fd)
            throw FileError(operation: "lock (is another member using this data directory?)", path: path, errno: e)
        }
    }

    deinit { close(fd) }
}
