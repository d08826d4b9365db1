import NIOCore
import NIOHTTP1

/// Serves gRPC (HTTP/2) and plain HTTP/1.1 (health, version, metrics, JSON gateway) on one port, as etcd does.
///
/// Installed in front of gRPC's HTTP/2 pipeline. It buffers the first inbound bytes and holds the HTTP/2
/// handler's first writes (its SETTINGS preface) until it can tell the protocols apart: a client speaking
/// HTTP/2 starts with the 24-byte connection preface. For HTTP/2 it replays everything and steps aside; for
/// HTTP/1.1 it drops the held frames and splices an HTTP/1.1 server in front of the (now idle) HTTP/2 handlers.
final class ProtocolSniffer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private enum State { case sniffing, passThrough }
    private var state = State.sniffing
    private var buffered: ByteBuffer?
    private var heldWrites: [(NIOAny, EventLoopPromise<Void>?)] = []
    private var heldFlush = false
    private let makeHTTPHandler: @Sendable () -> any ChannelHandler
    private let keepalive: KeepaliveSettings?

    init(makeHTTPHandler: @escaping @Sendable () -> any ChannelHandler, keepalive: KeepaliveSettings? = nil) {
        self.makeHTTPHandler = makeHTTPHandler
        self.keepalive = keepalive
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .sniffing else {
            context.fireChannelRead(data)
            return
        }
        var incoming = unwrapInboundIn(data)
        if buffered == nil {
            buffered = incoming
        } else {
            buffered!.writeBuffer(&incoming)
        }
        let bytes = buffered!.readableBytesView
        let prefix = min(bytes.count, Self.preface.count)
        let matchesSoFar = bytes.prefix(prefix).elementsEqual(Self.preface.prefix(prefix))
        if matchesSoFar && bytes.count < Self.preface.count { return }  // need more bytes to decide
        if matchesSoFar {
            becomeHTTP2(context: context)
        } else {
            becomeHTTP1(context: context)
        }
    }

    private func becomeHTTP2(context: ChannelHandlerContext) {
        state = .passThrough
        // Go clients' bandwidth-probing PINGs are answered before NIO's HTTP/2 flood protection sees them.
        do {
            try context.pipeline.syncOperations.addHandler(
                HTTP2PingResponder(keepalive: keepalive), position: .after(self))
        } catch {
            context.close(promise: nil)
            return
        }
        for (data, promise) in heldWrites { context.write(data, promise: promise) }
        heldWrites.removeAll()
        if heldFlush { context.flush() }
        if let buffered { context.fireChannelRead(wrapInboundOut(buffered)) }
        buffered = nil
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func becomeHTTP1(context: ChannelHandlerContext) {
        state = .passThrough
        // The HTTP/2 preface must not reach an HTTP/1.1 client.
        for (_, promise) in heldWrites { promise?.succeed() }
        heldWrites.removeAll()
        do {
            let ops = context.pipeline.syncOperations
            let encoder = HTTPResponseEncoder()
            let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes))
            let pipelining = HTTPServerPipelineHandler()
            let handler = makeHTTPHandler()
            try ops.addHandler(handler, position: .after(self))
            try ops.addHandler(pipelining, position: .after(self))
            try ops.addHandler(decoder, position: .after(self))
            try ops.addHandler(encoder, position: .after(self))
        } catch {
            context.close(promise: nil)
            return
        }
        if let buffered { context.fireChannelRead(wrapInboundOut(buffered)) }
        buffered = nil
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if state == .sniffing {
            heldWrites.append((data, promise))
        } else {
            context.write(data, promise: promise)
        }
    }

    func flush(context: ChannelHandlerContext) {
        if state == .sniffing {
            heldFlush = true
        } else {
            context.flush()
        }
    }
}
