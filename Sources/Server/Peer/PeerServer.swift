import EtcdAPI
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOPosix
import Node

/// The listeners of `--listen-peer-urls`: the `quorumpb.Peer` service (plus the same HTTP/1.1 endpoints as the
/// client port, which is handy for probing a member from its peers' network).
struct PeerServers {
    let servers: [GRPCServer<HTTP2ServerTransport.Custom<ClientListenerFactory>>]
    let transports: [HTTP2ServerTransport.Custom<ClientListenerFactory>]

    init(
        urls: [ListenURL], service: PeerService, tls: (any TLSContextSource)?,
        makeHTTPHandler: @escaping @Sendable () -> any ChannelHandler
    ) {
        var config = HTTP2ServerTransport.Custom<ClientListenerFactory>.Config.defaults
        // Snapshots arrive in chunks of 256 KiB; leave room for the envelope.
        config.rpc.maxRequestPayloadSize = 8 << 20
        config.connection.keepalive.clientBehavior = .init(minPingIntervalWithoutCalls: .seconds(1), allowWithoutCalls: true)
        var servers: [GRPCServer<HTTP2ServerTransport.Custom<ClientListenerFactory>>] = []
        var transports: [HTTP2ServerTransport.Custom<ClientListenerFactory>] = []
        for url in urls {
            let factory = ClientListenerFactory(
                host: url.host, port: url.port, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                tls: url.isTLS ? tls : nil, makeHTTPHandler: makeHTTPHandler)
            let transport = HTTP2ServerTransport.Custom(listenerFactory: factory, config: config)
            transports.append(transport)
            servers.append(GRPCServer(transport: transport, services: [service]))
        }
        self.servers = servers
        self.transports = transports
    }
}
