import Foundation
import GRPCCore
import NIOCore
import NIOHPACK
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

/// A relayed error's trailers must not be written twice: the transport writes status, content type and
/// pseudo-headers itself.
@Suite struct RelayedMetadataTests {
    @Test func namesTheTransportWritesAreLeftOut() {
        var metadata = Metadata()
        metadata.addString("200", forKey: ":status")
        metadata.addString("application/grpc", forKey: "content-type")
        metadata.addString("5", forKey: "grpc-status")
        metadata.addString("not found", forKey: "grpc-message")
        metadata.addString("abc", forKey: "token")
        metadata.addBinary([1, 2, 3], forKey: "trace-bin")
        var headers = HPACKHeaders()
        headers.add(metadata: metadata)
        #expect(headers.map(\.name) == ["token", "trace-bin"])
        #expect(headers.first(name: "trace-bin") == "AQID")
    }
}
