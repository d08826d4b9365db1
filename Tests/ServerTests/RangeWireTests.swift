import EtcdProto
import Foundation
import NIOCore
import TestSupport
import Testing

@testable import RPCTransport
@testable import Server

/// The Range answer written by hand (`RangeWire`) is swift-protobuf's encoding of the same message, byte for byte:
/// unary answers and RangeStream chunks may be built either way.
@Suite struct RangeWireTests {
    static func randomKV(_ g: inout SeededRandom) -> Mvccpb_KeyValue {
        var kv = Mvccpb_KeyValue()
        func int(_ g: inout SeededRandom) -> Int64 {
            switch Int.random(in: 0..<4, using: &g) {
            case 0: return 0
            case 1: return Int64.random(in: 1...127, using: &g)
            case 2: return Int64.random(in: 128...Int64.max, using: &g)
            default: return Int64.random(in: Int64.min..<0, using: &g)
            }
        }
        kv.key = Data(g.bytes(Int.random(in: 0...200, using: &g)))
        kv.createRevision = int(&g)
        kv.modRevision = int(&g)
        kv.version = int(&g)
        kv.value = Data(g.bytes([0, 1, 127, 128, 300, 20_000].randomElement(using: &g)!))
        kv.lease = int(&g)
        return kv
    }

    @Test func handWrittenAnswersAreSwiftProtobufsBytes() throws {
        var g = SeededRandom()
        for _ in 0..<200 {
            var response = Etcdserverpb_RangeResponse()
            var header = Etcdserverpb_ResponseHeader()
            header.clusterID = Bool.random(using: &g) ? UInt64.random(in: 0...UInt64.max, using: &g) : 0
            header.memberID = UInt64.random(in: 0...UInt64.max, using: &g)
            header.revision = Int64.random(in: 0...1 << 40, using: &g)
            header.raftTerm = UInt64.random(in: 0...300, using: &g)
            let hasHeader = Bool.random(using: &g)
            if hasHeader { response.header = header }
            response.kvs = (0..<Int.random(in: 0...20, using: &g)).map { _ in Self.randomKV(&g) }
            response.more = Bool.random(using: &g)
            response.count = Bool.random(using: &g) ? 0 : Int64.random(in: 1...1 << 33, using: &g)
            var wrapped = Etcdserverpb_RangeStreamResponse()
            wrapped.rangeResponse = response

            let chunk = RangeWire.streamMessage(
                header: hasHeader ? header : nil, kvs: response.kvs, more: response.more, count: response.count,
                allocator: ByteBufferAllocator())
            #expect(Array(chunk.readableBytesView) == Array(try GRPCWire.frame(wrapped).readableBytesView))

            guard hasHeader else { continue }
            var unary = ByteBufferAllocator().buffer(capacity: 0)
            RangeWire.write(header, to: &unary)
            RangeWire.write(response.kvs, to: &unary)
            RangeWire.writeTail(more: response.more, count: response.count, to: &unary)
            #expect(Array(unary.readableBytesView) == (try response.serializedBytes() as [UInt8]))
        }
    }
}
