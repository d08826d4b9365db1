import NIOCore
import NIOEmbedded
import Testing

@testable import RPCTransport

/// grpc-go's keepalive enforcement, as etcd's `--grpc-keepalive-min-time` configures it, in the byte-level PING
/// responder: strikes for early PINGs, forgiven after the server sent headers or data, GOAWAY "too_many_pings" at
/// the third.
@Suite struct HTTP2KeepaliveTests {
    typealias Frames = HTTP2PingResponderTests

    static func channel(minTime: Duration = .seconds(5)) throws -> EmbeddedChannel {
        var keepalive = KeepaliveSettings()
        keepalive.minTime = minTime
        keepalive.interval = .zero
        let channel = EmbeddedChannel(handler: HTTP2PingResponder(keepalive: keepalive))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(bytes: Frames.preface + Frames.settings))
        _ = try channel.readInbound(as: ByteBuffer.self)
        return channel
    }

    /// Frame types written back, in order.
    static func writtenTypes(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var types: [UInt8] = []
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            while buffer.readableBytes >= 9 {
                let header = buffer.readBytes(length: 9)!
                types.append(header[3])
                buffer.moveReaderIndex(forwardBy: Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2]))
            }
        }
        return types
    }

    @Test func thirdEarlyPingGetsTooManyPings() throws {
        let channel = try Self.channel()
        for n in 1...3 { try channel.writeInbound(ByteBuffer(bytes: Frames.ping(UInt8(n)))) }
        #expect(try Self.writtenTypes(channel) == [6, 6, 6])
        #expect(channel.isActive)
        try channel.writeInbound(ByteBuffer(bytes: Frames.ping(4)))
        var written: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { written += Array(buffer.readableBytesView) }
        // The fourth PING's ACK, then GOAWAY(last stream 0, ENHANCE_YOUR_CALM, "too_many_pings").
        let debug = Array("too_many_pings".utf8)
        let goaway = Frames.frame(type: 0x7, payload: [0, 0, 0, 0, 0, 0, 0, 0xb] + debug)
        #expect(Array(written.suffix(goaway.count)) == goaway)
        #expect(!channel.isActive)
    }

    @Test func pingsAfterServerDataAreNotStrikes() throws {
        // Go clients ping to estimate bandwidth each time they receive data: never a strike.
        let channel = try Self.channel()
        try channel.writeInbound(ByteBuffer(bytes: Frames.headers))
        for n in 1...20 {
            try channel.writeOutbound(ByteBuffer(bytes: Frames.frame(type: 0x0, stream: 1, payload: [1, 2, 3])))
            try channel.writeInbound(ByteBuffer(bytes: Frames.ping(UInt8(n))))
        }
        #expect(channel.isActive)
        #expect(try Self.writtenTypes(channel).filter { $0 == 0x7 }.isEmpty)
        _ = try channel.finish()
    }

    @Test func withAnOpenStreamOnlyTheMinimumTimeCounts() throws {
        let channel = try Self.channel(minTime: .nanoseconds(1))
        try channel.writeInbound(ByteBuffer(bytes: Frames.headers))
        for n in 1...10 { try channel.writeInbound(ByteBuffer(bytes: Frames.ping(UInt8(n)))) }
        #expect(channel.isActive)
        // Once the server ends the stream, the client has no call open: two hours between PINGs then.
        try channel.writeOutbound(ByteBuffer(bytes: Frames.frame(type: 0x1, flags: 0x5, stream: 1, payload: [0x88])))
        for n in 11...14 { try channel.writeInbound(ByteBuffer(bytes: Frames.ping(UInt8(n)))) }
        #expect(try Self.writtenTypes(channel).contains(0x7))
        #expect(!channel.isActive)
    }
}
