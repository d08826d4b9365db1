import NIOCore

/// Answers HTTP/2 PINGs from clients before they reach SwiftNIO's HTTP/2 handler.
///
/// Why: Go's gRPC client (etcdctl, clientv3, kube-apiserver) estimates bandwidth-delay products by sending a PING
/// each time it receives data while none is outstanding, which under load is hundreds per second per connection.
/// etcd's Go server simply answers them. NIO's HTTP/2 handler rate-limits PING and SETTINGS frames (200 per 30 s,
/// not configurable through grpc-swift's transport) and closes the connection with GOAWAY ENHANCE_YOUR_CALM when
/// they come faster; the client then fails every call in flight with "Unavailable: the connection is draining"
/// (4 failed puts per 10 s run of 64 clients against three members before this handler). So PINGs are answered
/// here, at the byte level, and every other frame passes through untouched.
///
/// A client that pings faster than `limit` per `window` is not served by this shortcut any more: its PINGs go to
/// NIO's handler again, whose flood protection then applies.
///
/// Sits between the TLS handler (or the socket) and the HTTP/2 handler, after the connection preface has been
/// seen. Frames are parsed only as far as their 9-byte headers; bytes of other frames are forwarded as they arrive.
///
/// With `keepalive` (the client URLs), it also applies grpc-go's server keepalive, which etcd configures with
/// `--grpc-keepalive-*`: a PING that comes sooner than `minTime` after the previous one (or than two hours while the
/// client has no call open) is a strike, unless the server sent headers or data since; a third strike gets GOAWAY
/// ENHANCE_YOUR_CALM with the debug data "too_many_pings", and the connection is closed. A connection nothing has
/// arrived on for `interval` is pinged, and closed when nothing arrives within `timeout` more. Streams are counted
/// from the frames' headers in both directions (opened by the client's HEADERS, closed by END_STREAM from the server
/// or RST_STREAM either way).
final class HTTP2PingResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = ByteBuffer

    private static let prefaceLength = 24
    private static let headerLength = 9
    private static let pingType: UInt8 = 0x6
    private static let ackFlag: UInt8 = 0x1

    /// Bytes of the connection preface still to pass through.
    private var prefaceRemaining: Int
    /// Bytes of the current (non-PING) frame still to forward.
    private var frameRemaining = 0
    /// An incomplete frame header, or an incomplete PING frame, waiting for more bytes.
    private var pending: ByteBuffer?
    private var answered = 0
    private var windowStart: NIODeadline = .now()
    private var passThrough = false
    private let limit: Int
    private let window: TimeAmount

    // Keepalive (nil: none).
    private let keepalive: KeepaliveSettings?
    /// Client streams open, by id.
    private var openStreams: Set<UInt32> = []
    private var highestClientStream: UInt32 = 0
    private var pingStrikes = 0
    private var lastPingAt: NIODeadline?
    /// Set when the server sends HEADERS or DATA: the client's next PING is not a strike (grpc-go's
    /// `resetPingStrikes`; Go clients ping to measure bandwidth after receiving data).
    private var resetPingStrikes = false
    private var lastRead = NIODeadline.now()
    private var keepaliveTask: Scheduled<Void>?
    private var timeoutTask: Scheduled<Void>?
    private var closing = false
    /// Outbound frame parsing: bytes of the current frame still to pass, and an incomplete header.
    private var outRemaining = 0
    private var outHeader: [UInt8] = []
    /// The payload of this side's keepalive PINGs, so that their ACKs are taken out of the stream.
    private static let keepalivePayload: UInt64 = 0x5155_4F52_554D_4B41  // "QUORUMKA"
    /// grpc-go's `maxPingStrikes` and the interval it expects without open streams (`defaultPingTimeout`).
    private static let maxPingStrikes = 2
    private static let idlePingInterval: TimeAmount = .hours(2)

    /// - Parameter expectPreface: whether the client's 24-byte connection preface is still ahead in the stream.
    init(
        expectPreface: Bool = true, limit: Int = 20_000, window: TimeAmount = .seconds(10),
        keepalive: KeepaliveSettings? = nil
    ) {
        prefaceRemaining = expectPreface ? Self.prefaceLength : 0
        self.limit = limit
        self.window = window
        self.keepalive = keepalive
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { scheduleKeepalive(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleKeepalive(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelKeepalive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelKeepalive()
        context.fireChannelInactive()
    }

    private func cancelKeepalive() {
        keepaliveTask?.cancel()
        keepaliveTask = nil
        timeoutTask?.cancel()
        timeoutTask = nil
    }

    // MARK: Server pings

    private func scheduleKeepalive(context: ChannelHandlerContext) {
        guard let keepalive, keepalive.interval > .zero, keepaliveTask == nil, !closing else { return }
        let interval = TimeAmount.nanoseconds(nanosecondsOf(keepalive.interval))
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let due = lastRead + interval
        keepaliveTask = context.eventLoop.scheduleTask(deadline: due) {
            let (handler, context) = loopBound.value
            handler.keepaliveTask = nil
            handler.keepaliveCheck(context: context, interval: interval)
        }
    }

    /// Idle for `interval` since the last read: ping, and close unless something arrives within the timeout.
    private func keepaliveCheck(context: ChannelHandlerContext, interval: TimeAmount) {
        guard let keepalive, !closing, context.channel.isActive else { return }
        if NIODeadline.now() - lastRead < interval {
            scheduleKeepalive(context: context)
            return
        }
        var ping = context.channel.allocator.buffer(capacity: Self.headerLength + 8)
        ping.writeInteger(UInt32(8) << 8 | UInt32(Self.pingType))
        ping.writeInteger(UInt8(0))
        ping.writeInteger(UInt32(0))
        ping.writeInteger(Self.keepalivePayload)
        context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
        let sent = NIODeadline.now()
        if keepalive.timeout > .zero {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let timeout = TimeAmount.nanoseconds(nanosecondsOf(keepalive.timeout))
            timeoutTask = context.eventLoop.scheduleTask(in: timeout) {
                let (handler, context) = loopBound.value
                handler.timeoutTask = nil
                if handler.lastRead < sent {
                    // grpc-go: "keepalive ping not acked within timeout": the connection is closed.
                    handler.closing = true
                    context.close(promise: nil)
                } else {
                    handler.scheduleKeepalive(context: context)
                }
            }
        } else {
            // No timeout: keep pinging every interval of silence.
            lastRead = sent
            scheduleKeepalive(context: context)
        }
    }

    // MARK: Client pings

    /// grpc-go's `handlePing` policy for a client PING; true when the client must be sent away.
    private func pingViolatesPolicy(_ keepalive: KeepaliveSettings) -> Bool {
        let now = NIODeadline.now()
        defer { lastPingAt = now }
        if resetPingStrikes {
            resetPingStrikes = false
            pingStrikes = 0
            return false
        }
        if let last = lastPingAt {
            let allowed =
                openStreams.isEmpty
                ? Self.idlePingInterval : TimeAmount.nanoseconds(nanosecondsOf(keepalive.minTime))
            if last + allowed > now { pingStrikes += 1 }
        }
        return pingStrikes > Self.maxPingStrikes
    }

    /// GOAWAY ENHANCE_YOUR_CALM "too_many_pings", as grpc-go sends it, then the connection closes.
    private func sendTooManyPings(context: ChannelHandlerContext) {
        closing = true
        cancelKeepalive()
        let debug = Array("too_many_pings".utf8)
        var frame = context.channel.allocator.buffer(capacity: Self.headerLength + 8 + debug.count)
        frame.writeInteger(UInt32(8 + debug.count) << 8 | 0x7)  // GOAWAY
        frame.writeInteger(UInt8(0))
        frame.writeInteger(UInt32(0))
        frame.writeInteger(highestClientStream & 0x7fff_ffff)
        frame.writeInteger(UInt32(0xb))  // ENHANCE_YOUR_CALM
        frame.writeBytes(debug)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if keepalive != nil, !passThrough, case .byteBuffer(let buffer) = unwrapOutboundIn(data) {
            observeOutbound(buffer)
        }
        context.write(data, promise: promise)
    }

    /// Follows the server's frames: HEADERS and DATA reset the ping strikes; END_STREAM and RST_STREAM close streams.
    private func observeOutbound(_ buffer: ByteBuffer) {
        var view = buffer.readableBytesView[...]
        while !view.isEmpty {
            if outRemaining > 0 {
                let take = min(outRemaining, view.count)
                view = view.dropFirst(take)
                outRemaining -= take
                continue
            }
            let take = min(Self.headerLength - outHeader.count, view.count)
            outHeader += view.prefix(take)
            view = view.dropFirst(take)
            guard outHeader.count == Self.headerLength else { break }
            let length = Int(outHeader[0]) << 16 | Int(outHeader[1]) << 8 | Int(outHeader[2])
            let type = outHeader[3]
            let flags = outHeader[4]
            let stream =
                (UInt32(outHeader[5]) << 24 | UInt32(outHeader[6]) << 16 | UInt32(outHeader[7]) << 8
                    | UInt32(outHeader[8])) & 0x7fff_ffff
            outHeader.removeAll(keepingCapacity: true)
            outRemaining = length
            switch type {
            case 0x0, 0x1:  // DATA, HEADERS
                resetPingStrikes = true
                if flags & 0x1 != 0 { openStreams.remove(stream) }
            case 0x3:  // RST_STREAM
                openStreams.remove(stream)
            default:
                break
            }
        }
    }

    // MARK: Inbound

    /// Follows the client's frames: HEADERS open streams, RST_STREAM closes them.
    private func observeInbound(type: UInt8, stream: UInt32) {
        guard keepalive != nil else { return }
        switch type {
        case 0x1 where stream & 1 == 1 && stream > highestClientStream:
            highestClientStream = stream
            openStreams.insert(stream)
        case 0x3:
            openStreams.remove(stream)
        default:
            break
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if closing { return }
        var input = unwrapInboundIn(data)
        lastRead = .now()
        if passThrough {
            context.fireChannelRead(data)
            return
        }
        if var held = pending {
            pending = nil
            held.writeBuffer(&input)
            input = held
        }
        // Bytes to forward are collected as a run of the input and sent in one read when a PING interrupts them.
        // (A cursor, not the reader index: ByteBuffer only slices readable bytes.)
        var runStart = input.readerIndex
        var cursor = input.readerIndex
        let end = input.writerIndex
        var wroteAck = false
        while cursor < end {
            if prefaceRemaining > 0 || frameRemaining > 0 {
                let take = min(end - cursor, prefaceRemaining > 0 ? prefaceRemaining : frameRemaining)
                cursor += take
                if prefaceRemaining > 0 { prefaceRemaining -= take } else { frameRemaining -= take }
                continue
            }
            guard end - cursor >= Self.headerLength,
                let word = input.getInteger(at: cursor, as: UInt32.self),
                let flags = input.getInteger(at: cursor + 4, as: UInt8.self)
            else {
                break  // an incomplete header: wait for the rest
            }
            let length = Int(word >> 8)
            let type = UInt8(truncatingIfNeeded: word)
            let isPing = type == Self.pingType && flags & Self.ackFlag == 0 && length == 8
            let isOurAck = keepalive != nil && type == Self.pingType && flags & Self.ackFlag != 0 && length == 8
            if !isPing && !isOurAck {
                if let stream = input.getInteger(at: cursor + 5, as: UInt32.self) {
                    observeInbound(type: type, stream: stream & 0x7fff_ffff)
                }
                cursor += Self.headerLength
                frameRemaining = length
                continue
            }
            guard end - cursor >= Self.headerLength + length else { break }  // wait for the payload
            if isOurAck {
                // The ACK of this side's keepalive PING: taken out (NIO's handler never sent that PING); any other
                // ACK goes on.
                if input.getInteger(at: cursor + Self.headerLength, as: UInt64.self) == Self.keepalivePayload {
                    forward(input.getSlice(at: runStart, length: cursor - runStart), context: context)
                    cursor += Self.headerLength + length
                    runStart = cursor
                } else {
                    cursor += Self.headerLength
                    frameRemaining = length
                }
                continue
            }
            // Forward what came before the PING, then answer it.
            forward(input.getSlice(at: runStart, length: cursor - runStart), context: context)
            var ack = context.channel.allocator.buffer(capacity: Self.headerLength + 8)
            ack.writeInteger(UInt32(8) << 8 | UInt32(Self.pingType))  // length 8, type PING
            ack.writeInteger(Self.ackFlag)
            ack.writeInteger(UInt32(0))  // stream 0
            ack.writeImmutableBuffer(input.getSlice(at: cursor + Self.headerLength, length: 8)!)
            context.write(wrapOutboundOut(ack), promise: nil)
            wroteAck = true
            cursor += Self.headerLength + length
            runStart = cursor
            if let keepalive, pingViolatesPolicy(keepalive) {
                context.flush()
                sendTooManyPings(context: context)
                return
            }
            if countAndCheckLimit() {
                passThrough = true
                break
            }
        }
        // Everything parsed so far goes on; an incomplete header or PING waits for the next read.
        forward(input.getSlice(at: runStart, length: cursor - runStart), context: context)
        if cursor < end {
            let rest = input.getSlice(at: cursor, length: end - cursor)!
            if passThrough {
                context.fireChannelRead(wrapInboundOut(rest))
            } else {
                pending = rest
            }
        }
        if wroteAck { context.flush() }
    }

    private func forward(_ slice: ByteBuffer?, context: ChannelHandlerContext) {
        guard let slice, slice.readableBytes > 0 else { return }
        context.fireChannelRead(wrapInboundOut(slice))
    }

    /// Counts one answered PING; true when the client exceeded the limit within the window.
    private func countAndCheckLimit() -> Bool {
        let now = NIODeadline.now()
        if now - windowStart > window {
            windowStart = now
            answered = 0
        }
        answered += 1
        return answered > limit
    }
}

/// `duration` in nanoseconds, truncated.
private func nanosecondsOf(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
}
