import Foundation
import Logging
import Synchronization
import Testing

@testable import Server

#if canImport(Glibc)
    import Glibc
#endif

/// A Raft link must notice a connection that stopped answering: Raft messages flow one way on it, so a peer that is
/// gone (or a partition that swallows every packet) looks like an idle peer, and what this member writes is
/// buffered by the kernel for many minutes while its votes and acknowledgements go nowhere.
@Suite struct RaftLinkLivenessTests {
    /// A peer that accepts HTTP/2 (it sends its SETTINGS, so the dial succeeds) and then never answers anything,
    /// PINGs included. Counts the connections it accepted.
    final class SilentPeer: @unchecked Sendable {
        let port: Int
        private let fd: Int32
        private let accepted = Mutex(0)

        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard fd >= 0, bound == 0, listen(fd, 8) == 0 else { throw POSIXError(.EADDRINUSE) }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            port = Int(UInt16(bigEndian: address.sin_port))
            Thread.detachNewThread { [self] in
                while true {
                    let connection = accept(fd, nil, nil)
                    guard connection >= 0 else { return }
                    // The server's preface: an empty SETTINGS frame. Then silence; what arrives is read and dropped.
                    let settings: [UInt8] = [0, 0, 0, 4, 0, 0, 0, 0, 0]
                    _ = settings.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
                    accepted.withLock { $0 += 1 }
                    Thread.detachNewThread {
                        var buffer = [UInt8](repeating: 0, count: 65536)
                        while read(connection, &buffer, buffer.count) > 0 {}
                        close(connection)
                    }
                }
            }
        }

        var connections: Int { accepted.withLock { $0 } }

        deinit {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    @Test func aLinkWhosePeerStopsAnsweringIsClosedAndRedialled() async throws {
        let peer = try SilentPeer()
        let dials = Mutex<[(at: Date, outcome: String)]>([])
        let broken = Mutex<[Date]>([])
        let link = RaftLink(
            peer: 2, url: try ListenURL("http://127.0.0.1:\(peer.port)"), security: PlaintextPeers(),
            logger: Logger(label: "test"),
            identity: { RaftLink.Identity(clusterID: 1, from: 1, peerURLs: ["http://127.0.0.1:1"]) },
            events: RaftLink.Events(
                broken: { broken.withLock { $0.append(Date()) } }, sent: { _ in },
                dialed: { error in dials.withLock { $0.append((Date(), error.map { "\($0)" } ?? "ok")) } },
                replaced: { _ in }))
        defer { link.stop() }
        // Raft sends a message every 100 ms (as heartbeats would); each send dials if there is no connection. On a
        // loaded machine the first attempts may fail on their own limits (connect timeout) and be retried, so
        // everything below is timed from the first dial that succeeded, not from the first send.
        var connected: Date?
        for _ in 0..<300 where connected == nil {
            _ = link.send([[1, 2, 3]])
            try await Task.sleep(for: .milliseconds(100))
            connected = dials.withLock { $0.first { $0.outcome == "ok" }?.at }
        }
        let since = try #require(connected, "the link never connected: \(dials.withLock { $0.map(\.outcome) })")
        let acceptedBefore = peer.connections
        // Nothing answers its PINGs: within deadAfter (5 s) plus a ping interval the connection is given up and
        // reported broken, and the next message dials again.
        var cut: Date?
        var redialled = false
        for _ in 0..<300 where cut == nil || !redialled {
            _ = link.send([[1, 2, 3]])
            try await Task.sleep(for: .milliseconds(100))
            redialled = peer.connections > acceptedBefore
            cut = broken.withLock { $0.first { $0 > since } }
        }
        let outcomes = dials.withLock { $0.map(\.outcome) }
        #expect(redialled, "the unanswered connection was never replaced; dials: \(outcomes)")
        let brokenAt = try #require(cut, "never reported broken: \(outcomes)")
        #expect(
            brokenAt.timeIntervalSince(since) >= 4.5, "closed \(brokenAt.timeIntervalSince(since)) s after dialling")
    }
}
