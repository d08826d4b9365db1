import Auth
import EtcdProto
import MVCC
import NIOCore
import Node
import RPCTransport

extension EtcdHandler {
    /// Bytes of keys and values a unary Range reads per page while it encodes its answer.
    static let unaryRangePageBytes = 1 << 20

    /// How many times a unary Range of the newest revision starts over when a compaction passed the revision it
    /// pinned while it was reading (it then reads the newer one, as an unpaged read would have); a read at a given
    /// revision fails with `compacted` at once.
    static let unaryRangeRestarts = 8

    /// Serves a validated Range as its gRPC-framed encoding, built as the key space is read (`RangeCursor`,
    /// `RangeWire`): no array of every key-value and no second copy of the answer. Sorted requests need every key
    /// first and take `rangeNow`. Same checks as `rangeNow`: read permission on the range before, and the answer is
    /// dropped if the auth store changed during the read.
    func rangeFramed(_ r: Etcdserverpb_RangeRequest, _ caller: Caller) throws(EtcdError) -> ByteBuffer {
        guard RangeCursor.servesInPages(r) else {
            let response = try rangeNow(r, caller)
            do {
                return try GRPCWire.frame(response)
            } catch {
                throw .internal("grpc: error while marshaling: \(error)")
            }
        }
        try check(caller) { (store, info) throws(AuthError) in try store.checkRange(r, info) }
        var restarts = 0
        while true {
            do throws(EtcdError) {
                let framed = try encodeRange(r)
                try check(caller) { (store, info) throws(AuthError) in try store.ensureRevisionUnchanged(info) }
                node.observer.rangeServed()
                return framed
            } catch {
                guard error == .compacted, r.revision <= 0, restarts < Self.unaryRangeRestarts else { throw error }
                restarts += 1
            }
        }
    }

    /// The framed RangeResponse: prefix, header, every page's key-values, `more`, `count`.
    private func encodeRange(_ r: Etcdserverpb_RangeRequest) throws(EtcdError) -> ByteBuffer {
        var cursor = RangeCursor(r, store: node.store)
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        var first = true
        repeat {
            let kvs = try cursor.next(byteBudget: Self.unaryRangePageBytes)
            // The page's exact size, and room for the prefix, the header and the tail: a range of one page (nearly
            // every range) is one allocation of the right size; a larger one doubles, as writes would.
            let needed = buffer.writerIndex + RangeWire.size(of: kvs) + (first ? 64 : 0) + 16
            if needed > buffer.capacity { buffer.reserveCapacity(first ? needed : max(needed, buffer.capacity * 2)) }
            if first {
                GRPCWire.writePrefix(length: 0, to: &buffer)  // the length is known at the end
                RangeWire.write(node.header(revision: cursor.headerRevision), to: &buffer)
                first = false
            }
            RangeWire.write(kvs, to: &buffer)
        } while !cursor.finished
        RangeWire.writeTail(more: cursor.more, count: cursor.count, to: &buffer)
        let length = buffer.readableBytes - GRPCWire.prefixLength
        guard length <= Int(UInt32.max) else { throw .internal("grpc: range response larger than 4 GiB") }
        buffer.setInteger(UInt32(length), at: buffer.readerIndex + 1)
        return buffer
    }
}
