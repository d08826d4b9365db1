import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOPosix
import NIOSSL

/// Supplies the TLS context for each new connection; swapping what it returns rotates certificates without
/// touching open connections.
public protocol TLSContextSource: Sendable {
    /// The context new handshakes use, or nil for plaintext.
    func currentContext() -> NIOSSLContext?
    /// Builds the server-side TLS handler for one accepted connection (lets the source add verification hooks).
    func makeHandler(context: NIOSSLContext) -> NIOSSLServerHandler
    /// Adds the TLS handler, and whatever observes its handshake, to one accepted connection.
    func configureConnection(channel: any Channel, context: NIOSSLContext) throws
}

extension TLSContextSource {
    public func configureConnection(channel: any Channel, context: NIOSSLContext) throws {
        try channel.pipeline.syncOperations.addHandler(makeHandler(context: context))
    }
}

/// The listener of one `--listen-client-urls` address: gRPC and HTTP/1.1 on one port, optionally over TLS.
struct ClientListenerFactory: HTTP2ServerTransport.ListenerFactory {
    let host: String
    let port: Int
    let eventLoopGroup: any EventLoopGroup
    let tls: (any TLSContextSource)?
    let makeHTTPHandler: @Sendable () -> any ChannelHandler

    func makeListeningChannel(
        listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
        connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        let tls = self.tls
        let makeHTTPHandler = self.makeHTTPHandler
        return try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in listenerConfigurator.configure(channel: channel) }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    var secured = false
                    if let tls, let context = tls.currentContext() {
                        try tls.configureConnection(channel: channel, context: context)
                        secured = true
                    }
                    try channel.pipeline.syncOperations.addHandler(ProtocolSniffer(makeHTTPHandler: makeHTTPHandler))
                    return secured
                }.flatMap { secured in
                    connectionConfigurator.configure(
                        channel: channel, tls: secured ? .configured(requireALPN: false) : .none)
                }
            }
    }
}
