import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import TestSupport
import Testing

/// Bytes that are not a valid protobuf message must get an error status, not a crash.
struct GarbageSerializer: MessageSerializer {
    typealias Message = [UInt8]
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
}

struct PassThroughDeserializer: MessageDeserializer {
    typealias Message = [UInt8]
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

@Suite(.ownThread) struct MalformedRequestTests {
    @Test func malformedProtobufGetsAnErrorAndTheMemberKeepsServing() async throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        let descriptor = MethodDescriptor(fullyQualifiedService: "etcdserverpb.KV", method: "Put")
        // A field tag with wire type 7 does not exist: no protobuf decoder accepts it.
        let garbage: [[UInt8]] = [[0xFF, 0xFF, 0xFF, 0xFF, 0x0F], [0x0A, 0x50, 0x01], [0x0F]]
        try await withGRPCClient(
            transport: .http2NIOPosix(
                target: .ipv4(address: "127.0.0.1", port: member.clientPort), transportSecurity: .plaintext)
        ) { client in
            for bytes in garbage {
                do {
                    _ = try await client.unary(
                        request: ClientRequest(message: bytes), descriptor: descriptor, serializer: GarbageSerializer(),
                        deserializer: PassThroughDeserializer(), options: .defaults
                    ) { try $0.message }
                    Issue.record("malformed request \(bytes) was accepted")
                } catch let error as RPCError {
                    #expect([.invalidArgument, .internalError].contains(error.code), "\(error)")
                }
            }
        }
        #expect(member.isRunning)
        #expect(try etcdctl(member.endpoint, ["put", "still", "alive"]).ok)
    }
}
