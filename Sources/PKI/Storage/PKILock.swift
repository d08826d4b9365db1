import Foundation

#if canImport(Darwin)
    import Darwin
#elseif canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An exclusive advisory lock on `<data-dir>/pki/.lock`.
///
/// The running server renews certificates while an operator may run `quorumctl certs rotate-ca` on the same data
/// directory; both take this lock around every read-modify-write of the PKI files so neither sees the other's half-done
/// work (for example a new CA key next to the old CA certificate).
public enum PKILock {
    public static func withLock<T>(_ layout: PKILayout, _ body: () throws -> T) throws -> T {
        try withLock(directory: layout.root, body)
    }

    /// The same lock on `<directory>/.lock`, for certificate files outside a managed PKI that several processes may
    /// create at once (the gRPC proxies of one data directory with `--auto-tls`).
    public static func withLock<T>(directory: URL, _ body: () throws -> T) throws -> T {
        try AtomicFileWriter.ensureDirectory(directory)
        let path = directory.appendingPathComponent(".lock").path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw PKIError.fileSystem(operation: "open lock", path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                throw PKIError.fileSystem(operation: "lock", path: path, reason: String(cString: strerror(errno)))
            }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}
