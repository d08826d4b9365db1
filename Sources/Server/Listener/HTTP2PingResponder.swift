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
final class HTTP2PingResponder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
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

    /// - Parameter expectPreface: whether the client's 24-byte connection preface is still ahead in the stream.
    init(expectPreface: Bool = true, limit: Int = 20_000, window: TimeAmount = .seconds(10)) {
        prefaceRemaining = expectPreface ? Self.prefaceLength : 0
        self.limit = limit
        self.window = window
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
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
            if !isPing {
                cursor += Self.headerLength
                frameRemaining = length
                continue
            }
            guard end - cursor >= Self.headerLength + length else { break }  // wait for the payload
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
