import Foundation
import NIOCore
import SwiftProtobuf
import Testing

@testable import RPCTransport

@Suite struct GRPCWireTests {
    @Test func grpcMessagesArePercentEncodedOnlyWhereNeeded() {
        #expect(GRPCWire.percentEncode("etcdserver: key not found") == "etcdserver: key not found")
        #expect(GRPCWire.percentEncode("100% ünïcode\n") == "100%25 %C3%BCn%C3%AFcode%0A")
    }

    @Test func timeoutsInEveryUnit() {
        #expect(GRPCWire.timeout("5S") == .seconds(5))
        #expect(GRPCWire.timeout("100m") == .milliseconds(100))
        #expect(GRPCWire.timeout("2H") == .seconds(7200))
        #expect(GRPCWire.timeout("7u") == .microseconds(7))
        #expect(GRPCWire.timeout("x") == nil && GRPCWire.timeout("12") == nil && GRPCWire.timeout("1234567890S") == nil)
    }

    @Test func framedMessagesCarryThePrefixAndDecodeBack() throws {
        var request = Google_Protobuf_BytesValue()
        request.value = Data(repeating: 7, count: 1000)
        var buffer = try GRPCWire.frame(request)
        #expect(buffer.readInteger(as: UInt8.self) == 0)
        #expect(Int(buffer.readInteger(as: UInt32.self)!) == buffer.readableBytes)
        #expect(try Google_Protobuf_BytesValue(serializedBytes: Array(buffer.readableBytesView)) == request)
    }

    @Test func theReaderRefusesCompressedMessages() {
        var reader = GRPCMessageReader(maxMessageBytes: 100)
        var buffer = ByteBuffer()
        buffer.writeBytes([1, 0, 0, 0, 1, 0x08])
        #expect(throws: GRPCMessageReader.Failure.self) { try reader.append(buffer) { _ in } }
    }
}
