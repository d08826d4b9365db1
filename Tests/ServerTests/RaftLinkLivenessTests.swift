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
        private let condition = NSCondition()

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
                    condition.lock()
                    accepted.withLock { $0 += 1 }
                    condition.broadcast()
                    condition.unlock()
                    Thread.detachNewThread {
                        var buffer = [UInt8](repeating: 0, count: 65536)
                        while read(connection, &buffer, buffer.count) > 0 {}
                        close(connection)
                    }
                }
            }
        }

        /// Waits until `count` connections were accepted; false at the deadline.
        func waitForConnections(_ count: Int, timeout: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            condition.lock()
            defer { condition.unlock() }
            while accepted.withLock({ $0 }) < count {
                if !condition.wait(until: deadline) { return accepted.withLock { $0 } >= count }
            }
            return true
        }

        var connections: Int { accepted.withLock { $0 } }

        deinit {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    /// Blocking waits off the cooperative pool.
    static func onThread(_ body: @escaping @Sendable () -> Bool) async -> Bool {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: body()) }
        }
    }

    @Test func aLinkWhosePeerStopsAnsweringIsClosedAndRedialled() async throws {
        let peer = try SilentPeer()
        let dials = Mutex<[(at: Date, outcome: String)]>([])
        let broken = Mutex<[Date]>([])
        let link = RaftLink(
            peer: 2, url: try ListenURL("http://127.0.0.1:\(peer.port)"), security: PlaintextPeers(),
            logger: Logger(label: "test"),
            identity: { RaftLink.Identity(clusterID: 1, from: 1) },
            events: RaftLink.Events(
                broken: { broken.withLock { $0.append(Date()) } }, sent: { _ in },
                dialed: { error in dials.withLock { $0.append((Date(), error.map { "\($0)" } ?? "ok")) } },
                replaced: { _ in }))
        defer { link.stop() }
        _ = link.send([[1, 2, 3]])  // The first send dials.
        let first = await Self.onThread { peer.waitForConnections(1, timeout: 30) }
        #expect(first, "the link never dialled")
        // Nothing answers its PINGs: within deadAfter (5 s) plus a ping interval the connection is given up and
        // reported broken; Raft's next message (sent here every 100 ms, as heartbeats would be) dials again.
        let started = Date()
        var second = false
        for _ in 0..<300 where !second {
            _ = link.send([[1, 2, 3]])
            second = await Self.onThread { peer.waitForConnections(2, timeout: 0.1) }
        }
        let waited = Date().timeIntervalSince(started)
        let outcomes = dials.withLock { $0.map(\.outcome) }
        #expect(second, "the unanswered connection was kept for \(waited) s; dials: \(outcomes)")
        // Timed from the dial that succeeded (on a loaded machine an earlier attempt may have failed on its own
        // limit): the connection was reported broken only after 5 s without answers.
        let connected = try #require(dials.withLock { $0.first { $0.outcome == "ok" }?.at }, "\(outcomes)")
        let cut = try #require(broken.withLock { $0.first { $0 > connected } }, "never reported broken: \(outcomes)")
        #expect(cut.timeIntervalSince(connected) >= 4.5, "closed \(cut.timeIntervalSince(connected)) s after dialling")
    }
}
