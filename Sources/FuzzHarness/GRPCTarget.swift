import EtcdProto
import NIOCore
import NIOEmbedded
import Node
import RPCTransport
import SwiftProtobuf

/// The client port as a gRPC client reaches it: the bytes are a connection's inbound stream (HTTP/2 preface,
/// frames, HPACK header blocks, gRPC length-prefixed messages), fed to the HTTP/2 codec and the frame-level gRPC
/// handler the listeners install, with a route for every etcd method that decodes each request as its type and
/// runs the member's pre-proposal checks (`EtcdRequests`). Deadlines (`grpc-timeout`) are made to pass at the end.
enum GRPCTarget {
    /// Decodes and checks each message; answers every call OK or with the check's error, as the member would
    /// before proposing.
    final class CheckingCall: RPCCall {
        let method: EtcdRequests.Method
        private var messages = 0

        init(method: EtcdRequests.Method) { self.method = method }

        func received(_ message: ByteBuffer, stream: RPCStreamHandle) {
            messages += 1
            if !method.streaming && messages > 1 {
                return stream.finish(code: 13, message: "grpc: unary call sent more than one message")
            }
            let request: any SwiftProtobuf.Message
            do {
                request = try method.decodeBinary(Array(message.readableBytesView))
            } catch {
                return stream.finish(code: 13, message: "grpc: error unmarshalling request: \(error)")
            }
            do {
                try EtcdRequests.check(request)
            } catch let error as EtcdError {
                return stream.finish(code: error.code.rawValue, message: error.message)
            } catch {
                return stream.finish(code: 3, message: "\(error)")
            }
            if method.streaming { stream.send(Etcdserverpb_ResponseHeader()) }
        }

        func receivedEnd(stream: RPCStreamHandle) {
            guard !stream.isFinished else { return }
            if !method.streaming && messages == 0 {
                return stream.finish(code: 13, message: "grpc: unary call sent no message")
            }
            stream.send(Etcdserverpb_ResponseHeader())
            stream.finish()
        }

        func cancelled() {}
    }

    static let routes: [String: FastRoute] = {
        var routes: [String: FastRoute] = [:]
        for method in EtcdRequests.all {
            routes[method.path] = FastRoute { CheckingCall(method: method) }
        }
        return routes
    }()

    static func run(_ bytes: [UInt8]) {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        do {
            try channel.pipeline.syncOperations.addHandlers(ConnectionUnderTest.grpcHandlers(fastRoutes: routes))
            _ = channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 2379))
            channel.embeddedEventLoop.run()
            var buffer = channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            try channel.writeInbound(buffer)
        } catch {
            // A connection error closes the connection: the expected end of most malformed inputs.
        }
        channel.embeddedEventLoop.advanceTime(by: .hours(25))
        while (try? channel.readOutbound(as: ByteBuffer.self)) != nil {}
    }
}
