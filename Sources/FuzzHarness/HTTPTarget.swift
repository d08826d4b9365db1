import EtcdProto
import NIOCore
import NIOEmbedded
import NIOHTTP1
import RPCTransport
import Server

/// The client port as an HTTP/1.1 client reaches it (`/health`, `/version`, `/metrics`, the `/v3/` JSON gateway):
/// the bytes are a connection's inbound stream, parsed by the request decoder the protocol sniffer installs; each
/// complete request is split into path and query as the endpoint handler does, routed as `EtcdHTTPRouter` routes,
/// and a gateway body is decoded as its method's request type and checked (`EtcdRequests`), `/v3/watch` as the
/// stream of JSON values the gateway reads.
enum HTTPTarget {
    /// Collects the decoded request parts and handles each complete request as it ends.
    final class Requests: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        private var head: HTTPRequestHead?
        private var body: [UInt8] = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                body = []
            case .body(let chunk):
                // The endpoint handler's bound (the listener's maximum message size) is far above what the fuzzer
                // sends; past it the request is refused unread, as there.
                if body.count + chunk.readableBytes > 2 << 20 { head = nil }
                body += chunk.readableBytesView
            case .end:
                guard let head else { return }
                self.head = nil
                HTTPTarget.handle(head, body: body)
            }
        }
    }

    static func handle(_ head: HTTPRequestHead, body: [UInt8]) {
        let (path, query) = ConnectionUnderTest.splitRequestTarget(head.uri)
        _ = head.isKeepAlive
        _ = head.headers.first(name: "authorization")
        switch path {
        case "/health":
            _ = Set((query["exclude"] ?? []).map { $0.uppercased() })
            _ = query["serializable"]?.first == "true"
        case "/livez", "/livez/", "/readyz", "/readyz/":
            _ = Set(query["exclude"] ?? [])
            _ = query["verbose"] != nil
        case "/version", "/metrics":
            break
        default:
            if let name = RequestParsing.gatewayMethod(forPath: path) {
                guard head.method == .POST else { return }
                if name == "watch" {
                    for request in RequestParsing.gatewayWatchRequests(body) { try? EtcdRequests.check(request) }
                } else if let method = EtcdRequests.byGatewayMethod[name] {
                    guard let request = try? method.decodeJSON(body) else { return }
                    try? EtcdRequests.check(request)
                } else {
                    fatalError("the gateway serves \(name), which the harness does not know: add it to EtcdRequests")
                }
            } else {
                _ = RequestParsing.isGatewayPath(path)
            }
        }
    }

    static func run(_ bytes: [UInt8]) {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        do {
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
            try channel.pipeline.syncOperations.addHandler(Requests())
            var buffer = channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            try channel.writeInbound(buffer)
        } catch {
            // A parse error closes the connection (400 from the server): the end of most malformed inputs.
        }
    }
}
