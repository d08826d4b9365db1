import NIOCore
import NIOPosix
import Testing

@testable import RPCTransport

#if canImport(Glibc)
    import Glibc
#endif

/// The client and peer ports open on the calling thread, before any event loop exists, and hold connections in
/// the backlog until the listener adopts the socket.
@Suite struct ListeningSocketTests {
    /// A blocking TCP connect to 127.0.0.1:`port`; true when the handshake completed.
    static func connects(to port: Int) -> Bool {
        let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    @Test func aClientConnectingBeforeTheListenerRunsWaitsInTheBacklog() throws {
        let fd = try ListeningSocket.open(host: "127.0.0.1", port: 0)
        defer { close(fd) }
        let port = try #require(ListeningSocket.port(of: fd))
        #expect(port > 0)
        #expect(Self.connects(to: port), "the handshake completes with no event loop accepting yet")
    }

    @Test func aTakenPortFailsWithEADDRINUSE() throws {
        let fd = try ListeningSocket.open(host: "127.0.0.1", port: 0)
        defer { close(fd) }
        let error = #expect(throws: IOError.self) {
            _ = try ListeningSocket.open(host: "127.0.0.1", port: try #require(ListeningSocket.port(of: fd)))
        }
        #expect(error?.errnoCode == EADDRINUSE)
    }

    /// etcd binds `localhost` as well as IP literals (resolved from /etc/hosts, no network).
    @Test func localhostIsResolved() throws {
        let fd = try ListeningSocket.open(host: "localhost", port: 0)
        defer { close(fd) }
        #expect(ListeningSocket.port(of: fd).map { $0 > 0 } == true)
    }

    @Test func theTransportAdoptsTheOpenSocketAndAcceptsWhatWaited() async throws {
        let transport = RPCServerTransport(options: .init(host: "127.0.0.1", port: 0, maxMessageBytes: 1 << 20))
        try transport.open()
        let port = try #require(transport.boundPort)
        #expect(Self.connects(to: port))
        try await transport.bind(on: MultiThreadedEventLoopGroup.singleton)
        #expect(transport.boundPort == port, "the listener serves the socket opened first")
        transport.beginGracefulShutdown()
    }
}
