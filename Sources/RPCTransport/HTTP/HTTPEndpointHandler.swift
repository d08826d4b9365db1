import Foundation
import NIOCore
import NIOHTTP1

/// An HTTP response: a complete body, or (`stream`) one written piece by piece.
package struct HTTPReply: Sendable {
    package var status: HTTPResponseStatus
    package var contentType: String
    package var body: [UInt8]
    /// A body produced over time (grpc-gateway's streamed responses); `body` is then unused.
    package var stream: HTTPBodyStream? = nil

    package init(status: HTTPResponseStatus, contentType: String, body: [UInt8], stream: HTTPBodyStream? = nil) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.stream = stream
    }

    package static func streaming(contentType: String = "application/json", _ stream: HTTPBodyStream) -> HTTPReply {
        HTTPReply(status: .ok, contentType: contentType, body: [], stream: stream)
    }

    package static func json(_ text: String, status: HTTPResponseStatus = .ok) -> HTTPReply {
        HTTPReply(status: status, contentType: "application/json", body: Array(text.utf8))
    }

    package static func text(_ text: String, status: HTTPResponseStatus = .ok) -> HTTPReply {
        HTTPReply(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }
}

/// A response body written as it is produced: `produce` gets a `write` that hands one piece to the connection
/// (one HTTP/1.1 chunk or HTTP/2 DATA frame) and returns once it was written, so a client that reads slowly slows
/// the producer; it throws `HTTPClientGone` once the client is gone (the producing task is cancelled then too).
/// The response head goes out with the first piece, with the status given there (nil: the reply's), so that a
/// stream failing before its first result still gets an error status. The response ends when `produce` returns.
package struct HTTPBodyStream: Sendable {
    package typealias Write = @Sendable (_ bytes: [UInt8], _ status: HTTPResponseStatus?) async throws -> Void
    let produce: @Sendable (_ write: Write) async -> Void

    package init(produce: @escaping @Sendable (_ write: Write) async -> Void) {
        self.produce = produce
    }
}

/// The client went away while a streamed response was being written.
package struct HTTPClientGone: Error {
    package init() {}
}

/// A request as the router sees it.
package struct HTTPRequestInfo: Sendable {
    package var method: HTTPMethod
    package var path: String
    package var query: [String: [String]]
    package var body: [UInt8]
    /// The `Authorization` header: the JSON gateway's auth token.
    package var authorization: String? = nil
}

package protocol HTTPRouting: Sendable {
    func handle(_ request: HTTPRequestInfo) async -> HTTPReply
}

/// Collects one request at a time and answers it through the router (off the event loop).
final class HTTPEndpointHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: any HTTPRouting
    private let maxBody: Int
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// The tasks answering this connection's requests: cancelled when it closes (a streamed response never ends
    /// by itself).
    private var tasks: [Int: Task<Void, Never>] = [:]
    private var nextTask = 0
    private var active = true

    init(router: any HTTPRouting, maxBody: Int) {
        self.router = router
        self.maxBody = maxBody
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.removeAll()
        case .body(var chunk):
            if body.count + chunk.readableBytes > maxBody {
                respond(
                    context: context, keepAlive: false,
                    .json(#"{"error":"request body too large"}"#, status: .payloadTooLarge))
                head = nil
                return
            }
            body += chunk.readBytes(length: chunk.readableBytes) ?? []
        case .end:
            guard let head else { return }
            self.head = nil
            let (path, query) = Self.split(head.uri)
            let request = HTTPRequestInfo(
                method: head.method, path: path, query: query, body: body,
                authorization: head.headers.first(name: "authorization"))
            let keepAlive = head.isKeepAlive
            let router = self.router
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let id = nextTask
            nextTask += 1
            tasks[id] = Self.answer(request, router: router, keepAlive: keepAlive, id: id, bound: bound)
        }
    }

    private static func answer(
        _ request: HTTPRequestInfo, router: any HTTPRouting, keepAlive: Bool, id: Int,
        bound: NIOLoopBound<(HTTPEndpointHandler, ChannelHandlerContext)>
    ) -> Task<Void, Never> {
        let eventLoop = bound.eventLoop
        return Task {
            let reply = await router.handle(request)
            if let stream = reply.stream {
                await Self.stream(reply, stream, keepAlive: keepAlive, bound: bound)
            } else {
                eventLoop.execute {
                    let (handler, context) = bound.value
                    if handler.active { handler.respond(context: context, keepAlive: keepAlive, reply) }
                }
            }
            eventLoop.execute { bound.value.0.tasks[id] = nil }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        for task in tasks.values { task.cancel() }
        tasks.removeAll()
        context.fireChannelInactive()
    }

    /// Writes a streamed reply: the head (chunked) with the first piece, each piece as one chunk as `produce`
    /// hands it over, then the end.
    private static func stream(
        _ reply: HTTPReply, _ stream: HTTPBodyStream, keepAlive: Bool,
        bound: NIOLoopBound<(HTTPEndpointHandler, ChannelHandlerContext)>
    ) async {
        let eventLoop = bound.eventLoop
        guard let headSent = try? await eventLoop.submit({ NIOLoopBoundBox(false, eventLoop: eventLoop) }).get() else {
            return
        }
        @Sendable func sendHeadIfNeeded(_ status: HTTPResponseStatus?) {
            guard !headSent.value else { return }
            headSent.value = true
            let (handler, context) = bound.value
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: reply.contentType)
            headers.add(name: "Transfer-Encoding", value: "chunked")
            headers.add(name: "Date", value: HTTPDate.format())
            let head = HTTPResponseHead(version: .http1_1, status: status ?? reply.status, headers: headers)
            context.write(handler.wrapOutboundOut(.head(head)), promise: nil)
        }
        await stream.produce { bytes, status in
            try await eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
                let (handler, context) = bound.value
                guard handler.active else { return eventLoop.makeFailedFuture(HTTPClientGone()) }
                sendHeadIfNeeded(status)
                var buffer = context.channel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                let written = eventLoop.makePromise(of: Void.self)
                context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: written)
                return written.futureResult
            }.get()
        }
        eventLoop.execute {
            let (handler, context) = bound.value
            guard handler.active else { return }
            sendHeadIfNeeded(nil)
            let done = eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(handler.wrapOutboundOut(.end(nil)), promise: done)
            if !keepAlive {
                done.futureResult.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
            }
        }
    }

    private func respond(context: ChannelHandlerContext, keepAlive: Bool, _ reply: HTTPReply) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: reply.contentType)
        headers.add(name: "Content-Length", value: "\(reply.body.count)")
        // Go's net/http sends it too; `quorumctl certs doctor` reads it to measure members' clock skew.
        headers.add(name: "Date", value: HTTPDate.format())
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: reply.status, headers: headers))),
            promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: reply.body.count)
        buffer.writeBytes(reply.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlushPromise()
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        if !keepAlive {
            done.futureResult.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        }
    }

    static func split(_ uri: String) -> (String, [String: [String]]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: [String]] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            // Empty names and values are kept, as Go's url.ParseQuery keeps them: "=" is the name "" with the value
            // "" (omitting empty pieces left "=" with none, and reading its name trapped the member).
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map {
                String($0).removingPercentEncoding ?? String($0)
            }
            query[parts[0], default: []].append(parts.count > 1 ? parts[1] : "")
        }
        return (String(uri[..<mark]), query)
    }
}

extension ChannelHandlerContext {
    fileprivate func writeAndFlushPromise() -> EventLoopPromise<Void> { eventLoop.makePromise() }
}

/// HTTP's date format.
public enum HTTPDate {
    /// `seconds` since 1970 as an RFC 9110 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), formatted without
    /// Foundation's formatters (locale-free and thread-safe).
    public static func format(_ seconds: Int = Int(time(nil))) -> String {
        var clock = time_t(seconds)
        var parts = tm()
        gmtime_r(&clock, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return
            "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
