import NIOCore
import NIOEmbedded
import Testing

@testable import RPCTransport

/// The byte-level PING responder in front of the HTTP/2 handler: PINGs are answered and removed, every other
/// byte reaches the HTTP/2 handler unchanged and in order, however the stream is cut into reads.
@Suite struct HTTP2PingResponderTests {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags]
            + [UInt8(stream >> 24), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)]
            + payload
    }

    static let settings = frame(type: 0x4, payload: [0, 3, 0, 0, 0, 100])
    static let headers = frame(type: 0x1, flags: 0x4, stream: 1, payload: Array(repeating: 0x82, count: 20))
    static let data = frame(type: 0x0, flags: 0x1, stream: 1, payload: Array(repeating: 7, count: 300))
    static func ping(_ n: UInt8) -> [UInt8] { frame(type: 0x6, payload: [1, 2, 3, 4, 5, 6, 7, n]) }
    static let pingAck = frame(type: 0x6, flags: 0x1, payload: [9, 9, 9, 9, 9, 9, 9, 9])

    /// Feeds `bytes` in reads of `chunk` bytes; returns what was passed on and what was written back.
    static func run(_ bytes: [UInt8], chunk: Int, limit: Int = 20_000) throws -> (forwarded: [UInt8], written: [UInt8]) {
        let channel = EmbeddedChannel(handler: HTTP2PingResponder(limit: limit))
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            try channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
            offset = end
        }
        var forwarded: [UInt8] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { forwarded += Array(buffer.readableBytesView) }
        var written: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { written += Array(buffer.readableBytesView) }
        _ = try channel.finish()
        return (forwarded, written)
    }

    @Test(arguments: [1, 3, 9, 17, 50, 10_000])
    func pingsAreAnsweredAndRemovedWhateverTheReadSizes(chunk: Int) throws {
        let stream = Self.preface + Self.settings + Self.ping(1) + Self.headers + Self.ping(2) + Self.ping(3)
            + Self.data + Self.pingAck + Self.ping(4)
        let (forwarded, written) = try Self.run(stream, chunk: chunk)
        #expect(forwarded == Self.preface + Self.settings + Self.headers + Self.data + Self.pingAck)
        let acks = [1, 2, 3, 4].flatMap { Self.frame(type: 0x6, flags: 0x1, payload: [1, 2, 3, 4, 5, 6, 7, UInt8($0)]) }
        #expect(written == acks)
    }

    @Test func aPingLookalikeInsideAFramePayloadIsNotTouched() throws {
        // A DATA payload that contains the bytes of a PING frame must pass through as data.
        let inner = Self.ping(7)
        let data = Self.frame(type: 0x0, stream: 3, payload: inner + inner)
        let (forwarded, written) = try Self.run(Self.preface + data, chunk: 5)
        #expect(forwarded == Self.preface + data)
        #expect(written.isEmpty)
    }

    @Test func beyondTheLimitPingsGoToTheHTTP2Handler() throws {
        let stream = Self.preface + Self.ping(1) + Self.ping(2) + Self.ping(3) + Self.headers
        let (forwarded, written) = try Self.run(stream, chunk: 64, limit: 1)
        // The first is answered here; the second crosses the limit (answered, then pass-through starts).
        #expect(written.count == 2 * 17)
        #expect(forwarded == Self.preface + Self.ping(3) + Self.headers)
    }
}
