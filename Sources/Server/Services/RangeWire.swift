import EtcdProto
import Foundation
import NIOCore
import RPCTransport

/// protobuf's wire format of a Range answer, written straight into the buffer it goes out in.
///
/// A large Range read through swift-protobuf needs an array of every `Mvccpb_KeyValue` and then the serialized
/// message beside it; written here, each page of key-values is encoded as it is read and dropped, so a unary answer
/// costs its encoded bytes and a RangeStream chunk costs one chunk. Fields are written in field-number order and
/// default values are left out, as swift-protobuf does, so the bytes are the same as its encoding of the same message
/// (the tests compare them).
enum RangeWire {
    // Tags: (field number << 3) | wire type (0 varint, 2 length-delimited).
    static let responseHeaderTag: UInt8 = 0x0A  // RangeResponse.header, RangeStreamResponse.range_response
    static let kvsTag: UInt8 = 0x12  // RangeResponse.kvs
    static let moreTag: UInt8 = 0x18  // RangeResponse.more
    static let countTag: UInt8 = 0x20  // RangeResponse.count

    @inline(__always)
    static func varintSize(_ value: UInt64) -> Int {
        value < 0x80 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    @inline(__always)
    static func writeVarint(_ value: UInt64, to buffer: inout ByteBuffer) {
        var v = value
        while v >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        buffer.writeInteger(UInt8(truncatingIfNeeded: v))
    }

    @inline(__always)
    private static func intFieldSize(_ value: Int64) -> Int {
        value == 0 ? 0 : 1 + varintSize(UInt64(bitPattern: value))
    }

    @inline(__always)
    private static func writeIntField(_ tag: UInt8, _ value: Int64, to buffer: inout ByteBuffer) {
        guard value != 0 else { return }
        buffer.writeInteger(tag)
        writeVarint(UInt64(bitPattern: value), to: &buffer)
    }

    @inline(__always)
    private static func bytesFieldSize(_ bytes: Data) -> Int {
        bytes.isEmpty ? 0 : 1 + varintSize(UInt64(bytes.count)) + bytes.count
    }

    /// Bytes of one `mvccpb.KeyValue` (without its tag and length).
    static func size(of kv: Mvccpb_KeyValue) -> Int {
        bytesFieldSize(kv.key) + intFieldSize(kv.createRevision) + intFieldSize(kv.modRevision)
            + intFieldSize(kv.version) + bytesFieldSize(kv.value) + intFieldSize(kv.lease)
    }

    /// Bytes of `kvs` as RangeResponse's field 2, tags and lengths included.
    static func size(of kvs: [Mvccpb_KeyValue]) -> Int {
        var total = 0
        for kv in kvs {
            let n = size(of: kv)
            total += 1 + varintSize(UInt64(n)) + n
        }
        return total
    }

    /// Appends `kvs` as RangeResponse's field 2: one capacity check for the page, then plain stores (a `ByteBuffer`
    /// write per byte checks capacity and uniqueness each time, which made 100-key ranges measurably slower than
    /// swift-protobuf's encoder).
    static func write(_ kvs: [Mvccpb_KeyValue], to buffer: inout ByteBuffer) {
        let total = size(of: kvs)
        guard total > 0 else { return }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { raw in
            var out = RawWriter(base: raw.baseAddress!)
            for kv in kvs {
                out.byte(kvsTag)
                out.varint(UInt64(size(of: kv)))
                out.bytesField(0x0A, kv.key)
                out.intField(0x10, kv.createRevision)
                out.intField(0x18, kv.modRevision)
                out.intField(0x20, kv.version)
                out.bytesField(0x2A, kv.value)
                out.intField(0x30, kv.lease)
            }
            precondition(out.offset == total, "RangeWire: size and encoding disagree")
            return total
        }
    }

    /// Stores into memory the caller sized exactly (`size(of:)`).
    private struct RawWriter {
        let base: UnsafeMutableRawPointer
        var offset = 0

        @inline(__always)
        mutating func byte(_ value: UInt8) {
            base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }

        @inline(__always)
        mutating func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                byte(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            byte(UInt8(truncatingIfNeeded: v))
        }

        @inline(__always)
        mutating func intField(_ tag: UInt8, _ value: Int64) {
            guard value != 0 else { return }
            byte(tag)
            varint(UInt64(bitPattern: value))
        }

        @inline(__always)
        mutating func bytesField(_ tag: UInt8, _ bytes: Data) {
            guard !bytes.isEmpty else { return }
            byte(tag)
            varint(UInt64(bytes.count))
            let start = offset
            bytes.withUnsafeBytes { source in
                (base + start).copyMemory(from: source.baseAddress!, byteCount: source.count)
            }
            offset += bytes.count
        }
    }

    /// Bytes of a `ResponseHeader` (without tag and length).
    static func size(of header: Etcdserverpb_ResponseHeader) -> Int {
        intFieldSize(Int64(bitPattern: header.clusterID)) + intFieldSize(Int64(bitPattern: header.memberID))
            + intFieldSize(header.revision) + intFieldSize(Int64(bitPattern: header.raftTerm))
    }

    /// Appends `header` as RangeResponse's field 1.
    static func write(_ header: Etcdserverpb_ResponseHeader, to buffer: inout ByteBuffer) {
        buffer.writeInteger(responseHeaderTag)
        writeVarint(UInt64(size(of: header)), to: &buffer)
        writeIntField(0x08, Int64(bitPattern: header.clusterID), to: &buffer)
        writeIntField(0x10, Int64(bitPattern: header.memberID), to: &buffer)
        writeIntField(0x18, header.revision, to: &buffer)
        writeIntField(0x20, Int64(bitPattern: header.raftTerm), to: &buffer)
    }

    /// Appends RangeResponse's `more` and `count` (left out when default).
    static func writeTail(more: Bool, count: Int64, to buffer: inout ByteBuffer) {
        if more {
            buffer.writeInteger(moreTag)
            buffer.writeInteger(UInt8(1))
        }
        writeIntField(countTag, count, to: &buffer)
    }

    /// One gRPC-framed `RangeStreamResponse` whose `range_response` has `header` (if any), `kvs`, `more`, `count`.
    static func streamMessage(
        header: Etcdserverpb_ResponseHeader?, kvs: [Mvccpb_KeyValue], more: Bool, count: Int64,
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var inner = size(of: kvs) + (more ? 2 : 0) + intFieldSize(count)
        if let header {
            let h = size(of: header)
            inner += 1 + varintSize(UInt64(h)) + h
        }
        let outer = 1 + varintSize(UInt64(inner)) + inner
        var buffer = allocator.buffer(capacity: GRPCWire.prefixLength + outer)
        GRPCWire.writePrefix(length: outer, to: &buffer)
        buffer.writeInteger(responseHeaderTag)
        writeVarint(UInt64(inner), to: &buffer)
        if let header { write(header, to: &buffer) }
        write(kvs, to: &buffer)
        writeTail(more: more, count: count, to: &buffer)
        return buffer
    }
}
