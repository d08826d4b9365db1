import EtcdProto
import Foundation
import GRPCCore
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Node
import Synchronization
import Testing

@testable import RPCTransport
@testable import Server

/// The frame-level gRPC connection: requests decoded from DATA however they are cut, responses framed as gRPC
/// clients expect (headers, message, trailers), flow-control credit given back, errors as statuses.
@Suite struct RPCConnectionHandlerTests {
    /// A test route: answers a PutRequest with the key's length as the header revision, from another thread
    /// when the key starts with "later".
    static func routes() -> [String: FastRoute] {
        let metrics = ServerMetrics()
        let counters = metrics.rpcCounters(service: "etcdserverpb.KV", method: "Put", type: "unary")
        return [
            "/etcdserverpb.KV/Put": FastRoute {
                UnaryCall<Etcdserverpb_PutRequest>(counters: counters) { request, responder in
                    var response = Etcdserverpb_PutResponse()
                    response.header.revision = Int64(request.key.count)
                    if request.key.starts(with: Array("held".utf8)) {
                        // `held` for the test of key "held" alone: tests run in parallel.
                        if request.key == Data("held".utf8) { held.withLock { $0 = responder } }
                        heldByKey.withLock { $0[String(decoding: request.key, as: UTF8.self)] = responder }
                    } else if request.key.starts(with: Array("fail".utf8)) {
                        responder.respond(Result<Etcdserverpb_PutResponse, EtcdError>.failure(.keyNotFound))
                    } else if request.key.starts(with: Array("later".utf8)) {
                        let response = response
                        Thread.detachNewThread {
                            responder.respond(Result<Etcdserverpb_PutResponse, EtcdError>.success(response))
                        }
                    } else {
                        responder.respond(Result<Etcdserverpb_PutResponse, EtcdError>.success(response))
                    }
                }
            }
        ]
    }

    /// A connection handler on a thread-safe test channel, so completions can come from other threads.
    /// The responder of the last "held" request, answered by the test itself.
    static let held = Mutex<UnaryResponder?>(nil)
    /// Every held responder by key, for tests that run beside others.
    static let heldByKey = Mutex<[String: UnaryResponder]>([:])

    struct Harness {
        let channel: NIOAsyncTestingChannel
        let shared: RPCListenerShared

        init(
            http: (any HTTPRouting)? = nil, maxMessageBytes: Int = 1 << 20, bridge: RPCBridge? = nil,
            limits: RPCConnectionLimits = RPCConnectionLimits(), before: (any ChannelHandler & Sendable)? = nil
        ) async throws {
            // Refused calls get etcd's wording, as on the member's client listeners.
            var limits = limits
            limits.overloaded = EtcdError.tooManyRequests.rpcStatus
            let shared = RPCListenerShared(
                fastRoutes: RPCConnectionHandlerTests.routes(), maxMessageBytes: maxMessageBytes, bridge: bridge,
                http: http, limits: limits
            )
            self.shared = shared
            channel = try await NIOAsyncTestingChannel { channel in
                if let before { try channel.pipeline.syncOperations.addHandler(before) }
                try channel.pipeline.syncOperations.addHandler(RPCConnectionHandler(shared: shared))
            }
            try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2379)).get()
        }

        func send(_ frame: HTTP2Frame) async throws { try await channel.writeInbound(frame) }

        func request(
            _ stream: Int, path: String, contentType: String = "application/grpc", endStream: Bool = false,
            extra: HPACKHeaders = [:]
        ) async throws {
            var headers: HPACKHeaders = [
                ":method": "POST", ":scheme": "http", ":path": path, ":authority": "localhost",
                "content-type": contentType, "te": "trailers",
            ]
            headers.add(contentsOf: extra)
            try await send(
                HTTP2Frame(
                    streamID: HTTP2StreamID(stream), payload: .headers(.init(headers: headers, endStream: endStream))))
        }

        func data(_ stream: Int, _ bytes: [UInt8], endStream: Bool) async throws {
            var buffer = ByteBuffer()
            buffer.writeBytes(bytes)
            try await send(
                HTTP2Frame(
                    streamID: HTTP2StreamID(stream),
                    payload: .data(.init(data: .byteBuffer(buffer), endStream: endStream))))
        }

        /// Every frame written so far, after running pending event-loop work.
        func written() async throws -> [HTTP2Frame] {
            await channel.testingEventLoop.run()
            var frames: [HTTP2Frame] = []
            while let frame = try await channel.readOutbound(as: HTTP2Frame.self) { frames.append(frame) }
            return frames
        }

        /// The frames of stream `id` (no window updates), waiting up to a second for `count` of them.
        func frames(of id: Int, count: Int) async throws -> [HTTP2Frame.FramePayload] {
            var out: [HTTP2Frame.FramePayload] = []
            for _ in 0..<200 {
                out += RPCConnectionHandlerTests.frames(of: id, in: try await written())
                if out.count >= count { break }
                try await Task.sleep(for: .milliseconds(5))
            }
            return out
        }

        func fire(_ event: StreamClosedEvent) async {
            try? await channel.testingEventLoop.executeInContext {
                channel.pipeline.fireUserInboundEventTriggered(event)
            }
        }
    }

    static func framed(_ message: Etcdserverpb_PutRequest) throws -> [UInt8] {
        let bytes: [UInt8] = try message.serializedBytes()
        return [
            0, UInt8(bytes.count >> 24), UInt8(bytes.count >> 16 & 0xff), UInt8(bytes.count >> 8 & 0xff),
            UInt8(bytes.count & 0xff),
        ] + bytes
    }

    static func put(_ key: String, valueBytes: Int = 3) -> Etcdserverpb_PutRequest {
        var r = Etcdserverpb_PutRequest()
        r.key = Data(key.utf8)
        r.value = Data(repeating: 0x61, count: valueBytes)
        return r
    }

    /// The frames of stream `id` other than window updates.
    static func frames(of id: Int, in frames: [HTTP2Frame]) -> [HTTP2Frame.FramePayload] {
        frames.filter { $0.streamID == HTTP2StreamID(id) }.map(\.payload).filter {
            if case .windowUpdate = $0 { return false }
            return true
        }
    }

    static func decodeResponse(_ payload: HTTP2Frame.FramePayload) throws -> Etcdserverpb_PutResponse? {
        guard case .data(let data) = payload, case .byteBuffer(var buffer) = data.data else { return nil }
        #expect(buffer.readInteger(as: UInt8.self) == 0)
        let length = Int(buffer.readInteger(as: UInt32.self)!)
        #expect(buffer.readableBytes == length)
        return try Etcdserverpb_PutResponse(serializedBytes: Array(buffer.readableBytesView))
    }

    static func headers(_ payload: HTTP2Frame.FramePayload) -> (HPACKHeaders, Bool)? {
        guard case .headers(let h) = payload else { return nil }
        return (h.headers, h.endStream)
    }

    @Test func aUnaryCallGetsHeadersMessageAndOKTrailers() async throws {
        let h = try await Harness()
        _ = try await h.written()  // the connection window update
        try await h.request(1, path: "/etcdserverpb.KV/Put")
        try await h.data(1, try Self.framed(Self.put("hello")), endStream: true)
        let out = Self.frames(of: 1, in: try await h.written())
        #expect(out.count == 3)
        let (head, headEnd) = try #require(Self.headers(out[0]))
        #expect(head[":status"] == ["200"] && head["content-type"] == ["application/grpc"] && !headEnd)
        #expect(try Self.decodeResponse(out[1])?.header.revision == 5)
        let (trailers, end) = try #require(Self.headers(out[2]))
        #expect(trailers["grpc-status"] == ["0"] && end)
    }

    @Test func aMessageCutAcrossManyDataFramesIsReassembled() async throws {
        let h = try await Harness()
        try await h.request(3, path: "/etcdserverpb.KV/Put")
        let bytes = try Self.framed(Self.put("split-key", valueBytes: 300))
        // Cut inside the prefix, inside the message, and at the end.
        try await h.data(3, Array(bytes[0..<2]), endStream: false)
        try await h.data(3, Array(bytes[2..<40]), endStream: false)
        try await h.data(3, Array(bytes[40...]), endStream: true)
        let out = Self.frames(of: 3, in: try await h.written())
        #expect(try Self.decodeResponse(out[1])?.header.revision == 9)
    }

    @Test func aCompletionFromAnotherThreadIsWrittenOnTheEventLoop() async throws {
        let h = try await Harness()
        try await h.request(5, path: "/etcdserverpb.KV/Put")
        try await h.data(5, try Self.framed(Self.put("later-key")), endStream: true)
        let out = try await h.frames(of: 5, count: 3)
        #expect(out.count == 3)
        #expect(try Self.decodeResponse(out[1])?.header.revision == 9)
    }

    @Test func anEtcdErrorIsATrailersOnlyStatusWithEtcdsMessage() async throws {
        let h = try await Harness()
        try await h.request(7, path: "/etcdserverpb.KV/Put")
        try await h.data(7, try Self.framed(Self.put("fail")), endStream: true)
        let out = Self.frames(of: 7, in: try await h.written())
        #expect(out.count == 1)
        let (trailers, end) = try #require(Self.headers(out[0]))
        #expect(end && trailers[":status"] == ["200"])
        #expect(trailers["grpc-status"] == ["3"] && trailers["grpc-message"] == ["etcdserver: key not found"])
    }

    @Test func unknownMethodsAndMalformedMessagesGetStatuses() async throws {
        let h = try await Harness()
        try await h.request(9, path: "/etcdserverpb.Nope/Nothing", endStream: true)
        try await h.request(11, path: "/etcdserverpb.KV/Put")
        try await h.data(11, [0, 0, 0, 0, 3, 0xFF, 0xFF, 0xFF], endStream: true)
        let written = try await h.written()
        let unknown = try #require(Self.headers(Self.frames(of: 9, in: written)[0]))
        #expect(unknown.0["grpc-status"] == ["12"] && unknown.1)
        let malformed = try #require(Self.headers(Self.frames(of: 11, in: written)[0]))
        #expect(malformed.0["grpc-status"] == ["13"] && malformed.1)
    }

    @Test func aMessageOverTheLimitIsRefusedWithGrpcGosWording() async throws {
        let h = try await Harness(maxMessageBytes: 100)
        try await h.request(13, path: "/etcdserverpb.KV/Put")
        try await h.data(13, try Self.framed(Self.put("big", valueBytes: 200)), endStream: true)
        let out = Self.frames(of: 13, in: try await h.written())
        let (trailers, _) = try #require(Self.headers(out[0]))
        #expect(trailers["grpc-status"] == ["8"])
        #expect(trailers["grpc-message"].first?.hasPrefix("grpc: received message larger than max") == true)
    }

    @Test func largeRequestsGetFlowControlCreditBack() async throws {
        let h = try await Harness(maxMessageBytes: 8 << 20)
        let first = try await h.written()
        // The connection window is widened at once beyond HTTP/2's 64 KiB.
        #expect(first.contains { $0.streamID == .rootStream && $0.payload.isWindowUpdate })
        try await h.request(15, path: "/etcdserverpb.KV/Put")
        let bytes = try Self.framed(Self.put("k", valueBytes: RPCConnectionHandler.streamWindow))
        var offset = 0
        while offset < bytes.count - 16_384 {
            try await h.data(15, Array(bytes[offset..<offset + 16_384]), endStream: false)
            offset += 16_384
        }
        let credit = try await h.written().filter { $0.payload.isWindowUpdate }
        #expect(credit.contains { $0.streamID == HTTP2StreamID(15) }, "the stream's window is replenished")
        try await h.data(15, Array(bytes[offset...]), endStream: true)
        let out = Self.frames(of: 15, in: try await h.written())
        #expect(try Self.decodeResponse(out[1])?.header.revision == 1)
    }

    @Test func aBridgedCallGetsWindowBackOnlyAsItsHandlerConsumes() async throws {
        let jobs = Mutex<[BridgedJob]>([])
        let bridge = RPCBridge(
            methods: [MethodDescriptor(fullyQualifiedService: "quorumpb.Peer", method: "Snapshot")],
            submit: { job in jobs.withLock { $0.append(job) } })
        let h = try await Harness(maxMessageBytes: 4 << 20, bridge: bridge)
        try await h.request(25, path: "/quorumpb.Peer/Snapshot")
        // Three messages of 300 KiB: well past half the stream window, nobody consuming.
        var chunk = Etcdserverpb_PutRequest()
        chunk.value = Data(repeating: 1, count: 300 << 10)
        let bytes = try Self.framed(chunk) + Self.framed(chunk) + Self.framed(chunk)
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + 16_384, bytes.count)
            try await h.data(25, Array(bytes[offset..<end]), endStream: false)
            offset = end
        }
        func streamCredit() async throws -> Int {
            try await h.written().reduce(0) { total, frame in
                guard frame.streamID == HTTP2StreamID(25), case .windowUpdate(let increment) = frame.payload else {
                    return total
                }
                return total + increment
            }
        }
        #expect(try await streamCredit() == 0, "no window comes back while the handler has taken nothing")
        let job = try #require(jobs.withLock { $0.first })
        var parts = job.stream.inbound.makeAsyncIterator()
        _ = try await parts.next()  // metadata
        _ = try await parts.next()
        _ = try await parts.next()
        try await Task.sleep(for: .milliseconds(20))
        #expect(try await streamCredit() > 0, "two consumed messages give their window back")
    }

    @Test func aResetStreamDropsItsLateResponse() async throws {
        let h = try await Harness()
        try await h.request(17, path: "/etcdserverpb.KV/Put")
        try await h.data(17, try Self.framed(Self.put("held")), endStream: true)
        let responder = try #require(Self.held.withLock { $0 })
        await h.fire(StreamClosedEvent(streamID: HTTP2StreamID(17), reason: .cancel))
        Thread.detachNewThread {
            responder.respond(Result<Etcdserverpb_PutResponse, EtcdError>.success(Etcdserverpb_PutResponse()))
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(Self.frames(of: 17, in: try await h.written()).isEmpty)
    }

    struct Health: HTTPRouting {
        func handle(_ request: HTTPRequestInfo) async -> HTTPReply {
            .json(#"{"path":"\#(request.path)","q":"\#(request.query["x"]?.first ?? "")"}"#)
        }
    }

    @Test func plainHTTPOverHTTP2GoesToTheHTTPRouter() async throws {
        let h = try await Harness(http: Health())
        let headers: HPACKHeaders = [":method": "GET", ":scheme": "https", ":path": "/health?x=1", ":authority": "a"]
        try await h.send(
            HTTP2Frame(streamID: HTTP2StreamID(19), payload: .headers(.init(headers: headers, endStream: true))))
        let out = try await h.frames(of: 19, count: 2)
        let (head, _) = try #require(Self.headers(out[0]))
        #expect(head[":status"] == ["200"] && head["content-type"] == ["application/json"])
        guard case .data(let body) = out[1], case .byteBuffer(let buffer) = body.data else {
            Issue.record("no body")
            return
        }
        #expect(String(buffer: buffer) == #"{"path":"/health","q":"1"}"#)
        #expect(body.endStream)
    }

    @Test func gracefulShutdownSendsGoAwayAndClosesOnceIdle() async throws {
        let h = try await Harness()
        try await h.request(21, path: "/etcdserverpb.KV/Put")
        try await h.data(21, try Self.framed(Self.put("a")), endStream: true)
        h.shared.connections.forEach { $0.beginGracefulShutdown() }
        await h.channel.testingEventLoop.run()
        let frames = try await h.written()
        #expect(
            frames.contains {
                if case .goAway(let last, .noError, _) = $0.payload { return last == 21 } else { return false }
            })
        #expect(h.channel.isActive, "the answered stream is still open until it closes")
        // A new stream after GOAWAY is refused.
        try await h.request(23, path: "/etcdserverpb.KV/Put", endStream: true)
        #expect(
            try await h.written().contains {
                if case .rstStream(.refusedStream) = $0.payload { return true } else { return false }
            })
        await h.fire(StreamClosedEvent(streamID: HTTP2StreamID(21), reason: nil))
        await h.channel.testingEventLoop.run()
        #expect(!h.channel.isActive)
    }
}

extension HTTP2Frame.FramePayload {
    var isWindowUpdate: Bool {
        if case .windowUpdate = self { return true }
        return false
    }
}
