import EtcdProto
import Foundation
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import Node
import RPCTransport
import Synchronization

/// The sending half of one peer link: a single long-lived HTTP/2 stream carrying `quorumpb.Raft/Messages`,
/// written straight from the Raft loop's thread onto the connection's event loop.
///
/// Why not grpc-swift's client, as for the other peer calls: every Raft message of a write crosses this link
/// twice (append, acknowledgement), and the async client put a task wake-up and an executor hop in front of
/// each batch. Here a batch is one protobuf encode and one `writeAndFlush`. Delivery is best effort, as Raft
/// expects: while the link is down, or the peer reads too slowly for the stream to stay writable, batches are
/// dropped and Raft retransmits; a broken link is reported unreachable and redialled with backoff.
///
/// When to dial, redial and replace a connection is decided by `RaftLinkState`; this class performs it.
final class RaftLink: Sendable {
    struct Identity: Sendable {
        var clusterID: UInt64
        var from: UInt64
        /// This member's advertised peer URLs (see `Quorumpb_RaftBatch.fromPeerUrls`).
        var peerURLs: [String]
    }

    /// What the link tells its owner.
    struct Events: Sendable {
        /// Messages were dropped or will be: Raft should probe the peer again later.
        var broken: @Sendable () -> Void
        /// Bytes written.
        var sent: @Sendable (Int) -> Void
        /// The outcome of each dial: nil when it connected, else the error (for health: a peer that refuses this
        /// member's certificate).
        var dialed: @Sendable ((any Error)?) -> Void
        /// A working connection was replaced by a fresh one (for the reconnect metric).
        var replaced: @Sendable (RaftLinkState.Renewal) -> Void
        /// The other member refused the stream with a gRPC status (its code and message): a stranger's cluster, or
        /// this member removed from the cluster.
        var refused: @Sendable (RPCRefusal) -> Void = { _ in }
    }

    private struct Shell {
        var machine = RaftLinkState()
        /// Connections by attempt number: the open one, a replacement being set up, retired ones still draining.
        var connections: [UInt64: (channel: any Channel, stream: any Channel)] = [:]
        /// The open connection's stream, for `send` (the hot path reads only this).
        var stream: (any Channel)?
        /// The connection (attempt number) whose stream carried this member's peer URLs in its first batch: the
        /// receiver reads them there only, so later batches leave them out.
        var introduced: UInt64?
    }

    let peer: UInt64
    let url: ListenURL
    private let security: any PeerClientSecurity
    private let group: any EventLoopGroup
    private let identity: @Sendable () -> Identity
    private let events: Events
    private let logger: Logger
    private let state = Mutex(Shell())

    /// How long a retired connection may take to deliver what was written on it before it is cut.
    static let retireGrace = TimeAmount.seconds(10)

    init(
        peer: UInt64, url: ListenURL, security: any PeerClientSecurity, logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        identity: @escaping @Sendable () -> Identity, events: Events
    ) {
        self.peer = peer
        self.url = url
        self.security = security
        self.logger = logger
        self.group = group
        self.identity = identity
        self.events = events
    }

    /// Sends encoded Raft messages (any thread). Returns false when they were dropped.
    @discardableResult
    func send(_ messages: [[UInt8]]) -> Bool {
        let (stream, connection, introduced, actions) = state.withLock { s in
            (s.stream, s.machine.openConnection, s.introduced, s.machine.onSendAttempt(now: Self.now()))
        }
        perform(actions)
        guard let stream, stream.isWritable else { return false }
        let who = identity()
        var batch = Quorumpb_RaftBatch()
        batch.clusterID = who.clusterID
        batch.from = who.from
        let introducing = connection != nil && connection != introduced
        if introducing { batch.fromPeerUrls = who.peerURLs }
        batch.to = peer
        batch.messages = messages.map { Data($0) }
        guard let framed = try? GRPCWire.frame(batch) else { return false }
        stream.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(framed))), promise: nil)
        if introducing { state.withLock { $0.introduced = connection } }
        events.sent(framed.readableBytes)
        return true
    }

    /// Dials now if nothing is open (used at start so the first messages find the link up).
    func connectIfDue() {
        perform(state.withLock { $0.machine.onSendAttempt(now: Self.now()) })
    }

    /// Replaces the open connection with a fresh one without dropping messages (see `RaftLinkState`).
    func renew(reason: RaftLinkState.Renewal) {
        perform(state.withLock { $0.machine.onRenew(reason) })
    }

    func stop() {
        perform(state.withLock { $0.machine.onStop() })
    }

    private static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    // MARK: Actions

    private func perform(_ actions: [RaftLinkState.Action]) {
        for action in actions {
            switch action {
            case .dial(let attempt):
                connect(attempt)
            case .retire(let id):
                retire(id)
            case .close(let id):
                let connection = state.withLock { s in
                    defer { s.connections[id] = nil }
                    return s.connections[id]
                }
                connection?.channel.close(promise: nil)
            case .reportUnreachable:
                events.broken()
            case .replaced(_, let new, let reason):
                logger.info(
                    "re-established peer link with current TLS material",
                    metadata: [
                        "peer": "\(Node.Identity.hex(peer))", "reason": "\(reason.rawValue)", "connection": "\(new)",
                    ])
                events.replaced(reason)
            }
        }
    }

    /// Ends the stream (the receiving member answers and closes its side once it has read everything written
    /// before), and closes the connection when the stream is done or the grace period ran out.
    private func retire(_ id: UInt64) {
        guard let (channel, stream) = state.withLock({ $0.connections[id] }) else { return }
        let end = HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))
        stream.writeAndFlush(end, promise: nil)
        let cut = channel.eventLoop.scheduleTask(in: Self.retireGrace) { channel.close(promise: nil) }
        stream.closeFuture.whenComplete { _ in
            cut.cancel()
            channel.close(promise: nil)
        }
    }

    private func connect(_ attempt: UInt64) {
        let url = self.url
        let security = self.security
        // Read before the handler is made: if the material changes in between, the link only renews once more.
        let generation = security.materialGeneration
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
        let connected =
            url.unixPath.map { bootstrap.connect(unixDomainSocketPath: $0) }
            ?? bootstrap.connect(host: url.host, port: url.port)
        connected.flatMap { channel in
            Self.openStream(
                on: channel, url: url, onRefused: self.events.refused,
                onGoAway: { [weak self] in
                    guard let self else { return }
                    self.perform(self.state.withLock { $0.machine.onRenew(.goAway, connection: attempt) })
                },
                onSilent: { [logger = self.logger, peer = self.peer] in
                    logger.warning(
                        "peer link unanswered; closing it to redial",
                        metadata: [
                            "peer": "\(Node.Identity.hex(peer))", "connection": "\(attempt)",
                            "silent-for": "\(LinkConnectionWatcher.deadAfter.nanoseconds / 1_000_000_000)s",
                        ])
                }
            ).map { (channel, $0) }
        }.whenComplete { [self] result in
            switch result {
            case .success(let (channel, stream)):
                let actions = state.withLock { s in
                    s.connections[attempt] = (channel, stream)
                    let actions = s.machine.onDialed(
                        attempt: attempt, generation: generation, currentGeneration: security.materialGeneration)
                    s.stream = s.machine.openConnection.flatMap { s.connections[$0]?.stream }
                    return actions
                }
                channel.closeFuture.whenComplete { [self] _ in closed(attempt) }
                stream.closeFuture.whenComplete { _ in channel.close(promise: nil) }
                events.dialed(nil)
                perform(actions)
            case .failure(let error):
                logger.debug("dialling peer failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
                events.dialed(error)
                perform(state.withLock { $0.machine.onDialFailed(attempt: attempt, now: Self.now()) })
            }
        }
    }

    /// A connection closed: forget it, and let the machine decide whether that broke the link.
    private func closed(_ id: UInt64) {
        let actions = state.withLock { s in
            s.connections[id] = nil
            let actions = s.machine.onClosed(id, now: Self.now())
            s.stream = s.machine.openConnection.flatMap { s.connections[$0]?.stream }
            return actions
        }
        perform(actions)
    }

    /// HTTP/2 on the connection, and the one stream of Raft messages on it. Succeeds once the other member's first
    /// SETTINGS frame arrived: with TLS 1.3 a client finishes its handshake before the server has checked the
    /// client's certificate, so only the server's first frame says it accepted this member (a refusal arrives as a
    /// TLS alert instead, and fails the dial with it). `onGoAway` runs when the other side asks for the connection
    /// to be replaced.
    private static func openStream(
        on channel: any Channel, url: ListenURL, onRefused: @escaping @Sendable (RPCRefusal) -> Void,
        onGoAway: @escaping @Sendable () -> Void,
        onSilent: @escaping @Sendable () -> Void
    ) -> EventLoopFuture<any Channel> {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20)]
        var streamConfig = NIOHTTP2Handler.StreamConfiguration()
        // Batches of appended entries can be large; the stream stays writable up to this many unsent bytes.
        streamConfig.outboundBufferSizeHighWatermark = 8 << 20
        streamConfig.outboundBufferSizeLowWatermark = 4 << 20
        let accepted = channel.eventLoop.makePromise(of: Void.self)
        // The handshake and the first SETTINGS within 5 s, or the connection is given up: closing it also fails the
        // writes a stalled TLS handshake holds back (a partition that starts mid-handshake would otherwise leave the
        // dial pending until TCP gives up, minutes later, and the link waits for that dial).
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(5)) {
            accepted.fail(ChannelError.connectTimeout(.seconds(5)))
            channel.close(promise: nil)
        }
        accepted.futureResult.whenComplete { _ in timeout.cancel() }
        return channel.configureHTTP2Pipeline(
            mode: .client, connectionConfiguration: connection, streamConfiguration: streamConfig,
            inboundStreamInitializer: { $0.close() }
        ).flatMap { multiplexer -> EventLoopFuture<any Channel> in
            // Frames of the connection itself (SETTINGS, GOAWAY) pass the multiplexer on to the next handler.
            do {
                try channel.pipeline.syncOperations.addHandler(
                    LinkConnectionWatcher(accepted: accepted, onGoAway: onGoAway, onSilent: onSilent))
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
            return multiplexer.createStreamChannel { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandler(RaftLinkResponseHandler(onRefused: onRefused))
                }
            }
        }.flatMap { (stream: any Channel) in
            let headers: HPACKHeaders = [
                ":method": "POST", ":scheme": url.isTLS ? "https" : "http", ":path": "/quorumpb.Raft/Messages",
                ":authority": "\(url.host):\(url.port)", "content-type": "application/grpc", "te": "trailers",
            ]
            return stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: headers))).map { stream }
        }.flatMap { stream in
            accepted.futureResult.map { stream }
        }.flatMapError { error in
            // Whatever went wrong first (a refused handshake, say) is the reason, not the closed channel it left
            // behind: if the watcher already failed, its error is the one that propagates.
            accepted.fail(error)
            channel.close(promise: nil)
            return accepted.futureResult.flatMapThrowing { throw error }
        }
    }
}

/// Watches the connection-level frames of a link: the other member's first SETTINGS (it accepted this member),
/// errors before that (a refused handshake), and GOAWAY later (it renewed its certificate, or is stopping, and wants
/// this connection replaced; the link dials a new one before it lets this one go).
///
/// Once accepted, it also proves the connection alive: a PING every `pingInterval`, and the connection is closed when
/// no PING ACK came back for `deadAfter`. Raft messages flow one way on a link, so nothing else would tell a dead
/// connection (the other member gone, or a partition swallowing every packet) from an idle one: writes would be
/// buffered by the kernel and retransmitted until TCP gives up, many minutes later, and everything this member says
/// to that peer (votes, acknowledgements) would be lost meanwhile. Closed, the link redials at once.
final class LinkConnectionWatcher: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    static let pingInterval = TimeAmount.seconds(1)
    static let deadAfter = TimeAmount.seconds(5)

    private let accepted: EventLoopPromise<Void>
    private let onGoAway: @Sendable () -> Void
    private let onSilent: @Sendable () -> Void
    private var pinger: RepeatedTask?
    private var lastAck = NIODeadline.now()

    init(
        accepted: EventLoopPromise<Void>, onGoAway: @escaping @Sendable () -> Void,
        onSilent: @escaping @Sendable () -> Void = {}
    ) {
        self.accepted = accepted
        self.onGoAway = onGoAway
        self.onSilent = onSilent
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data).payload {
        case .settings(.settings):
            accepted.succeed()
            startPinging(context: context)
        case .ping(_, ack: true): lastAck = .now()
        case .goAway: onGoAway()
        default: break
        }
    }

    private func startPinging(context: ChannelHandlerContext) {
        guard pinger == nil else { return }
        lastAck = .now()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        pinger = context.eventLoop.scheduleRepeatedTask(
            initialDelay: Self.pingInterval, delay: Self.pingInterval
        ) { _ in
            let (watcher, context) = loopBound.value
            if NIODeadline.now() - watcher.lastAck > Self.deadAfter {
                watcher.onSilent()
                context.close(promise: nil)
                return
            }
            let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(), ack: false))
            context.writeAndFlush(watcher.wrapOutboundOut(ping), promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        pinger?.cancel()
        pinger = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        accepted.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pinger?.cancel()
        pinger = nil
        accepted.fail(ChannelError.eof)
        context.fireChannelInactive()
    }
}

/// A gRPC status other than OK that ended a stream: what the other member said when it refused this one.
struct RPCRefusal: Sendable, Equatable {
    var code: Int
    var message: String

    /// The status in a stream's trailers, nil when it is OK or absent.
    init?(trailers: HPACKHeaders) {
        guard let status = trailers.first(name: "grpc-status").flatMap(Int.init), status != 0 else { return nil }
        code = status
        let encoded = trailers.first(name: "grpc-message") ?? ""
        message = encoded.removingPercentEncoding ?? encoded
    }

    /// The answer a member gives one the cluster removed (`PeerCheck`): permission denied, "the member has been
    /// permanently removed from the cluster", as etcd's peers answer such a member with 410 Gone.
    var saysRemoved: Bool { code == 7 && message.contains("permanently removed from the cluster") }
}

/// Reads what the receiving member answers on the stream: nothing until it refuses or ends the stream, which
/// closes it (and with it the connection, so the link redials). A refusal's status goes to `onRefused` first.
final class RaftLinkResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload

    private let onRefused: @Sendable (RPCRefusal) -> Void

    init(onRefused: @escaping @Sendable (RPCRefusal) -> Void) {
        self.onRefused = onRefused
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .headers(let headers) = unwrapInboundIn(data), headers.endStream {
            if let refusal = RPCRefusal(trailers: headers.headers) { onRefused(refusal) }
            context.close(promise: nil)
        }
    }
}
