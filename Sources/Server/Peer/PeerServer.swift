import GRPCCore
import NIOCore
import Node

/// The listeners of `--listen-peer-urls`: the `quorumpb.Peer` service (plus the same HTTP/1.1 endpoints as the
/// client port, which is handy for probing a member from its peers' network).
struct PeerServers {
    let servers: [GRPCServer<RPCServerTransport>]
    let transports: [RPCServerTransport]

    init(
        urls: [ListenURL], service: PeerService, fastRoutes: [String: FastRoute], tls: (any TLSContextSource)?,
        http: any HTTPRouting, eventLoopGroup: any EventLoopGroup
    ) {
        var servers: [GRPCServer<RPCServerTransport>] = []
        var transports: [RPCServerTransport] = []
        for url in urls {
            // Snapshots arrive in chunks of 256 KiB; leave room for the envelope.
            let transport = RPCServerTransport(
                options: .init(
                    host: url.host, port: url.port, tls: url.isTLS ? tls : nil, maxMessageBytes: 8 << 20,
                    fastRoutes: fastRoutes, http: http, eventLoopGroup: eventLoopGroup))
            transports.append(transport)
            servers.append(GRPCServer(transport: transport, services: [service]))
        }
        self.servers = servers
        self.transports = transports
    }
}
