import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP listening socket opened on the calling thread, before any event loop or task exists.
///
/// A client that dials a member while it starts must find the port open: a refused connection makes gRPC clients
/// (etcdctl's health check among them) back off for a whole second. Opening the socket synchronously in `main`,
/// right after the flags are read, makes the port ready within the process's first milliseconds; the listener
/// adopts it later (`ServerBootstrap.withBoundSocket`) and accepts once the member serves.
enum ListeningSocket {
    /// Connections that may wait in the accept queue: the system's limit (`net.core.somaxconn`), as Go's listeners
    /// (etcd's) take it, instead of NIO's 128. A connection that finds the queue full is not refused: the kernel
    /// drops its handshake's last ACK, the client believes it is connected, and if the queue stays full for the
    /// whole SYN-ACK retry period (about a minute) the connection is reset with its requests unanswered. A storm of
    /// reconnecting clients (every kube-apiserver after a leader change) must fit.
    static let backlog: CInt = systemLimit() ?? 4096

    /// `net.core.somaxconn`, or nil where it cannot be read.
    static func systemLimit() -> CInt? {
        let fd = Glibc.open("/proc/sys/net/core/somaxconn", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = read(fd, &buffer, buffer.count)
        guard count > 0 else { return nil }
        let digits = buffer[..<count].prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        guard let value = CInt(String(decoding: digits, as: UTF8.self)), value > 0 else { return nil }
        return value
    }

    /// Binds and listens on `host:port` (IP literals are not looked up); errors are `IOError`s with the errno.
    static func open(host: String, port: Int, unixPath: String? = nil, options: SocketOptions = SocketOptions()) throws
        -> NIOBSDSocket.Handle
    {
        let address: SocketAddress
        if let unixPath {
            // As etcd: a socket file left by an earlier run is replaced.
            if unlink(unixPath) != 0 && errno != ENOENT {
                throw IOError(errnoCode: errno, reason: "remove \(unixPath)")
            }
            address = try SocketAddress(unixDomainSocketPath: unixPath)
        } else if let literal = try? SocketAddress(ipAddress: host, port: port) {
            address = literal
        } else {
            address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        }
        let fd = socket(address.protocol.rawValue, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var one: CInt = 1
        // Always, as Go's listeners (etcd's) set it on Linux; `--socket-reuse-address` asks for what is done anyway.
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        if options.reusePort {
            guard setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<CInt>.size)) == 0 else {
                let code = errno
                close(fd)
                throw IOError(errnoCode: code, reason: "setsockopt(SO_REUSEPORT)")
            }
        }
        let bound = address.withSockAddr { pointer, size in bind(fd, pointer, socklen_t(size)) }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw IOError(errnoCode: code, reason: "bind")
        }
        guard listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            throw IOError(errnoCode: code, reason: "listen")
        }
        return fd
    }

    /// The port `fd` is bound to (what port 0 picked).
    static func port(of fd: NIOBSDSocket.Handle) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        let family = CInt(storage.ss_family)
        return withUnsafePointer(to: &storage) { pointer -> Int? in
            switch family {
            case AF_INET:
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    Int(UInt16(bigEndian: $0.pointee.sin_port))
                }
            case AF_INET6:
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    Int(UInt16(bigEndian: $0.pointee.sin6_port))
                }
            default:
                return nil
            }
        }
    }

    /// Restores the backlog after NIO adopted the socket (its channel listens again with its own default).
    static func restoreBacklog(_ fd: NIOBSDSocket.Handle) {
        _ = listen(fd, backlog)
    }
}
