import NIOCore
import NIOHTTP2

/// The handlers a client listener puts on each accepted connection after TLS and protocol sniffing (the HTTP/2
/// codec with the listener's settings, then the frame-level gRPC handler), for harnesses that feed a connection
/// bytes without a socket: the fuzz targets (`FuzzHarness`) drive them on an `EmbeddedChannel`, so every byte a
/// client could send reaches the same parsing code the member runs.
package enum ConnectionUnderTest {
    /// The codec and the gRPC handler, serving `fastRoutes` and nothing else (no grpc-swift bridge, no HTTP
    /// endpoints: those answer from tasks of their own, which a single-threaded harness cannot wait for).
    package static func grpcHandlers(
        fastRoutes: [String: FastRoute], maxMessageBytes: Int = 2 << 20
    ) -> [any ChannelHandler] {
        let shared = RPCListenerShared(fastRoutes: fastRoutes, maxMessageBytes: maxMessageBytes, bridge: nil, http: nil)
        return [RPCServerTransport.makeHTTP2Handler(), RPCConnectionHandler(shared: shared)]
    }

    /// How HTTP/1.1 request targets are split into a path and query parameters (`HTTPEndpointHandler`).
    package static func splitRequestTarget(_ uri: String) -> (path: String, query: [String: [String]]) {
        HTTPEndpointHandler.split(uri)
    }
}
