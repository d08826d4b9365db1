import GRPCCore
import NIOCore
import NIOHPACK
import SwiftProtobuf

/// A gRPC status as this transport sends it: `grpc-status` and `grpc-message`. The services' own errors convert into
/// it (the etcd services' `EtcdError.rpcStatus`); the transport's own answers (deadlines, overload) are made of it.
package struct RPCStatus: Sendable, Equatable {
    package var code: RPCError.Code
    package var message: String

    package init(code: RPCError.Code, message: String) {
        self.code = code
        self.message = message
    }

    /// A call whose `grpc-timeout` passed: grpc-go's wording for a handler that returns `context.DeadlineExceeded`.
    package static let deadlineExceeded = RPCStatus(code: .deadlineExceeded, message: "context deadline exceeded")

    /// A call refused because its connection or listener holds too much; services may word it their own way
    /// (`RPCServerTransport.Options.overloaded`).
    package static let overloaded = RPCStatus(code: .resourceExhausted, message: "too many requests")
}

/// gRPC's HTTP/2 wire format, as far as the client port needs it: length-prefixed messages, the response
/// header blocks, statuses in trailers, request deadlines.
package enum GRPCWire {
    /// A message's five-byte prefix: a compression flag and a big-endian length.
    package static let prefixLength = 5

    /// Every response's headers say which message encodings requests may use (`GRPCGzip`), as grpc-go's do.
    static let responseHeaders: HPACKHeaders = [
        ":status": "200", "content-type": "application/grpc", "grpc-accept-encoding": GRPCGzip.acceptEncoding,
    ]
    static let okTrailers: HPACKHeaders = ["grpc-status": "0"]

    /// Trailers carrying `code` and `message` (percent-encoded, as gRPC requires for grpc-message).
    static func trailers(code: Int, message: String, trailersOnly: Bool) -> HPACKHeaders {
        var headers = trailersOnly ? responseHeaders : HPACKHeaders()
        headers.add(name: "grpc-status", value: String(code))
        if !message.isEmpty { headers.add(name: "grpc-message", value: percentEncode(message)) }
        return headers
    }

    /// gRPC's percent-encoding of grpc-message: printable ASCII except '%' is kept, everything else is %XX.
    static func percentEncode(_ message: String) -> String {
        let utf8 = message.utf8
        if utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E && $0 != 0x25 }) { return message }
        var out = ""
        out.reserveCapacity(utf8.count * 2)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != 0x25 {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out.unicodeScalars.append(Unicode.Scalar(0x25))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
            }
        }
        return out
    }

    /// Serializes `message` straight into a buffer after its five-byte prefix: one allocation, no copy.
    package static func frame(_ message: some SwiftProtobuf.Message) throws -> ByteBuffer {
        let framed: FramedMessage = try message.serializedBytes()
        return framed.buffer
    }

    /// Frames already-serialized bytes.
    package static func frame(bytes: some Collection<UInt8>, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: prefixLength + bytes.count)
        writePrefix(length: bytes.count, to: &buffer)
        buffer.writeBytes(bytes)
        return buffer
    }

    /// Writes the five-byte prefix (uncompressed flag, big-endian length) of a message of `length` bytes.
    package static func writePrefix(length: Int, to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(truncatingIfNeeded: length))
    }

    /// The request's deadline from its `grpc-timeout` header ("100m", "5S", ...), as a duration.
    static func timeout(_ value: Substring) -> Duration? {
        guard let unit = value.last, value.count >= 2, value.count <= 9, let amount = Int64(value.dropLast()),
            amount >= 0
        else { return nil }
        switch unit {
        case "H": return .seconds(amount * 3600)
        case "M": return .seconds(amount * 60)
        case "S": return .seconds(amount)
        case "m": return .milliseconds(amount)
        case "u": return .microseconds(amount)
        case "n": return .nanoseconds(amount)
        default: return nil
        }
    }
}

/// A serialized protobuf message preceded by gRPC's five-byte prefix, in one `ByteBuffer`.
///
/// swift-protobuf asks the bytes type for a zeroed buffer of the exact encoded size and writes into it; this type
/// answers with a buffer that already holds the prefix, so the encoded message never needs a second copy.
struct FramedMessage: SwiftProtobufContiguousBytes {
    private(set) var buffer: ByteBuffer

    init(repeating byte: UInt8, count: Int) {
        buffer = ByteBufferAllocator().buffer(capacity: GRPCWire.prefixLength + count)
        GRPCWire.writePrefix(length: count, to: &buffer)
        buffer.writeRepeatingByte(byte, count: count)
    }

    init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
        let bytes = Array(sequence)
        buffer = GRPCWire.frame(bytes: bytes, allocator: ByteBufferAllocator())
    }

    var count: Int { buffer.readableBytes - GRPCWire.prefixLength }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes {
            try body(UnsafeRawBufferPointer(rebasing: $0.dropFirst(GRPCWire.prefixLength)))
        }
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeMutableReadableBytes {
            try body(UnsafeMutableRawBufferPointer(rebasing: $0.dropFirst(GRPCWire.prefixLength)))
        }
    }
}

/// Splits a stream's DATA bytes into gRPC messages.
struct GRPCMessageReader {
    enum Failure: Error {
        case tooLarge(Int, limit: Int)
        case compressed
        case decompressedTooLarge(Int, limit: Int)
        case decompression(String)
    }

    let maxMessageBytes: Int
    /// The request's `grpc-encoding` is gzip: compressed messages are gunzipped.
    var gzip = false
    private var pending: ByteBuffer?

    init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// Whether bytes of an incomplete message are waiting (a stream that ends now is truncated).
    var hasPartialMessage: Bool { (pending?.readableBytes ?? 0) > 0 }

    /// Bytes of an incomplete message held until the rest arrives.
    var pendingBytes: Int { pending?.readableBytes ?? 0 }

    /// Drops the incomplete message (the stream was refused).
    mutating func discard() { pending = nil }

    /// Appends `bytes` and calls `onMessage` with each complete message, in order.
    mutating func append(_ bytes: ByteBuffer, onMessage: (ByteBuffer) throws -> Void) throws {
        var input: ByteBuffer
        if var held = pending {
            pending = nil
            var more = bytes
            held.writeBuffer(&more)
            input = held
        } else {
            input = bytes
        }
        while input.readableBytes >= GRPCWire.prefixLength {
            let index = input.readerIndex
            let flag = input.getInteger(at: index, as: UInt8.self)!
            let length = Int(input.getInteger(at: index + 1, as: UInt32.self)!)
            if flag != 0 && !gzip { throw Failure.compressed }
            if length > maxMessageBytes { throw Failure.tooLarge(length, limit: maxMessageBytes) }
            guard input.readableBytes >= GRPCWire.prefixLength + length else { break }
            input.moveReaderIndex(forwardBy: GRPCWire.prefixLength)
            var message = input.readSlice(length: length)!
            if flag != 0 {
                do {
                    message = try GRPCGzip.decompress(message, limit: maxMessageBytes, allocator: ByteBufferAllocator())
                } catch .tooLarge(let size) {
                    throw Failure.decompressedTooLarge(size, limit: maxMessageBytes)
                } catch .corrupt(let reason) {
                    throw Failure.decompression(reason)
                }
            }
            try onMessage(message)
        }
        if input.readableBytes > 0 { pending = input }
    }

    /// The status a client gets for a framing failure, with grpc-go's wording for the size limit.
    static func status(for failure: Failure) -> (code: RPCError.Code, message: String) {
        switch failure {
        case .tooLarge(let size, let limit):
            return (.resourceExhausted, "grpc: received message larger than max (\(size) vs. \(limit))")
        case .compressed:
            return (.internalError, "grpc: compressed flag set with identity or empty encoding")
        case .decompressedTooLarge(let size, let limit):
            return (
                .resourceExhausted, "grpc: received message after decompression larger than max (\(size) vs. \(limit))"
            )
        case .decompression(let reason):
            return (.internalError, "grpc: failed to decompress the received message: \(reason)")
        }
    }
}
