import GRPCCore
import NIOCore
import NIOHTTP2
import NIOPosix
import Synchronization

/// A served method that bypasses grpc-swift's per-call machinery: the connection creates its call object and
/// drives it on the event loop (see `RPCConnectionHandler`).
struct FastRoute: Sendable {
    let makeCall: @Sendable () -> any RPCCall
}

/// What every connection of one listener shares.
final class RPCListenerShared: Sendable {
    let fastRoutes: [String: FastRoute]
    let maxMessageBytes: Int
    let bridge: RPCBridge?
    let http: (any HTTPRouting)?
    let connections = RPCConnectionRegistry()

    init(fastRoutes: [String: FastRoute], maxMessageBytes: Int, bridge: RPCBridge?, http: (any HTTPRouting)?) {
        self.fastRoutes = fastRoutes
        self.maxMessageBytes = maxMessageBytes
        self.bridge = bridge
        self.http = http
    }
}

/// Quorum's gRPC server transport: one listening address, gRPC over HTTP/2 and HTTP/1.1 on the same port
/// (optionally over TLS), fast routes served in place, every other method handed to grpc-swift's `GRPCServer`.
///
/// Implements grpc-swift's `ServerTransport`, so `GRPCServer(transport:services:)` runs it like any transport.
final class RPCServerTransport: ServerTransport, Sendable {
    typealias Bytes = [UInt8]

    struct Options: Sendable {
        var host: String
        var port: Int
        var tls: (any TLSContextSource)?
        /// Largest request message accepted (grpc-go's "received message larger than max" beyond it).
        var maxMessageBytes: Int
        var fastRoutes: [String: FastRoute] = [:]
        /// Serves HTTP/1.1 (and non-gRPC HTTP/2) requests; nil answers them 415.
        var http: (any HTTPRouting)?
        var eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    }

    private struct State {
        var methods: [MethodDescriptor] = []
        var shared: RPCListenerShared?
        var listener: (any Channel)?
        var jobs: AsyncStream<BridgedJob>.Continuation?
        var shuttingDown = false
    }

    let options: Options
    private let state = Mutex(State())
    private let address: EventLoopPromise<SocketAddress>

    init(options: Options) {
        self.options = options
        address = options.eventLoopGroup.any().makePromise(of: SocketAddress.self)
    }

    func configure(context: GRPCServerContext) {
        state.withLock { $0.methods = context.methods }
    }

    /// The bound address once listening; throws why binding failed.
    var listeningAddress: SocketAddress {
        get async throws { try await address.futureResult.get() }
    }

    func listen(
        streamHandler: @escaping @Sendable (RPCStream<Inbound, Outbound>, ServerContext) async -> Void
    ) async throws {
        let (jobs, continuation) = AsyncStream.makeStream(of: BridgedJob.self)
        let methods = state.withLock { $0.methods }
        let bridge = RPCBridge(methods: methods, submit: { continuation.yield($0) })
        let shared = RPCListenerShared(
            fastRoutes: options.fastRoutes, maxMessageBytes: options.maxMessageBytes, bridge: bridge, http: options.http
        )
        let listener: any Channel
        do {
            listener = try await bind(shared: shared)
        } catch {
            address.fail(error)
            throw error
        }
        address.succeed(listener.localAddress!)
        let alreadyStopping = state.withLock { s -> Bool in
            s.shared = shared
            s.listener = listener
            s.jobs = continuation
            return s.shuttingDown
        }
        if alreadyStopping { beginGracefulShutdown() }
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

    func beginGracefulShutdown() {
        let (listener, shared, jobs) = state.withLock { s in
            s.shuttingDown = true
            return (s.listener, s.shared, s.jobs)
        }
        guard let listener, let shared, let jobs else { return }
        listener.close(promise: nil)
        shared.connections.forEach { $0.beginGracefulShutdown() }
        // Calls finish on their own; once every connection has closed, `listen` returns.
        Task {
            while shared.connections.count > 0 { try? await Task.sleep(for: .milliseconds(20)) }
            jobs.finish()
        }
    }

    private func bind(shared: RPCListenerShared) async throws -> any Channel {
        let tls = options.tls
        let http = options.http
        let maxMessageBytes = options.maxMessageBytes
        return try await ServerBootstrap(group: options.eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls, let context = tls.currentContext() {
                        try tls.configureConnection(channel: channel, context: context)
                    }
                    let sniffer = ProtocolSniffer(makeHTTPHandler: {
                        HTTPEndpointHandler(router: http ?? UnsupportedHTTP(), maxBody: maxMessageBytes)
                    })
                    let ops = channel.pipeline.syncOperations
                    try ops.addHandler(sniffer)
                    try ops.addHandler(Self.makeHTTP2Handler())
                    try ops.addHandler(RPCConnectionHandler(shared: shared))
                }
            }
            .bind(host: options.host, port: options.port).get()
    }

    static func makeHTTP2Handler() -> NIOHTTP2Handler {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: Int(Int32.max)),
            HTTP2Setting(parameter: .initialWindowSize, value: RPCConnectionHandler.streamWindow),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 20),
        ]
        // Go's gRPC client pings to estimate bandwidth (hundreds per second under load); it must not be taken
        // for a flood. `HTTP2PingResponder` answers most of them before this handler sees them.
        connection.controlFrameRateLimit.maximumCount = 20_000
        connection.controlFrameRateLimit.windowLength = .seconds(10)
        connection.maximumBufferedControlFrames = 100_000
        connection.maximumConnectionGlitches = 10_000
        var stream = NIOHTTP2Handler.StreamConfiguration()
        // clientv3's KeepAliveOnce and every cancelled context end a stream with RST_STREAM: thousands per second
        // per connection under load are normal client behaviour here, not a rapid-reset attack.
        stream.streamResetFrameRateLimit.maximumCount = 1_000_000
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
