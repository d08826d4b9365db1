import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Where an HTTP request goes.
struct HTTPEndpoint: Sendable, Equatable {
    var useTLS: Bool
    var host: String
    var port: Int

    /// `Host` header value: the port only when it is not the scheme's default (what S3 signs and expects).
    var hostHeader: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return port == (useTLS ? 443 : 80) ? bracketed : "\(bracketed):\(port)"
    }
}

/// A request body. Files are streamed from disk, never loaded whole.
enum HTTPRequestBody: Sendable {
    case empty
    case bytes([UInt8])
    /// `length` bytes of the file at `path`, starting at `offset`.
    case file(path: String, offset: Int64, length: Int64)

    var length: Int64 {
        switch self {
        case .empty: return 0
        case .bytes(let b): return Int64(b.count)
        case .file(_, _, let length): return length
        }
    }
}

/// Transport-level failures (no HTTP response to report).
enum HTTPTransportError: Error, CustomStringConvertible {
    case idleTimeout(host: String, seconds: Int64)
    case closedEarly(host: String, while: String)
    case protocolViolation(host: String, detail: String)
    case bodyTooLarge(limit: Int)

    var description: String {
        switch self {
        case .idleTimeout(let host, let seconds): return "no data to or from \(host) for \(seconds)s"
        case .closedEarly(let host, let during): return "\(host) closed the connection \(during)"
        case .protocolViolation(let host, let detail): return "unexpected HTTP from \(host): \(detail)"
        case .bodyTooLarge(let limit): return "response body larger than \(limit) bytes"
        }
    }
}

/// The body of a response being received; read it with `next()` until nil. Only valid inside the response handler.
final class HTTPResponseBody {
    private var iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let host: String
    private var ended = false

    init(iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator, host: String) {
        self.iterator = iterator
        self.host = host
    }

    /// The next piece of the body; nil once the response is complete. A connection that closes before the end is an
    /// error (a truncated object must never look complete).
    func next() async throws -> ByteBuffer? {
        guard !ended else { return nil }
        while let part = try await iterator.next() {
            switch part {
            case .body(let buffer): return buffer
            case .end:
                ended = true
                return nil
            case .head: throw HTTPTransportError.protocolViolation(host: host, detail: "a second response head")
            }
        }
        throw HTTPTransportError.closedEarly(host: host, while: "before the response body ended")
    }

    /// The whole body, refusing more than `limit` bytes.
    func collect(limit: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        while var buffer = try await next() {
            guard bytes.count + buffer.readableBytes <= limit else {
                throw HTTPTransportError.bodyTooLarge(limit: limit)
            }
            bytes.append(contentsOf: buffer.readBytes(length: buffer.readableBytes) ?? [])
        }
        return bytes
    }
}

/// A deliberately small HTTP/1.1 client on SwiftNIO: one connection per request (`Connection: close`), streamed request
/// and response bodies with NIO's back-pressure (at most a few chunks buffered either way), TLS through NIOSSL, a
/// connect timeout and an idle timeout, and task cancellation that closes the connection. Backups make a handful of
/// requests every few minutes, so connection reuse is not worth a pool; what matters is bounded memory on multi-gigabyte
/// bodies and never hanging forever.
struct MiniHTTPClient: Sendable {
    var tlsContext: NIOSSLContext?
    var connectTimeout: TimeAmount = .seconds(10)
    var idleTimeout: TimeAmount = .seconds(60)
    /// Size of the pieces a file body is read and sent in.
    var chunkSize = 256 * 1024

    /// Sends the request and hands the response to `handler` while the connection is open; returns what it returns.
    /// If sending fails because the server answered early and closed (e.g. an authorization error before the body was
    /// read), the server's response is still delivered.
    func execute<Result>(
        _ endpoint: HTTPEndpoint, head: HTTPRequestHead, body: HTTPRequestBody,
        handler: (HTTPResponseHead, HTTPResponseBody) async throws -> Result
    ) async throws -> Result {
        try Task.checkCancellation()
        let tls = endpoint.useTLS ? try tlsContext ?? Self.defaultTLSContext() : nil
        let serverName = Self.isIPAddress(endpoint.host) ? nil : endpoint.host
        let idle = idleTimeout
        let host = endpoint.host
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(connectTimeout)
            .connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls {
                        try pipeline.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    try pipeline.addHandler(IdleStateHandler(allTimeout: idle))
                    try pipeline.addHandler(IdleTimeoutHandler(host: host, timeout: idle))
                    try pipeline.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        let underlying = channel.channel
        return try await withTaskCancellationHandler {
            try await channel.executeThenClose { inbound, outbound in
                var sendError: (any Error)?
                do {
                    try await outbound.write(.head(head))
                    try await send(body, to: outbound, allocator: underlying.allocator)
                    try await outbound.write(.end(nil))
                } catch let error as BackupError {
                    throw error  // the local file failed: the server has nothing to say about that
                } catch {
                    sendError = error
                }
                if Task.isCancelled { throw CancellationError() }
                var iterator = inbound.makeAsyncIterator()
                let responseHead: HTTPResponseHead
                do {
                    var received: HTTPResponseHead?
                    var informational = false
                    while received == nil {
                        guard let part = try await iterator.next() else {
                            throw sendError ?? HTTPTransportError.closedEarly(host: host, while: "before responding")
                        }
                        switch part {
                        case .head(let h) where h.status.code >= 200:
                            received = h
                        case .head:
                            informational = true  // 1xx responses precede the real one
                        case .body, .end:
                            guard informational else {
                                throw HTTPTransportError.protocolViolation(host: host, detail: "body before head")
                            }
                        }
                    }
                    responseHead = received!
                } catch let transport as HTTPTransportError {
                    // The connection's own verdict (an idle timeout, say) explains a failed send better than the
                    // closed channel the send ran into.
                    throw transport
                } catch {
                    throw sendError ?? error
                }
                // A success while the body could not all be sent is not believable; without a body, the request was
                // complete once its head went out (a server may answer and close before the final empty write).
                if let sendError, responseHead.status.code < 300, body.length > 0 { throw sendError }
                return try await handler(responseHead, HTTPResponseBody(iterator: iterator, host: host))
            }
        } onCancel: {
            underlying.close(promise: nil)
        }
    }

    private func send(
        _ body: HTTPRequestBody, to outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>,
        allocator: ByteBufferAllocator
    ) async throws {
        switch body {
        case .empty:
            return
        case .bytes(let bytes):
            if !bytes.isEmpty { try await outbound.write(.body(.byteBuffer(allocator.buffer(bytes: bytes)))) }
        case .file(let path, let offset, let length):
            let reader = try FileReader(path: path)
            try reader.seek(to: offset)
            var remaining = length
            while remaining > 0 {
                try Task.checkCancellation()
                let want = Int(min(Int64(chunkSize), remaining))
                var buffer = allocator.buffer(capacity: want)
                let n = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) {
                    try reader.read(upTo: want, into: $0)
                }
                guard n > 0 else {
                    throw BackupError.io(path: path, operation: "read", detail: "file ended \(remaining) bytes early")
                }
                remaining -= Int64(n)
                try await outbound.write(.body(.byteBuffer(buffer)))
            }
        }
    }

    /// A client TLS context trusting the system's roots, plus `caFile` (PEM) when given.
    static func makeTLSContext(caFile: String?) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            configuration.additionalTrustRoots = [.file(caFile)]
        }
        return try NIOSSLContext(configuration: configuration)
    }

    static func defaultTLSContext() throws -> NIOSSLContext { try makeTLSContext(caFile: nil) }

    static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || (!host.isEmpty && host.allSatisfy { $0.isNumber || $0 == "." })
    }
}

/// Closes the connection, with an error the request sees, when nothing was sent or received for the idle timeout.
private final class IdleTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let host: String
    let timeout: TimeAmount

    init(host: String, timeout: TimeAmount) {
        self.host = host
        self.timeout = timeout
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.fireErrorCaught(
                HTTPTransportError.idleTimeout(host: host, seconds: timeout.nanoseconds / 1_000_000_000))
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
