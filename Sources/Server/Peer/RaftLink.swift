import EtcdProto
import Foundation
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import Node
import Synchronization

/// The sending half of one peer link: a single long-lived HTTP/2 stream carrying `quorumpb.Raft/Messages`,
/// written straight from the Raft loop's thread onto the connection's event loop.
///
/// Why not grpc-swift's client, as for the other peer calls: every Raft message of a write crosses this link
/// twice (append, acknowledgement), and the async client put a task wake-up and an executor hop in front of
/// each batch. Here a batch is one protobuf encode and one `writeAndFlush`. Delivery is best effort, as Raft
/// expects: while the link is down, or the peer reads too slowly for the stream to stay writable, batches are
/// dropped and Raft retransmits; a broken link is reported unreachable and redialled with backoff.
final class RaftLink: Sendable {
    struct Identity: Sendable {
        var clusterID: UInt64
        var from: UInt64
    }

    private enum Connection {
        case idle
        case connecting
        case open(any Channel, stream: any Channel)
        case waiting(until: NIODeadline)
        case stopped
    }

    private struct State {
        var connection = Connection.idle
        var backoff = TimeAmount.milliseconds(50)
    }

    let peer: UInt64
    let url: ListenURL
    private let security: any PeerClientSecurity
    private let group: any EventLoopGroup
    private let identity: @Sendable () -> Identity
    private let onBroken: @Sendable () -> Void
    private let onSent: @Sendable (Int) -> Void
    private let logger: Logger
    private let state = Mutex(State())

    init(
        peer: UInt64, url: ListenURL, security: any PeerClientSecurity, logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        identity: @escaping @Sendable () -> Identity, onBroken: @escaping @Sendable () -> Void,
        onSent: @escaping @Sendable (Int) -> Void
    ) {
        self.peer = peer
        self.url = url
        self.security = security
        self.logger = logger
        self.group = group
        self.identity = identity
        self.onBroken = onBroken
        self.onSent = onSent
    }

    /// Sends encoded Raft messages (any thread). Returns false when they were dropped.
    @discardableResult
    func send(_ messages: [[UInt8]]) -> Bool {
        let stream: (any Channel)? = state.withLock { s in
            if case .open(_, let stream) = s.connection { return stream }
            return nil
        }
        guard let stream else {
            connectIfDue()
            return false
        }
        guard stream.isWritable else { return false }
        let who = identity()
        var batch = Quorumpb_RaftBatch()
        batch.clusterID = who.clusterID
        batch.from = who.from
        batch.to = peer
        batch.messages = messages.map { Data($0) }
        guard let framed = try? GRPCWire.frame(batch) else { return false }
        stream.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(framed))), promise: nil)
        onSent(framed.readableBytes)
        return true
    }

    /// Dials now (used at start so the first messages find the link up).
    func connectIfDue() {
        let dial = state.withLock { s -> Bool in
            switch s.connection {
            case .idle:
                s.connection = .connecting
                return true
            case .waiting(let until) where until <= .now():
                s.connection = .connecting
                return true
            default:
                return false
            }
        }
        if dial { connect() }
    }

    func stop() {
        let open = state.withLock { s -> (any Channel)? in
            defer { s.connection = .stopped }
            if case .open(let connection, _) = s.connection { return connection }
            return nil
        }
        open?.close(promise: nil)
    }

    private func connect() {
        let url = self.url
        let security = self.security
        let bootstrap = ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = try security.makeTLSHandler(for: url) {
                        try channel.pipeline.syncOperations.addHandler(tls)
                    }
                }
            }
        bootstrap.connect(host: url.host, port: url.port).flatMap { channel in
            Self.openStream(on: channel, url: url).map { (channel, $0) }
        }.whenComplete { [self] result in
            switch result {
            case .success(let (channel, stream)):
                let kept = state.withLock { s -> Bool in
                    guard case .connecting = s.connection else { return false }
                    s.connection = .open(channel, stream: stream)
                    s.backoff = .milliseconds(50)
                    return true
                }
                guard kept else {
                    channel.close(promise: nil)
                    return
                }
                channel.closeFuture.whenComplete { [self] _ in broken(channel) }
                stream.closeFuture.whenComplete { _ in channel.close(promise: nil) }
            case .failure(let error):
                logger.debug("dialling peer failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
                broken(nil)
            }
        }
    }

    /// The link went down (or never came up): tell Raft, and dial again after the backoff.
    private func broken(_ channel: (any Channel)?) {
        let report = state.withLock { s -> Bool in
            switch s.connection {
            case .open(let open, _) where channel.map({ $0 === open }) ?? false:
                break
            case .connecting where channel == nil:
                break
            default:
                return false
            }
            s.connection = .waiting(until: .now() + s.backoff)
            s.backoff = min(s.backoff * 2, .seconds(1))
            return true
        }
        if report { onBroken() }
    }

    /// HTTP/2 on the connection, and the one stream of Raft messages on it.
    private static func openStream(on channel: any Channel, url: ListenURL) -> EventLoopFuture<any Channel> {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20)]
        var streamConfig = NIOHTTP2Handler.StreamConfiguration()
        // Batches of appended entries can be large; the stream stays writable up to this many unsent bytes.
        streamConfig.outboundBufferSizeHighWatermark = 8 << 20
        streamConfig.outboundBufferSizeLowWatermark = 4 << 20
        return channel.configureHTTP2Pipeline(
            mode: .client, connectionConfiguration: connection, streamConfiguration: streamConfig,
            inboundStreamInitializer: { $0.close() }
        ).flatMap { multiplexer in
            multiplexer.createStreamChannel { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandler(RaftLinkResponseHandler())
                }
            }
        }.flatMap { stream in
            let headers: HPACKHeaders = [
                ":method": "POST", ":scheme": url.isTLS ? "https" : "http", ":path": "/quorumpb.Raft/Messages",
                ":authority": "\(url.host):\(url.port)", "content-type": "application/grpc", "te": "trailers",
            ]
            return stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: headers))).map { stream }
        }
    }
}

/// Reads what the receiving member answers on the stream: nothing until it refuses or ends the stream, which
/// closes it (and with it the connection, so the link redials).
final class RaftLinkResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .headers(let headers) = unwrapInboundIn(data), headers.endStream {
            context.close(promise: nil)
        }
    }
}
