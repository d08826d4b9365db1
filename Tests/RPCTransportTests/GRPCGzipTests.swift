import Foundation
import NIOCore
import Testing

@testable import RPCTransport

/// gRPC's gzip message encoding: what the reader accepts and refuses, and the framing of compressed responses.
@Suite struct GRPCGzipTests {
    let allocator = ByteBufferAllocator()

    func framed(_ flag: UInt8, _ bytes: ByteBuffer) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 5 + bytes.readableBytes)
        buffer.writeInteger(flag)
        buffer.writeInteger(UInt32(bytes.readableBytes))
        var bytes = bytes
        buffer.writeBuffer(&bytes)
        return buffer
    }

    @Test func roundTripsThroughTheReader() throws {
        let message = ByteBuffer(string: String(repeating: "etcd ", count: 1000))
        let compressed = try GRPCGzip.compress(message, allocator: allocator)
        #expect(compressed.readableBytes < message.readableBytes / 10)
        #expect(compressed.getBytes(at: compressed.readerIndex, length: 2) == [0x1F, 0x8B])  // a gzip member
        var reader = GRPCMessageReader(maxMessageBytes: 1 << 20)
        reader.gzip = true
        var received: [ByteBuffer] = []
        // A compressed message and a plain one on the same call, as gRPC allows.
        var input = framed(1, compressed)
        var plain = framed(0, ByteBuffer(string: "plain"))
        input.writeBuffer(&plain)
        try reader.append(input) { received.append($0) }
        #expect(received == [message, ByteBuffer(string: "plain")])
    }

    @Test func refusesWhatGrpcGoRefuses() throws {
        let big = try GRPCGzip.compress(ByteBuffer(repeating: 0, count: 5000), allocator: allocator)
        var reader = GRPCMessageReader(maxMessageBytes: 4096)
        reader.gzip = true
        #expect {
            try reader.append(framed(1, big)) { _ in }
        } throws: { error in
            guard let failure = error as? GRPCMessageReader.Failure else { return false }
            return GRPCMessageReader.status(for: failure).message
                == "grpc: received message after decompression larger than max (4097 vs. 4096)"
        }
        var corrupt = GRPCMessageReader(maxMessageBytes: 4096)
        corrupt.gzip = true
        #expect(throws: GRPCMessageReader.Failure.self) {
            try corrupt.append(framed(1, ByteBuffer(string: "not gzip"))) { _ in }
        }
        var identity = GRPCMessageReader(maxMessageBytes: 4096)
        #expect {
            try identity.append(framed(1, big)) { _ in }
        } throws: { error in
            guard let failure = error as? GRPCMessageReader.Failure else { return false }
            return GRPCMessageReader.status(for: failure)
                == (.internalError, "grpc: compressed flag set with identity or empty encoding")
        }
    }

    @Test func compressesEachMessageOfAFramedBatch() throws {
        var batch = GRPCWire.frame(bytes: Array("first".utf8), allocator: allocator)
        var second = GRPCWire.frame(bytes: Array(repeating: UInt8(7), count: 3000), allocator: allocator)
        batch.writeBuffer(&second)
        let compressed = try GRPCGzip.compressFramed(batch, allocator: allocator)
        var reader = GRPCMessageReader(maxMessageBytes: 1 << 20)
        reader.gzip = true
        var received: [ByteBuffer] = []
        try reader.append(compressed) { received.append($0) }
        #expect(received.map(\.readableBytes) == [5, 3000])
        #expect(compressed.getInteger(at: 0, as: UInt8.self) == 1)
    }
}
