import NIOCore
import NIOHPACK
import NIOHTTP1

/// An HTTP/2 request that is not gRPC: Go's HTTP client (kubectl, Prometheus, health checkers) negotiates h2
/// over TLS and then asks for `/health` or `/metrics` with a plain GET, which etcd routes by content type. It gets
/// the same router as HTTP/1.1 connections.
final class HTTPOverHTTP2Call: RPCCall {
    private let method: String
    private let uri: String
    private let router: (any HTTPRouting)?
    private let maxBody: Int
    private let authorization: String?
    private var body: [UInt8] = []
    private var tooLarge = false
    /// The task answering the request: cancelled when the stream is reset or the connection closes.
    private var task: Task<Void, Never>?

    init(method: String, uri: String, router: (any HTTPRouting)?, maxBody: Int, authorization: String? = nil) {
        self.authorization = authorization
        self.method = method
        self.uri = uri
        self.router = router
        self.maxBody = maxBody
    }

    var wantsRawBytes: Bool { true }

    func receivedRaw(_ bytes: ByteBuffer, stream: RPCStreamHandle) {
        guard !tooLarge else { return }
        if body.count + bytes.readableBytes > maxBody {
            tooLarge = true
            Self.respond(.json(#"{"error":"request body too large"}"#, status: .payloadTooLarge), on: stream)
            return
        }
        body += bytes.readableBytesView
    }

    func received(_ message: ByteBuffer, stream: RPCStreamHandle) {}

    func receivedEnd(stream: RPCStreamHandle) {
        guard !tooLarge else { return }
        guard let router else {
            Self.respond(.text("unsupported content type\n", status: .unsupportedMediaType), on: stream)
            return
        }
        let (path, query) = HTTPEndpointHandler.split(uri)
        let request = HTTPRequestInfo(
            method: HTTPMethod(rawValue: method), path: path, query: query, body: body, authorization: authorization)
        task = Self.serve(request, router: router, remote: stream.remote)
    }

    private static func serve(_ request: HTTPRequestInfo, router: any HTTPRouting, remote: RemoteRPCStream)
        -> Task<Void, Never>
    {
        Task {
            let reply = await router.handle(request)
            if let stream = reply.stream {
                await Self.stream(reply, stream, remote: remote)
                return
            }
            remote.post { handle in
                if let handle { HTTPOverHTTP2Call.respond(reply, on: handle) }
            }
        }
    }

    /// A streamed reply: the head with the first piece, one DATA frame per piece as `produce` hands it over (each
    /// awaited until written), then an empty DATA frame ending the stream.
    private static func stream(_ reply: HTTPReply, _ stream: HTTPBodyStream, remote: RemoteRPCStream) async {
        @Sendable func head(_ status: HTTPResponseStatus?) -> HPACKHeaders {
            [
                ":status": String((status ?? reply.status).code), "content-type": reply.contentType,
                "date": HTTPDate.format(),
            ]
        }
        let eventLoop = remote.eventLoop
        await stream.produce { bytes, status in
            let written = eventLoop.makePromise(of: Void.self)
            remote.post { handle in
                guard let handle, !handle.isFinished else {
                    written.fail(HTTPClientGone())
                    return
                }
                handle.connection.sendHeadersIfNeeded(handle.stream, head(status))
                var buffer = handle.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                handle.connection.send(buffer, on: handle.stream, promise: written)
            }
            try await written.futureResult.get()
        }
        remote.post { handle in
            guard let handle else { return }
            handle.connection.sendHeadersIfNeeded(handle.stream, head(nil))
            handle.connection.endHTTP(handle.stream)
        }
    }

    func cancelled() {
        task?.cancel()
    }

    static func respond(_ reply: HTTPReply, on stream: RPCStreamHandle) {
        let head: HPACKHeaders = [
            ":status": String(reply.status.code), "content-type": reply.contentType,
            "content-length": String(reply.body.count), "date": HTTPDate.format(),
        ]
        var body = stream.allocator.buffer(capacity: reply.body.count)
        body.writeBytes(reply.body)
        stream.connection.finishHTTP(stream.stream, head: head, body: body)
    }
}
