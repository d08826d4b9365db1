import Batching
import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import SwiftProtobuf
import Synchronization

/// Serves gRPC calls on one HTTP/2 connection, frame by frame, on the connection's event loop.
///
/// Why not one child channel and one task per call, as grpc-swift's transport does: the etcd API's hot calls
/// (Range, Put, Txn, lease keep-alives, watches) are small, and their cost was dominated by the per-call machinery
/// (a stream channel with its pipeline, an async sequence and writer, a task, three thread hops), measured at two
/// thirds of the server's CPU per put. Here a call is a dictionary entry: its messages are decoded where the bytes
/// arrive, *fast routes* answer on the event loop or from the Raft loop's completion, and only the remaining,
/// rarer methods go to grpc-swift's `GRPCServer` as an `RPCStream` (`BridgedCall`).
///
/// Flow control: NIO's HTTP/2 handler enforces windows and buffers what the peer cannot take yet; this handler
/// gives credit back (WINDOW_UPDATE) as it consumes DATA, for the connection and for each open stream.
///
/// Abuse (`RPCConnectionLimits`): open streams are bounded here as well as by the SETTINGS NIO's handler enforces
/// (which binds only once the client acknowledged them); bytes of incomplete request messages and bytes of
/// responses not yet handed to the socket are bounded per connection (past them, "too many requests"); a client
/// that resets streams before they were answered, again and again (CVE-2023-44487, "rapid reset"), gets GOAWAY
/// ENHANCE_YOUR_CALM; and every call with a `grpc-timeout` is answered DEADLINE_EXCEEDED when it passes.
final class RPCConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// Window sizes this side advertises and replenishes.
    static let streamWindow = 1 << 20
    static let connectionWindow = 8 << 20

    let shared: RPCListenerShared
    private var context: ChannelHandlerContext!
    private var streams: [HTTP2StreamID: RPCStreamState] = [:]
    private var connectionUnacked = 0
    private var needsFlush = false
    private var goingAway = false
    /// Whether HTTP/2 frames arrived: a connection the sniffer gave to HTTP/1.1 keeps this handler behind the
    /// HTTP/1.1 handlers, and must never be sent an HTTP/2 frame (they cannot encode one).
    private var isHTTP2 = false
    private var lastStreamID = HTTP2StreamID.rootStream
    private(set) var mailbox: RPCConnectionMailbox!
    /// Bytes of incomplete request messages buffered on this connection's streams.
    private(set) var bufferedRequestBytes = 0
    /// Response bytes written and not yet handed to the socket (held by HTTP/2 flow control or the channel).
    private(set) var pendingResponseBytes = 0
    /// Streams reset by the client before anything was sent on them, in the current window.
    private var prematureResets = 0
    private var smallWindowUpdates = 0
    /// DATA frames sent in the current abuse window: each earns the client up to two small WINDOW_UPDATEs (stream
    /// and connection), which is how grpc's C core returns credit for small responses.
    private var dataFramesSent = 0
    private var abuseWindowStart = NIODeadline.now()
    var limits: RPCConnectionLimits { shared.limits }
    private(set) var remotePeer = "unknown"
    private(set) var localPeer = "unknown"

    /// The verified client-certificate common name of this connection, looked up once (the TLS handshake is over
    /// before the first HTTP/2 frame arrives); nil when the listener does not verify client certificates.
    private var commonNameLookup: String??

    var clientCommonName: String? {
        if let known = commonNameLookup { return known }
        let found = shared.authentication?.commonName(forRemote: remotePeer)
        commonNameLookup = .some(found)
        return found
    }

    /// The generation of the TLS material this connection was accepted with; nil for plaintext.
    let tlsGeneration: Int?

    init(shared: RPCListenerShared, tlsGeneration: Int? = nil) {
        self.shared = shared
        self.tlsGeneration = tlsGeneration
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        mailbox = RPCConnectionMailbox(eventLoop: context.eventLoop, handler: self)
        remotePeer = Self.describe(context.channel.remoteAddress)
        localPeer = Self.describe(context.channel.localAddress)
        shared.connections.add(self)
        if context.channel.isActive { openConnectionWindow() }
    }

    func channelActive(context: ChannelHandlerContext) {
        remotePeer = Self.describe(context.channel.remoteAddress)
        localPeer = Self.describe(context.channel.localAddress)
        openConnectionWindow()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let open = streams
        streams.removeAll()
        for (_, stream) in open {
            stream.deadlineTask?.cancel()
            releaseBuffered(stream)
            stream.call.cancelled()
        }
        mailbox.close()
        shared.connections.remove(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A stream error has already reset its stream (a StreamClosedEvent follows); anything else ends the
        // connection, as there is no way to resynchronise an HTTP/2 session.
        if error is NIOHTTP2Errors.StreamError { return }
        context.close(promise: nil)
    }

    private var connectionWindowOpened = false

    /// The connection window starts at HTTP/2's 64 KiB; widen it once so that large puts and many parallel
    /// calls do not wait for credit round trips.
    private func openConnectionWindow() {
        guard !connectionWindowOpened else { return }
        connectionWindowOpened = true
        let increment = Self.connectionWindow - 65_535
        context.write(
            wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))),
            promise: nil)
        context.flush()
    }

    static func describe(_ address: SocketAddress?) -> String {
        guard let address, let ip = address.ipAddress, let port = address.port else { return "unknown" }
        switch address {
        case .v6: return "ipv6:[\(ip)]:\(port)"
        default: return "ipv4:\(ip):\(port)"
        }
    }

    // MARK: Inbound frames

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        isHTTP2 = true
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let headers):
            receivedHeaders(frame.streamID, headers)
        case .data(let payload):
            receivedData(frame.streamID, payload)
        case .windowUpdate(let increment) where increment < Self.smallWindowUpdate:
            // NIO's handler does not rate-limit WINDOW_UPDATE. Small credits are ordinary when they return what
            // this side sent (grpc's C core gives back each small response's bytes, on the stream and on the
            // connection); many more small credits than that are work for nothing.
            countSmallWindowUpdate()
        default:
            // PING, SETTINGS, WINDOW_UPDATE, GOAWAY and RST_STREAM are the HTTP/2 handler's business; a reset
            // stream is cleaned up on its StreamClosedEvent.
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent {
            if let stream = streams.removeValue(forKey: closed.streamID) {
                stream.deadlineTask?.cancel()
                releaseBuffered(stream)
                if !stream.finished {
                    stream.finished = true
                    stream.call.cancelled()
                    // Reset before the server sent anything: the pattern of a rapid-reset attack when it repeats.
                    if !stream.headersSent { countPrematureReset() }
                }
            }
            closeIfDrained()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func receivedHeaders(_ id: HTTP2StreamID, _ payload: HTTP2Frame.FramePayload.Headers) {
        if let stream = streams[id] {
            // Trailers from a client (gRPC clients send none): only their end-of-stream matters.
            if payload.endStream { receivedEnd(stream) }
            return
        }
        if goingAway {
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.refusedStream))), promise: nil)
            needsFlush = true
            return
        }
        if id > lastStreamID { lastStreamID = id }
        if streams.count >= limits.maxConcurrentStreams {
            // grpc-go's answer past SETTINGS_MAX_CONCURRENT_STREAMS; clients retry a refused stream elsewhere.
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.refusedStream))), promise: nil)
            needsFlush = true
            return
        }
        var path = ""
        var isGRPC = false
        var method = ""
        var timeout: Duration?
        var encoding = ""
        for (name, value, _) in payload.headers {
            switch name {
            case ":path": path = value
            case ":method": method = value
            case "content-type": isGRPC = value.utf8.starts(with: "application/grpc".utf8)
            case "grpc-timeout": timeout = GRPCWire.timeout(value[...])
            case "grpc-encoding": encoding = value
            default: break
            }
        }
        let stream = RPCStreamState(id: id, maxMessageBytes: shared.maxMessageBytes)
        streams[id] = stream
        if isGRPC && encoding == "gzip" {
            // As a grpc-go server: a call that sends gzip gets its answers in gzip.
            stream.reader.gzip = true
            stream.compressResponses = true
        } else if isGRPC && !encoding.isEmpty && encoding != "identity" {
            finish(
                stream, code: RPCError.Code.unimplemented.rawValue,
                message: "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\"")
            return
        }
        if isGRPC && pendingResponseBytes > limits.maxPendingResponseBytes {
            // The client does not read its answers: it gets no more work done until it does.
            finish(stream, limits.overloaded)
            return
        }
        if isGRPC, let timeout {
            if timeout <= .zero {
                finish(stream, RPCStatus.deadlineExceeded)
                return
            }
            let remaining = TimeAmount(timeout)
            stream.deadline = NIODeadline.now() + remaining
            stream.deadlineTask = context.eventLoop.assumeIsolated().scheduleTask(in: remaining) { [self] in
                deadlinePassed(stream)
            }
        }
        let handle = RPCStreamHandle(connection: self, stream: stream)
        if !isGRPC {
            stream.call = HTTPOverHTTP2Call(
                method: method, uri: path, router: shared.http, maxBody: shared.maxMessageBytes,
                authorization: payload.headers.first(name: "authorization"))
        } else if let route = shared.fastRoutes[path] {
            stream.call = route.makeCall()
        } else if let bridge = shared.bridge, let descriptor = bridge.descriptor(forPath: path) {
            stream.call = BridgedCall(descriptor: descriptor, headers: payload.headers, handle: handle, bridge: bridge)
        } else {
            finish(stream, code: RPCError.Code.unimplemented.rawValue, message: "unknown method \(path)")
            return
        }
        stream.call.started(headers: payload.headers, stream: handle)
        if payload.endStream { receivedEnd(stream) }
    }

    private func receivedData(_ id: HTTP2StreamID, _ payload: HTTP2Frame.FramePayload.Data) {
        guard case .byteBuffer(let bytes) = payload.data else { return }
        let flowControlled = bytes.readableBytes + (payload.paddingBytes ?? 0)
        creditConnection(flowControlled)
        guard let stream = streams[id], !stream.inboundEnded, !stream.finished else { return }
        if !payload.endStream {
            // A call that hands messages to a consumer of its own credits them once consumed (padding at once).
            credit(stream, bytes: stream.call.creditsOnConsumption ? (payload.paddingBytes ?? 0) : flowControlled)
        }
        if stream.call.wantsRawBytes {
            stream.call.receivedRaw(bytes, stream: RPCStreamHandle(connection: self, stream: stream))
        } else {
            do {
                try stream.reader.append(bytes) { message in
                    guard !stream.finished else { return }
                    shared.traffic?.received(bytes: GRPCWire.prefixLength + message.readableBytes)
                    stream.call.received(message, stream: RPCStreamHandle(connection: self, stream: stream))
                }
                // Whatever is left is part of a message still to come: bounded per connection and per listener.
                let buffered = stream.reader.pendingBytes
                if buffered != stream.bufferedBytes {
                    let grown = buffered - stream.bufferedBytes
                    if grown > 0
                        && (bufferedRequestBytes + grown > limits.maxBufferedRequestBytes
                            || !shared.reserveBufferedRequestBytes(grown))
                    {
                        releaseBuffered(stream)
                        stream.reader.discard()
                        finish(stream, limits.overloaded)
                        return
                    }
                    if grown < 0 { shared.releaseBufferedRequestBytes(-grown) }
                    bufferedRequestBytes += grown
                    stream.bufferedBytes = buffered
                }
            } catch let failure as GRPCMessageReader.Failure {
                let status = GRPCMessageReader.status(for: failure)
                finish(stream, code: status.code.rawValue, message: status.message)
                return
            } catch {
                finish(stream, code: RPCError.Code.internalError.rawValue, message: "\(error)")
                return
            }
        }
        if payload.endStream { receivedEnd(stream) }
    }

    /// Returns the bytes of `stream`'s incomplete message to the connection's and the listener's budgets.
    private func releaseBuffered(_ stream: RPCStreamState) {
        guard stream.bufferedBytes > 0 else { return }
        bufferedRequestBytes -= stream.bufferedBytes
        shared.releaseBufferedRequestBytes(stream.bufferedBytes)
        stream.bufferedBytes = 0
    }

    /// The call's `grpc-timeout` passed before it was answered: DEADLINE_EXCEEDED, as grpc-go's server answers a
    /// handler that gives up with its context; whatever still computes the answer finds the stream finished.
    private func deadlinePassed(_ stream: RPCStreamState) {
        stream.deadlineTask = nil
        guard !stream.finished else { return }
        stream.call.deadlinePassed()
        finish(stream, RPCStatus.deadlineExceeded)
        flushIfNeeded()
    }

    /// WINDOW_UPDATE increments below this count towards `maxSmallWindowUpdates`.
    static let smallWindowUpdate = 1024

    private func countPrematureReset() {
        rollAbuseWindow()
        prematureResets += 1
        // CVE-2023-44487: every stream reset before its answer cost this member work for nothing.
        if prematureResets > limits.maxPrematureResets { calmDown("too_many_resets") }
    }

    private func countSmallWindowUpdate() {
        rollAbuseWindow()
        smallWindowUpdates += 1
        if smallWindowUpdates > limits.maxSmallWindowUpdates + 2 * dataFramesSent {
            calmDown("too_many_window_updates")
        }
    }

    private func rollAbuseWindow() {
        let now = NIODeadline.now()
        if now - abuseWindowStart > limits.abuseWindow {
            abuseWindowStart = now
            prematureResets = 0
            smallWindowUpdates = 0
            dataFramesSent = 0
        }
    }

    /// Refuses more, says why (GOAWAY ENHANCE_YOUR_CALM with `reason` as debug data), and closes: the client may
    /// reconnect; a well-behaved one never gets here.
    private func calmDown(_ reason: String) {
        guard !calmingDown else { return }
        calmingDown = true
        goingAway = true
        let context = self.context!
        context.writeAndFlush(
            wrapOutboundOut(
                HTTP2Frame(
                    streamID: .rootStream,
                    payload: .goAway(
                        lastStreamID: lastStreamID, errorCode: .enhanceYourCalm,
                        opaqueData: context.channel.allocator.buffer(string: reason)))),
            promise: nil)
        context.close(promise: nil)
    }

    private var calmingDown = false

    private func receivedEnd(_ stream: RPCStreamState) {
        guard !stream.inboundEnded else { return }
        stream.inboundEnded = true
        guard !stream.finished else { return }
        if stream.reader.hasPartialMessage {
            finish(
                stream, code: RPCError.Code.internalError.rawValue,
                message: "grpc: request stream ended inside a message")
            return
        }
        stream.call.receivedEnd(stream: RPCStreamHandle(connection: self, stream: stream))
    }

    /// Gives `bytes` of stream window back to the client, in WINDOW_UPDATEs of at least half the window.
    func credit(_ stream: RPCStreamState, bytes: Int) {
        guard bytes > 0, !stream.inboundEnded, !stream.finished else { return }
        stream.unacked += bytes
        if stream.unacked >= Self.streamWindow / 2 {
            context.write(
                wrapOutboundOut(
                    HTTP2Frame(streamID: stream.id, payload: .windowUpdate(windowSizeIncrement: stream.unacked))),
                promise: nil)
            stream.unacked = 0
            needsFlush = true
        }
    }

    private func creditConnection(_ bytes: Int) {
        connectionUnacked += bytes
        if connectionUnacked >= Self.connectionWindow / 2 {
            context.write(
                wrapOutboundOut(
                    HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionUnacked))),
                promise: nil)
            connectionUnacked = 0
            needsFlush = true
        }
    }

    // MARK: Outbound

    /// Sends one framed message on `stream` (response headers first if none went out yet). `promise` completes
    /// once the bytes were handed to the socket: streaming calls use it for back-pressure.
    func send(_ framed: ByteBuffer, on stream: RPCStreamState, promise: EventLoopPromise<Void>? = nil) {
        guard !stream.finished else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        sendHeadersIfNeeded(stream)
        var framed = framed
        if stream.compressResponses {
            do {
                framed = try GRPCGzip.compressFramed(framed, allocator: context.channel.allocator)
            } catch {
                promise?.fail(error)
                finish(stream, code: RPCError.Code.internalError.rawValue, message: "grpc: error while compressing")
                return
            }
        }
        let data = HTTP2Frame.FramePayload.Data(data: .byteBuffer(framed), endStream: false)
        // Counted until the bytes reach the socket: a client that does not read (or keeps its window shut) holds
        // them here, and past `maxPendingResponseBytes` its new calls are refused.
        let bytes = framed.readableBytes
        shared.traffic?.sent(bytes: bytes)
        dataFramesSent += 1
        pendingResponseBytes += bytes
        let written = promise ?? context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { [self] _ in pendingResponseBytes -= bytes }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .data(data))), promise: written)
        needsFlush = true
    }

    func sendHeadersIfNeeded(_ stream: RPCStreamState, _ headers: HPACKHeaders = GRPCWire.responseHeaders) {
        guard !stream.headersSent else { return }
        stream.headersSent = true
        var headers = headers
        if stream.compressResponses { headers.add(name: "grpc-encoding", value: "gzip") }
        context.write(
            wrapOutboundOut(
                HTTP2Frame(streamID: stream.id, payload: .headers(.init(headers: headers, endStream: false)))),
            promise: nil)
        needsFlush = true
    }

    /// Ends `stream` with a gRPC status (trailers-only when nothing was sent yet).
    func finish(_ stream: RPCStreamState, _ status: RPCStatus) {
        finish(stream, code: status.code.rawValue, message: status.message)
    }

    func finish(_ stream: RPCStreamState, code: Int, message: String, trailers extra: HPACKHeaders = [:]) {
        guard !stream.finished else { return }
        stream.finished = true
        stream.deadlineTask?.cancel()
        stream.deadlineTask = nil
        var trailers: HPACKHeaders
        if code == 0 && stream.headersSent && extra.isEmpty {
            trailers = GRPCWire.okTrailers
        } else {
            trailers = GRPCWire.trailers(code: code, message: message, trailersOnly: !stream.headersSent)
            trailers.add(contentsOf: extra)
        }
        stream.headersSent = true
        context.write(
            wrapOutboundOut(
                HTTP2Frame(streamID: stream.id, payload: .headers(.init(headers: trailers, endStream: true)))),
            promise: nil)
        if !stream.inboundEnded {
            // The client may still be sending: tell it to stop, as gRPC servers do after an early status.
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .rstStream(.noError))), promise: nil)
        }
        needsFlush = true
    }

    /// Ends a non-gRPC HTTP/2 request (health checks and metrics over h2) with a complete response.
    func finishHTTP(_ stream: RPCStreamState, head: HPACKHeaders, body: ByteBuffer) {
        guard !stream.finished else { return }
        stream.finished = true
        stream.headersSent = true
        context.write(
            wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .headers(.init(headers: head, endStream: false)))),
            promise: nil)
        context.write(
            wrapOutboundOut(
                HTTP2Frame(streamID: stream.id, payload: .data(.init(data: .byteBuffer(body), endStream: true)))),
            promise: nil)
        needsFlush = true
    }

    /// Ends a streamed non-gRPC HTTP/2 response (the JSON gateway's watch, observe, snapshot) after its DATA.
    func endHTTP(_ stream: RPCStreamState) {
        guard !stream.finished else { return }
        stream.finished = true
        let end = HTTP2Frame.FramePayload.Data(data: .byteBuffer(allocator.buffer(capacity: 0)), endStream: true)
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .data(end))), promise: nil)
        needsFlush = true
    }

    /// Resets `stream` (the call gave up without a status, e.g. its handler was cancelled).
    func reset(_ stream: RPCStreamState, code: HTTP2ErrorCode = .cancel) {
        guard !stream.finished else { return }
        stream.finished = true
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .rstStream(code))), promise: nil)
        needsFlush = true
    }

    /// Writes are gathered and flushed once per read burst (at `channelReadComplete`) or per batch of completions
    /// (at the end of the mailbox's run).
    func flushIfNeeded() {
        guard needsFlush else { return }
        needsFlush = false
        context.flush()
    }

    var allocator: ByteBufferAllocator { context.channel.allocator }
    var eventLoop: any EventLoop { context.eventLoop }
    var isWritable: Bool { context.channel.isWritable }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for stream in streams.values {
                stream.call.writable(stream: RPCStreamHandle(connection: self, stream: stream))
            }
            flushIfNeeded()
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Shutdown

    /// Stops taking new calls (GOAWAY) and closes the connection once the open ones have finished, or after
    /// `closingAfter` if given.
    func beginGracefulShutdown(closingAfter grace: TimeAmount? = nil) {
        guard !goingAway else { return }
        guard isHTTP2 else {
            // An HTTP/1.1 connection (health checks, the JSON gateway): no GOAWAY to send; it just closes.
            goingAway = true
            context.close(promise: nil)
            return
        }
        if let grace {
            let context = self.context!
            context.eventLoop.assumeIsolated().scheduleTask(in: grace) { context.close(promise: nil) }
        }
        goingAway = true
        context.write(
            wrapOutboundOut(
                HTTP2Frame(
                    streamID: .rootStream,
                    payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil))),
            promise: nil)
        context.flush()
        closeIfDrained()
    }

    private func closeIfDrained() {
        if goingAway && streams.isEmpty { context.close(promise: nil) }
    }

    func close() {
        context.close(promise: nil)
    }
}

/// One open stream of a connection (event loop only).
final class RPCStreamState {
    let id: HTTP2StreamID
    var reader: GRPCMessageReader
    var call: any RPCCall = NoCall()
    /// DATA bytes consumed since the stream's last WINDOW_UPDATE.
    var unacked = 0
    var headersSent = false
    var inboundEnded = false
    /// A status (or reset) went out: nothing more may be sent.
    var finished = false
    /// From the request's `grpc-timeout`; the task answers DEADLINE_EXCEEDED when it passes.
    var deadline: NIODeadline?
    var deadlineTask: Scheduled<Void>?
    /// Bytes of an incomplete message, counted in the connection's `bufferedRequestBytes`.
    var bufferedBytes = 0
    /// The request came gzip-encoded: response messages go out gzip-encoded too (`grpc-encoding: gzip`).
    var compressResponses = false

    init(id: HTTP2StreamID, maxMessageBytes: Int) {
        self.id = id
        reader = GRPCMessageReader(maxMessageBytes: maxMessageBytes)
    }
}

/// What serves one stream. Every method runs on the connection's event loop.
package protocol RPCCall: AnyObject {
    /// The request headers (HEADERS frame) arrived.
    func started(headers: HPACKHeaders, stream: RPCStreamHandle)
    /// One complete request message.
    func received(_ message: ByteBuffer, stream: RPCStreamHandle)
    /// DATA bytes as they arrive, for calls that are not gRPC (`wantsRawBytes`).
    func receivedRaw(_ bytes: ByteBuffer, stream: RPCStreamHandle)
    /// The client will send nothing more.
    func receivedEnd(stream: RPCStreamHandle)
    /// The stream was reset or the connection closed: nothing more can be sent.
    func cancelled()
    /// The call's deadline passed: the connection answers DEADLINE_EXCEEDED right after; work under way may stop.
    func deadlinePassed()
    /// The connection can take writes again after being full.
    func writable(stream: RPCStreamHandle)
    var wantsRawBytes: Bool { get }
    /// Whether the call gives stream window back itself as its consumer takes messages (`RPCConnectionHandler.credit`),
    /// instead of the connection doing it as they arrive.
    var creditsOnConsumption: Bool { get }
}

extension RPCCall {
    package func started(headers: HPACKHeaders, stream: RPCStreamHandle) {}
    package func receivedRaw(_ bytes: ByteBuffer, stream: RPCStreamHandle) {}
    package func writable(stream: RPCStreamHandle) {}
    package func deadlinePassed() {}
    package var wantsRawBytes: Bool { false }
    package var creditsOnConsumption: Bool { false }
}

final class NoCall: RPCCall {
    func received(_ message: ByteBuffer, stream: RPCStreamHandle) {}
    func receivedEnd(stream: RPCStreamHandle) {}
    func cancelled() {}
}

/// A stream as its call sees it on the event loop.
package struct RPCStreamHandle {
    let connection: RPCConnectionHandler
    let stream: RPCStreamState

    package var isFinished: Bool { stream.finished }

    /// The call's deadline (`grpc-timeout`), if it has one.
    package var deadline: NIODeadline? { stream.deadline }

    /// Whether the listener's services authenticate calls now (auth on): false, the hot path skips credentials.
    package var wantsCredentials: Bool { connection.shared.authentication?.isEnabled ?? false }

    /// The connection's verified client-certificate common name, nil when it has none.
    package var clientCommonName: String? { connection.clientCommonName }

    /// Serializes and sends one response message.
    package func send(_ message: some SwiftProtobuf.Message, promise: EventLoopPromise<Void>? = nil) {
        do {
            connection.send(try GRPCWire.frame(message), on: stream, promise: promise)
        } catch {
            promise?.fail(error)
            finish(code: RPCError.Code.internalError.rawValue, message: "grpc: error while marshaling: \(error)")
        }
    }

    package func sendFramed(_ framed: ByteBuffer, promise: EventLoopPromise<Void>? = nil) {
        connection.send(framed, on: stream, promise: promise)
    }

    package func finish(code: Int = 0, message: String = "", trailers: HPACKHeaders = [:]) {
        connection.finish(stream, code: code, message: message, trailers: trailers)
    }

    package func finish(_ status: RPCStatus) {
        connection.finish(stream, status)
    }

    /// A handle for other threads: what they post runs on the event loop, gathered per loop tick.
    package var remote: RemoteRPCStream { RemoteRPCStream(mailbox: connection.mailbox, stream: stream) }

    package var eventLoop: any EventLoop { connection.eventLoop }
    package var allocator: ByteBufferAllocator { connection.allocator }

    /// The call serving this stream (a service finds its own call type again in work posted to `remote`).
    package var call: any RPCCall { stream.call }

    /// Whether the connection takes more writes now (false: wait for `RPCCall.writable`).
    package var isWritable: Bool { connection.isWritable }

    /// Flushes what was written on the connection, if anything (writes made outside a read or a batch of posted
    /// work, which flush at their end).
    package func flushIfNeeded() { connection.flushIfNeeded() }
}

/// A stream handle that may cross threads (a Raft completion, a task): work posted through it runs on the
/// connection's event loop; if the connection is gone by then, the work gets nil (to fail what waits on it).
package struct RemoteRPCStream: Sendable {
    let mailbox: RPCConnectionMailbox
    let stream: NIOLoopBound<RPCStreamState>

    init(mailbox: RPCConnectionMailbox, stream: RPCStreamState) {
        self.mailbox = mailbox
        self.stream = NIOLoopBound(stream, eventLoop: mailbox.eventLoop)
    }

    package var eventLoop: any EventLoop { mailbox.eventLoop }

    package func post(_ body: @escaping @Sendable (RPCStreamHandle?) -> Void) {
        let stream = self.stream
        mailbox.post { connection in body(connection.map { RPCStreamHandle(connection: $0, stream: stream.value) }) }
    }

    /// Runs `body` at once when called on the connection's event loop (inside a read or a batch of completions,
    /// whose end flushes), otherwise like `post`.
    package func run(_ body: @escaping @Sendable (RPCStreamHandle?) -> Void) {
        if mailbox.eventLoop.inEventLoop {
            body(mailbox.connectionOnLoop.map { RPCStreamHandle(connection: $0, stream: stream.value) })
        } else {
            post(body)
        }
    }
}

/// Work for a connection from other threads, run on its event loop in batches: jobs go to the loop's
/// `EventLoopJobs`, so a Raft apply that completes a hundred calls on ten connections of a loop costs one wake-up
/// of that loop and one flush per connection.
final class RPCConnectionMailbox: Sendable {
    typealias Job = @Sendable (RPCConnectionHandler?) -> Void
    let eventLoop: any EventLoop
    private let handler: NIOLoopBoundBox<RPCConnectionHandler?>
    private let jobs: EventLoopJobs

    init(eventLoop: any EventLoop, handler: RPCConnectionHandler) {
        self.eventLoop = eventLoop
        self.handler = NIOLoopBoundBox(handler, eventLoop: eventLoop)
        jobs = EventLoopJobs.of(eventLoop)
    }

    func post(_ job: @escaping Job) {
        jobs.post(job, for: self)
    }

    /// The connection, when called on its event loop (nil once it closed).
    var connectionOnLoop: RPCConnectionHandler? { handler.value }

    /// The connection closed: later jobs run without it.
    func close() {
        handler.value = nil
    }
}

/// The connection jobs of one event loop, run by one task of that loop (`ScheduledBatch`); each connection that
/// had jobs is flushed once after all of them.
final class EventLoopJobs: Sendable {
    private let eventLoop: any EventLoop
    private let batch = ScheduledBatch<[(RPCConnectionMailbox, RPCConnectionMailbox.Job)]>([])

    private init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    private struct Entry {
        weak var jobs: EventLoopJobs?
    }

    /// Held weakly: a loop's queue lives as long as a connection of that loop has a mailbox, and it keeps its loop
    /// alive, so a key cannot be reused by another loop while its queue exists.
    private static let all = Mutex<[ObjectIdentifier: Entry]>([:])

    /// The queue of `eventLoop`, shared by every connection of that loop.
    static func of(_ eventLoop: any EventLoop) -> EventLoopJobs {
        all.withLock { all in
            let key = ObjectIdentifier(eventLoop)
            if let existing = all[key]?.jobs { return existing }
            all = all.filter { $0.value.jobs != nil }
            let made = EventLoopJobs(eventLoop: eventLoop)
            all[key] = Entry(jobs: made)
            return made
        }
    }

    func post(_ job: @escaping RPCConnectionMailbox.Job, for mailbox: RPCConnectionMailbox) {
        if batch.add({ $0.append((mailbox, job)) }) { eventLoop.execute { self.run() } }
    }

    private func run() {
        let jobs = batch.take()
        for (mailbox, job) in jobs { job(mailbox.connectionOnLoop) }
        // A connection flushes once, however many of its jobs wrote (`flushIfNeeded` clears its own flag).
        for (mailbox, _) in jobs { mailbox.connectionOnLoop?.flushIfNeeded() }
    }
}

/// The open connections of a listener (for graceful shutdown).
final class RPCConnectionRegistry: Sendable {
    private let open = Mutex<[ObjectIdentifier: (any EventLoop, NIOLoopBound<RPCConnectionHandler>)]>([:])

    func add(_ connection: RPCConnectionHandler) {
        let bound = NIOLoopBound(connection, eventLoop: connection.eventLoop)
        open.withLock { $0[ObjectIdentifier(connection)] = (connection.eventLoop, bound) }
    }

    func remove(_ connection: RPCConnectionHandler) {
        _ = open.withLock { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    var count: Int { open.withLock { $0.count } }

    /// Runs `body` on every open connection, on its event loop.
    func forEach(_ body: @escaping @Sendable (RPCConnectionHandler) -> Void) {
        for (eventLoop, bound) in open.withLock({ Array($0.values) }) {
            eventLoop.execute { body(bound.value) }
        }
    }
}
