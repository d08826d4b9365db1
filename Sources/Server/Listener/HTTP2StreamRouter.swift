import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// Sends HTTP/2 requests that are not gRPC to the HTTP endpoints, as etcd does by content type.
///
/// Over TLS, Go's HTTP client (kubectl, Prometheus, health checkers) negotiates h2 through ALPN and then asks for
/// `/health` or `/metrics` with a plain GET, which gRPC would answer with 415. Installed at the front of every accepted
/// HTTP/2 stream (gRPC's `onAcceptHTTP2Stream` hook), this looks at the request headers once: gRPC requests pass
/// through untouched; anything else gets an HTTP/2-to-HTTP/1 codec and the same HTTP handler as HTTP/1.1 connections,
/// spliced in before gRPC's stream handler, which then never sees the stream's frames.
final class HTTP2StreamRouter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload

    private let makeHTTPHandler: @Sendable () -> any ChannelHandler

    init(makeHTTPHandler: @escaping @Sendable () -> any ChannelHandler) {
        self.makeHTTPHandler = makeHTTPHandler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .headers(let headers) = unwrapInboundIn(data), !Self.isGRPC(headers.headers) {
            do {
                let ops = context.pipeline.syncOperations
                let codec = HTTP2FramePayloadToHTTP1ServerCodec()
                let sink = Sink()
                try ops.addHandler(sink, position: .after(self))
                try ops.addHandler(makeHTTPHandler(), position: .after(self))
                try ops.addHandler(codec, position: .after(self))
            } catch {
                context.close(promise: nil)
                return
            }
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    static func isGRPC(_ headers: HPACKHeaders) -> Bool {
        headers["content-type"].contains { $0.lowercased().hasPrefix("application/grpc") }
    }

    /// Keeps anything the HTTP handler forwards away from gRPC's stream handler behind it.
    final class Sink: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    }
}
