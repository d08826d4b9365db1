import GRPCCore
import NIOCore
import NIOHTTP2
import NIOPosix
import Synchronization

/// A served method that bypasses grpc-swift's per-call machinery: the connection creates its call object and
/// drives it on the event loop (see `RPCConnectionHandler`).
package struct FastRoute: Sendable {
    let makeCall: @Sendable () -> any RPCCall

    package init(makeCall: @escaping @Sendable () -> any RPCCall) {
        self.makeCall = makeCall
    }
}

/// How much one client connection may hold of this member, and how abuse of HTTP/2 is answered.
struct RPCConnectionLimits: Sendable {
    /// Streams open at once (etcd's `--max-concurrent-streams`, never more than `streamCeiling`): a HEADERS frame
    /// past it is answered RST_STREAM REFUSED_STREAM, as grpc-go does.
    var maxConcurrentStreams = RPCConnectionLimits.streamCeiling
    /// Bytes of incomplete request messages one connection may have buffered (the stream that would pass it gets
    /// "too many requests"), and all connections of the listener together.
    var maxBufferedRequestBytes = 64 << 20
    var maxListenerBufferedRequestBytes = 1 << 30
    /// Response bytes not yet handed to the socket, past which new calls get "too many requests".
    var maxPendingResponseBytes = 16 << 20
    /// The status of a call refused because its connection or listener holds too much ("too many requests"; the
    /// etcd services use etcd's wording).
    var overloaded = RPCStatus.overloaded
    /// Streams the client may reset before anything was answered on them, per window, before GOAWAY
    /// ENHANCE_YOUR_CALM (CVE-2023-44487). Clients cancel calls on timeouts and shutdowns, so a few hundred per
    /// second are still ordinary; an attack runs at tens of thousands.
    var maxPrematureResets = 2_000
    var abuseWindow: TimeAmount = .seconds(10)
    /// WINDOW_UPDATE frames crediting less than 1 KiB, per window, beyond two for every DATA frame sent in it, before
    /// GOAWAY ENHANCE_YOUR_CALM: NIO's handler does not count WINDOW_UPDATE among the control frames it rate-limits.
    var maxSmallWindowUpdates = 10_000

    /// etcd's default for `--max-concurrent-streams` is unbounded (2^32-1); an open stream costs this member about a
    /// kilobyte even when idle, so a connection holds at most this many whatever the flag says. Go clients multiplex
    /// every call and watch of a client on one connection; kube-apiserver's busiest hold a few hundred.
    static let streamCeiling = 10_000

    init(maxConcurrentStreams: Int = Int(Int32.max), overloaded: RPCStatus = .overloaded) {
        self.maxConcurrentStreams = min(max(1, maxConcurrentStreams), Self.streamCeiling)
        self.overloaded = overloaded
    }
}

/// What every connection of one listener shares.
/// Counts the bytes of the gRPC messages a listener receives and sends, prefixes included; called on the
/// connections' event loops, so it must be cheap (an atomic add).
package protocol RPCTrafficObserver: Sendable {
    func received(bytes: Int)
    func sent(bytes: Int)
}

final class RPCListenerShared: Sendable {
    let fastRoutes: [String: FastRoute]
    let maxMessageBytes: Int
    let bridge: RPCBridge?
    let http: (any HTTPRouting)?
    let authentication: (any RPCClientAuthentication)?
    let limits: RPCConnectionLimits
    /// Counts message bytes in and out (the client listener's `etcd_network_client_grpc_*_bytes_total`).
    let traffic: (any RPCTrafficObserver)?
    let connections = RPCConnectionRegistry()
    /// Bytes of incomplete request messages on all connections (bounded by `limits`).
    private let bufferedRequestBytes = Atomic<Int>(0)

    init(
        fastRoutes: [String: FastRoute], maxMessageBytes: Int, bridge: RPCBridge?, http: (any HTTPRouting)?,
        authentication: (any RPCClientAuthentication)? = nil, limits: RPCConnectionLimits = RPCConnectionLimits(),
        traffic: (any RPCTrafficObserver)? = nil
    ) {
        self.traffic = traffic
        self.fastRoutes = fastRoutes
        self.maxMessageBytes = maxMessageBytes
        self.bridge = bridge
        self.http = http
        self.authentication = authentication
        self.limits = limits
    }

    /// Takes `bytes` of the listener's budget for incomplete messages; false when it is spent.
    func reserveBufferedRequestBytes(_ bytes: Int) -> Bool {
        if bufferedRequestBytes.wrappingAdd(bytes, ordering: .relaxed).newValue > limits.maxListenerBufferedRequestBytes
        {
            bufferedRequestBytes.wrappingSubtract(bytes, ordering: .relaxed)
            return false
        }
        return true
    }

    func releaseBufferedRequestBytes(_ bytes: Int) {
        bufferedRequestBytes.wrappingSubtract(bytes, ordering: .relaxed)
    }

    var listenerBufferedRequestBytes: Int { bufferedRequestBytes.load(ordering: .relaxed) }
}

/// Who sends the calls of a listener, as far as the transport can tell, for the services to authenticate them:
/// whether they want credentials at all (auth on) and the verified client-certificate name of a connection.
package protocol RPCClientAuthentication: Sendable {
    /// False: calls carry no credentials (`RPCStreamHandle.wantsCredentials`), and the hot path skips them.
    var isEnabled: Bool { get }
    /// The verified client-certificate common name of the connection from `remote` (`127.0.0.1:50412`); nil when
    /// the listener does not verify client certificates.
    func commonName(forRemote remote: String) -> String?
}

/// Quorum's gRPC server transport: one listening address, gRPC over HTTP/2 and HTTP/1.1 on the same port
/// (optionally over TLS), fast routes served in place, every other method handed to grpc-swift's `GRPCServer`.
///
/// Implements grpc-swift's `ServerTransport`, so `GRPCServer(transport:services:)` runs it like any transport.
package final class RPCServerTransport: ServerTransport, Sendable {
    package typealias Bytes = [UInt8]

    package struct Options: Sendable {
        var host: String
        var port: Int
        /// A Unix domain socket's path instead of `host:port` (`unix://` URLs).
        var unixPath: String? = nil
        /// Largest request message accepted (grpc-go's "received message larger than max" beyond it).
        var maxMessageBytes: Int
        /// `--socket-reuse-port`, `--socket-reuse-address`.
        var socketOptions = SocketOptions()
        /// gRPC keepalive enforcement and pings (client URLs); nil: none (peer and metrics URLs).
        var keepalive: KeepaliveSettings? = nil
        /// `--max-concurrent-streams`.
        var maxConcurrentStreams = Int(Int32.max)
        /// The status of calls refused because the connection holds too much (`RPCConnectionLimits.overloaded`).
        var overloaded = RPCStatus.overloaded

        package init(
            host: String, port: Int, unixPath: String? = nil, maxMessageBytes: Int,
            socketOptions: SocketOptions = SocketOptions(), keepalive: KeepaliveSettings? = nil,
            maxConcurrentStreams: Int = Int(Int32.max), overloaded: RPCStatus = RPCStatus.overloaded
        ) {
            self.host = host
            self.port = port
            self.unixPath = unixPath
            self.maxMessageBytes = maxMessageBytes
            self.socketOptions = socketOptions
            self.keepalive = keepalive
            self.maxConcurrentStreams = maxConcurrentStreams
            self.overloaded = overloaded
        }
    }

    private struct State {
        var methods: [MethodDescriptor] = []
        var fastRoutes: [String: FastRoute] = [:]
        var http: (any HTTPRouting)?
        var tls: (any TLSContextSource)?
        var authentication: (any RPCClientAuthentication)?
        var traffic: (any RPCTrafficObserver)?
        var shared: RPCListenerShared?
        var listener: (any Channel)?
        /// Opened by `open()`, adopted by the listener.
        var socket: NIOBSDSocket.Handle?
        var jobs: AsyncStream<BridgedJob>.Continuation?
        var shuttingDown = false
    }

    let options: Options
    private let state = Mutex(State())

    package init(options: Options) {
        self.options = options
    }

    package func configure(context: GRPCServerContext) {
        state.withLock { $0.methods = context.methods }
    }

    /// What the listener serves besides grpc-swift's services: the fast routes, HTTP (nil answers 404), and
    /// TLS for accepted connections (nil: plaintext), and who counts the bytes of its messages. Set before serving;
    /// the socket may already be bound.
    package func route(
        _ fastRoutes: [String: FastRoute], http: (any HTTPRouting)?, tls: (any TLSContextSource)?,
        authentication: (any RPCClientAuthentication)? = nil, traffic: (any RPCTrafficObserver)? = nil
    ) {
        state.withLock { s in
            s.traffic = traffic
            s.fastRoutes = fastRoutes
            s.http = http
            s.tls = tls
            s.authentication = authentication
        }
    }

    /// Hands the socket `open()` made (opening it if needed) to a listener channel on `group`, still without
    /// accepting: connections keep waiting in the backlog until `listen` starts accepting. Safe to call more than
    /// once.
    package func bind(on group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        if state.withLock({ $0.listener != nil }) { return }
        try open()
        guard let socket = state.withLock({ $0.socket }) else { return }
        let listener = try await makeListener(socket: socket, group: group)
        ListeningSocket.restoreBacklog(socket)
        state.withLock { $0.listener = listener }
    }

    /// The port the listening socket is bound to (what port 0 picked); nil before `open`.
    package var boundPort: Int? {
        state.withLock { s in s.listener?.localAddress?.port ?? s.socket.flatMap(ListeningSocket.port(of:)) }
    }

    /// Opens the listening socket on the calling thread (`ListeningSocket`); `bind` adopts it. Safe to call
    /// more than once.
    package func open() throws {
        if state.withLock({ $0.listener != nil || $0.socket != nil }) { return }
        let socket = try ListeningSocket.open(
            host: options.host, port: options.port, unixPath: options.unixPath, options: options.socketOptions)
        state.withLock { $0.socket = socket }
    }

    package func listen(
        streamHandler: @escaping @Sendable (RPCStream<Inbound, Outbound>, ServerContext) async -> Void
    ) async throws {
        try await bind()
        let (jobs, continuation) = AsyncStream.makeStream(of: BridgedJob.self)
        let (methods, fastRoutes, http, authentication, traffic) = state.withLock {
            ($0.methods, $0.fastRoutes, $0.http, $0.authentication, $0.traffic)
        }
        let bridge = RPCBridge(methods: methods, submit: { continuation.yield($0) })
        let shared = RPCListenerShared(
            fastRoutes: fastRoutes, maxMessageBytes: options.maxMessageBytes, bridge: bridge, http: http,
            authentication: authentication,
            limits: RPCConnectionLimits(
                maxConcurrentStreams: options.maxConcurrentStreams, overloaded: options.overloaded),
            traffic: traffic)
        let (listener, alreadyStopping) = state.withLock { s in
            s.shared = shared
            s.jobs = continuation
            return (s.listener!, s.shuttingDown)
        }
        if alreadyStopping { beginGracefulShutdown() }
        // From now on connections are accepted, and find the listener's shared state.
        try await listener.setOption(ChannelOptions.autoRead, value: true).get()
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                for await job in jobs {
                    group.addTask { await job.run(streamHandler) }
                }
            }
        } onCancel: {
            // Abrupt stop: connections and the listener go at once; bridged calls are cancelled with the group.
            listener.close(promise: nil)
            shared.connections.forEach { $0.close() }
            continuation.finish()
        }
    }

    package func beginGracefulShutdown() {
        let (listener, shared, jobs) = state.withLock { s in
            s.shuttingDown = true
            return (s.listener, s.shared, s.jobs)
        }
        guard let listener else { return }
        listener.close(promise: nil)
        guard let shared, let jobs else { return }
        shared.connections.forEach { $0.beginGracefulShutdown() }
        // Calls finish on their own; once every connection has closed, `listen` returns.
        Task {
            while shared.connections.count > 0 { try? await Task.sleep(for: .milliseconds(20)) }
            jobs.finish()
        }
    }

    /// Asks every connection accepted with TLS material older than `generation` to go away (GOAWAY): clients
    /// finish their calls and reconnect, handshaking with the current certificate. Used on the peer port after a
    /// renewal, so that no member's link to this one keeps depending on the certificate this one served before
    /// (members answer GOAWAY by dialling a replacement first). A connection still open after `grace` is closed.
    package func retireConnections(olderThan generation: Int, grace: TimeAmount) {
        guard let shared = state.withLock({ $0.shared }) else { return }
        shared.connections.forEach { connection in
            if let accepted = connection.tlsGeneration, accepted < generation {
                connection.beginGracefulShutdown(closingAfter: grace)
            }
        }
    }

    private func makeListener(socket: NIOBSDSocket.Handle, group: any EventLoopGroup) async throws -> any Channel {
        let maxMessageBytes = options.maxMessageBytes
        let keepalive = options.keepalive
        let maxStreams = RPCConnectionLimits(maxConcurrentStreams: options.maxConcurrentStreams).maxConcurrentStreams
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.autoRead, value: false)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let (shared, tls) = self?.state.withLock({ s in s.shared.map { ($0, s.tls) } }) else {
                        throw ChannelError.ioOnClosedChannel
                    }
                    // Read before the context: a reload in between only makes this connection look older than it is.
                    let generation = tls?.generation
                    if let tls, let context = tls.currentContext() {
                        try tls.configureConnection(channel: channel, context: context)
                    }
                    let router = shared.http ?? UnsupportedHTTP()
                    let sniffer = ProtocolSniffer(
                        makeHTTPHandler: { HTTPEndpointHandler(router: router, maxBody: maxMessageBytes) },
                        keepalive: keepalive)
                    let ops = channel.pipeline.syncOperations
                    // Nothing more is read from a client while its answers pile up unsent (it does not read them):
                    // whatever it does, the bytes this member holds for it stay bounded.
                    try ops.addHandler(BackPressureHandler())
                    try ops.addHandler(sniffer)
                    try ops.addHandler(Self.makeHTTP2Handler(maxConcurrentStreams: maxStreams))
                    try ops.addHandler(RPCConnectionHandler(shared: shared, tlsGeneration: generation))
                }
            }
            .withBoundSocket(socket).get()
    }

    static func makeHTTP2Handler(maxConcurrentStreams: Int = Int(Int32.max)) -> NIOHTTP2Handler {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: maxConcurrentStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: RPCConnectionHandler.streamWindow),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 20),
        ]
        // Go's gRPC client pings to estimate bandwidth (hundreds per second under load); it must not be taken
        // for a flood. `HTTP2PingResponder` answers most of them before this handler sees them. Past 2,000 PING,
        // SETTINGS or PRIORITY frames a second (sustained over 10 s) NIO's handler sends GOAWAY ENHANCE_YOUR_CALM.
        connection.controlFrameRateLimit.maximumCount = 20_000
        connection.controlFrameRateLimit.windowLength = .seconds(10)
        // Control frames (SETTINGS and PING acknowledgements, RST_STREAM, WINDOW_UPDATE) held for a client that
        // does not read; past it the connection is closed. NIO's default.
        connection.maximumBufferedControlFrames = 10_000
        // A DATA frame without payload and not ending its stream does no work: one in a row is tolerated (NIO's
        // default); CONTINUATION floods are bounded likewise (a header block in at most 5 of them).
        connection.maximumSequentialEmptyDataFrames = 1
        connection.maximumSequentialContinuationFrames = 5
        connection.maximumConnectionGlitches = 10_000
        var stream = NIOHTTP2Handler.StreamConfiguration()
        // clientv3's KeepAliveOnce and every cancelled context end a stream with RST_STREAM: thousands per second
        // per connection under load are normal client behaviour here. Rapid reset (resets of streams not answered
        // yet) is caught by `RPCConnectionHandler` itself; this bound is for RST_STREAM frames of any kind, and its
        // window costs 8 bytes per frame counted.
        stream.streamResetFrameRateLimit.maximumCount = 100_000
        stream.streamResetFrameRateLimit.windowLength = .seconds(10)
        stream.streamErrorRateLimit.maximumCount = 20_000
        stream.streamErrorRateLimit.windowLength = .seconds(10)
        return NIOHTTP2Handler(mode: .server, connectionConfiguration: connection, streamConfiguration: stream)
    }
}

/// The answer to HTTP requests on a port without HTTP endpoints.
struct UnsupportedHTTP: HTTPRouting {
    func handle(_ request: HTTPRequestInfo) async -> HTTPReply {
        .text("404 page not found\n", status: .notFound)
    }
}
