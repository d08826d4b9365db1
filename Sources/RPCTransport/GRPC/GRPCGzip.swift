import CZlib
import NIOCore

/// gRPC's "gzip" message encoding, with the system's zlib: a compressed message (flag 1 in its prefix) of a call
/// whose `grpc-encoding` is gzip is one gzip member. grpc-go clients use it with `grpc.UseCompressor(gzip.Name)`,
/// and grpc-go servers answer such a call compressed the same way, as this transport does.
enum GRPCGzip {
    /// The encoding names a request's `grpc-encoding` may carry that this transport reads.
    static let acceptEncoding = "gzip"

    enum Failure: Error {
        /// The decompressed message is larger than `limit` (its size so far, at least `limit + 1`).
        case tooLarge(Int)
        case corrupt(String)
    }

    /// `bytes` as one gzip member.
    static func compress(_ bytes: ByteBuffer, allocator: ByteBufferAllocator) throws(Failure) -> ByteBuffer {
        var stream = z_stream()
        // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
        guard
            deflateInit2_(
                &stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                Int32(MemoryLayout<z_stream>.size)) == Z_OK
        else { throw .corrupt("deflateInit2 failed") }
        defer { deflateEnd(&stream) }
        // deflateBound is enough for Z_FINISH to end the stream in one call.
        let bound = Int(deflateBound(&stream, UInt(bytes.readableBytes)))
        var output = allocator.buffer(capacity: bound)
        var status = Z_OK
        bytes.withUnsafeReadableBytes { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = UInt32(input.count)
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { out in
                stream.next_out = out.baseAddress?.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = UInt32(bound)
                status = deflate(&stream, Z_FINISH)
                return bound - Int(stream.avail_out)
            }
        }
        guard status == Z_STREAM_END else { throw .corrupt("deflate failed (\(status))") }
        return output
    }

    /// The message a gzip member decompresses to, refused beyond `limit` bytes.
    static func decompress(_ bytes: ByteBuffer, limit: Int, allocator: ByteBufferAllocator) throws(Failure)
        -> ByteBuffer
    {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .corrupt("inflateInit2 failed")
        }
        defer { inflateEnd(&stream) }
        var output = allocator.buffer(capacity: min(limit + 1, max(4096, bytes.readableBytes * 4)))
        var status = Z_OK
        bytes.withUnsafeReadableBytes { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = UInt32(input.count)
            while status == Z_OK && output.readableBytes <= limit {
                // At most one byte past the limit is produced: enough to know the message is too large.
                let room = min(64 * 1024, limit + 1 - output.readableBytes)
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { out in
                    stream.next_out = out.baseAddress?.assumingMemoryBound(to: Bytef.self)
                    stream.avail_out = UInt32(room)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return room - Int(stream.avail_out)
                }
                if status == Z_BUF_ERROR && stream.avail_in == 0 { break }
            }
        }
        if output.readableBytes > limit { throw .tooLarge(output.readableBytes) }
        guard status == Z_STREAM_END else {
            let reason = stream.msg.map { String(cString: $0) } ?? "unexpected EOF"
            throw .corrupt(reason)
        }
        return output
    }

    /// Compresses each message of `framed` (one or more prefixed messages, as calls send them) and sets their
    /// compressed flag.
    static func compressFramed(_ framed: ByteBuffer, allocator: ByteBufferAllocator) throws(Failure) -> ByteBuffer {
        var input = framed
        var output = allocator.buffer(capacity: framed.readableBytes / 2 + 64)
        while input.readableBytes >= GRPCWire.prefixLength {
            let length = Int(input.getInteger(at: input.readerIndex + 1, as: UInt32.self)!)
            guard input.readableBytes >= GRPCWire.prefixLength + length else { break }
            input.moveReaderIndex(forwardBy: GRPCWire.prefixLength)
            let message = input.readSlice(length: length)!
            var compressed = try compress(message, allocator: allocator)
            output.writeInteger(UInt8(1))
            output.writeInteger(UInt32(truncatingIfNeeded: compressed.readableBytes))
            output.writeBuffer(&compressed)
        }
        return output
    }
}
