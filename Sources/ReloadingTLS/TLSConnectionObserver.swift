import Foundation
import Logging
import NIOCore
import NIOSSL
import NIOTLS
import Synchronization

/// The verified client-certificate common name of each open TLS connection, by remote address.
///
/// grpc-swift's custom transport does not expose the peer certificate to RPC handlers, but their `ServerContext`
/// carries the remote peer (`ipv4:127.0.0.1:50412`); auth maps an RPC to its user through this table.
public final class ClientIdentityRegistry: Sendable {
    private let names = Mutex<[String: String]>([:])

    public init() {}

    /// The common name for a remote address as NIO prints it (`127.0.0.1:50412`, `[::1]:50412`) or as gRPC's
    /// `ServerContext.remotePeer` does (`ipv4:127.0.0.1:50412`, `ipv6:[::1]:50412`).
    public func commonName(forRemote remote: String) -> String? {
        names.withLock { $0[Self.normalize(remote)] }
    }

    public var count: Int { names.withLock { $0.count } }

    func record(_ commonName: String, remote: SocketAddress?) {
        guard let key = remote.flatMap(Self.key) else { return }
        names.withLock { $0[key] = commonName }
    }

    func forget(remote: SocketAddress?) {
        guard let key = remote.flatMap(Self.key) else { return }
        names.withLock { _ = $0.removeValue(forKey: key) }
    }

    static func key(_ address: SocketAddress) -> String? {
        guard let ip = address.ipAddress, let port = address.port else { return nil }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    static func normalize(_ remote: String) -> String {
        for prefix in ["ipv4:", "ipv6:"] where remote.hasPrefix(prefix) {
            return String(remote.dropFirst(prefix.count))
        }
        return remote
    }
}

/// Where TLS handshake outcomes go: the log (with the reason spelled out), the failure counter by reason, and the
/// identity table.
public final class TLSEventSink: Sendable {
    let logger: Logger
    /// Counts a failure by reason (`quorum_tls_handshake_failures_total` on a member).
    let countFailure: (@Sendable (String) -> Void)?
    public let identities: ClientIdentityRegistry

    public init(
        logger: Logger, countFailure: (@Sendable (_ reason: String) -> Void)?,
        identities: ClientIdentityRegistry = ClientIdentityRegistry()
    ) {
        self.logger = logger
        self.countFailure = countFailure
        self.identities = identities
    }

    package func handshakeFailed(_ rejection: TLSRejection, side: String, remote: SocketAddress?) {
        logger.warning(
            "rejected TLS connection: \(rejection.message)",
            metadata: [
                "side": "\(side)", "remote-addr": "\(remote.flatMap(ClientIdentityRegistry.key) ?? "unknown")",
                "reason": "\(rejection.reason)",
            ])
        // Counted after logging, so whoever waits for the counter also finds the log line.
        countFailure?(rejection.reason)
    }
}

/// Per-connection verification outcome, shared by the verification callback and the observer handler of one
/// connection; both run on the connection's event loop, the lock only satisfies the compiler.
final class ConnectionTLSRecord: Sendable {
    struct State {
        var verified: VerifiedPeer?
        var rejected = false
        var handshakeDone = false
    }

    let state = Mutex(State())
}

/// Sits right behind the TLS handler of one accepted connection: records the verified common name once the
/// handshake completes, forgets it when the connection closes, and explains handshake errors that the verification
/// callback did not see (no certificate, plaintext, old TLS version, no shared cipher).
final class TLSConnectionObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let record: ConnectionTLSRecord
    private let sink: TLSEventSink
    private let side: String
    private let minimumVersion: String
    private var remote: SocketAddress?

    init(record: ConnectionTLSRecord, sink: TLSEventSink, side: String, minimumVersion: String) {
        self.record = record
        self.sink = sink
        self.side = side
        self.minimumVersion = minimumVersion
    }

    func handlerAdded(context: ChannelHandlerContext) {
        remote = context.channel.remoteAddress
    }

    func channelActive(context: ChannelHandlerContext) {
        remote = context.channel.remoteAddress
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            let verified = record.state.withLock { state -> VerifiedPeer? in
                state.handshakeDone = true
                return state.verified
            }
            if let name = verified?.commonName { sink.identities.record(name, remote: remote) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let (done, rejected) = record.state.withLock { ($0.handshakeDone, $0.rejected) }
        if !done && !rejected, Self.isHandshakeError(error) {
            record.state.withLock { $0.rejected = true }
            sink.handshakeFailed(
                TLSVerifier.classify(error, tlsMinimum: minimumVersion), side: side, remote: remote)
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        sink.identities.forget(remote: remote)
        context.fireChannelInactive()
    }

    /// A client that connects and closes without a word (port scanners, TCP health checks) is not a TLS failure.
    static func isHandshakeError(_ error: any Error) -> Bool {
        guard let error = error as? NIOSSLError else { return false }
        switch error {
        case .handshakeFailed: return true
        default: return false
        }
    }
}
