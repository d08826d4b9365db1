import EtcdProto
import Foundation
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Node
import Testing

@testable import RPCTransport
@testable import Server

/// The client port under abuse, one connection at a time: deadlines answered DEADLINE_EXCEEDED, streams past the
/// limit refused, rapid reset answered with GOAWAY, buffered request and response bytes bounded.
@Suite struct RPCAbuseTests {
    typealias T = RPCConnectionHandlerTests

    static func status(_ payloads: [HTTP2Frame.FramePayload]) -> (code: String?, message: String?)? {
        for payload in payloads {
            if let (headers, end) = T.headers(payload), end {
                return (headers.first(name: "grpc-status"), headers.first(name: "grpc-message"))
            }
        }
        return nil
    }

    static func resets(_ frames: [HTTP2Frame]) -> [(Int, HTTP2ErrorCode)] {
        frames.compactMap { frame in
            if case .rstStream(let code) = frame.payload { return (Int(Int32(frame.streamID)), code) }
            return nil
        }
    }

    @Test func aCallWhoseDeadlinePassesIsAnsweredDeadlineExceeded() async throws {
        let h = try await T.Harness()
        try await h.request(1, path: "/etcdserverpb.KV/Put", extra: ["grpc-timeout": "50m"])
        try await h.data(1, try T.framed(T.put("held-deadline")), endStream: true)
        let responder = try #require(T.heldByKey.withLock { $0["held-deadline"] })
        #expect(responder.deadline != nil, "the handler learns the deadline (to drop a late proposal)")
        await h.channel.testingEventLoop.advanceTime(by: .milliseconds(40))
        #expect(T.frames(of: 1, in: try await h.written()).isEmpty, "not before the deadline")
        await h.channel.testingEventLoop.advanceTime(by: .milliseconds(20))
        let status = try #require(Self.status(T.frames(of: 1, in: try await h.written())))
        #expect(status.code == "4" && status.message == "context deadline exceeded")
        // The answer computed later goes nowhere.
        responder.respond(Result<Etcdserverpb_PutResponse, EtcdError>.success(Etcdserverpb_PutResponse()))
        #expect(T.frames(of: 1, in: try await h.written()).isEmpty)
    }

    @Test func aCallThatArrivesWithNoTimeLeftIsNeverStarted() async throws {
        let h = try await T.Harness()
        try await h.request(1, path: "/etcdserverpb.KV/Put", extra: ["grpc-timeout": "0n"])
        try await h.data(1, try T.framed(T.put("held-expired")), endStream: true)
        let status = try #require(Self.status(T.frames(of: 1, in: try await h.written())))
        #expect(status.code == "4")
        #expect(T.heldByKey.withLock { $0["held-expired"] } == nil)
    }

    @Test func streamsPastTheLimitAreRefused() async throws {
        let h = try await T.Harness(limits: RPCConnectionLimits(maxConcurrentStreams: 2))
        try await h.request(1, path: "/etcdserverpb.KV/Put")
        try await h.request(3, path: "/etcdserverpb.KV/Put")
        try await h.request(5, path: "/etcdserverpb.KV/Put")
        #expect(Self.resets(try await h.written()).map(\.0) == [5])
        #expect(Self.resets(try await h.written()).isEmpty)
        await h.fire(StreamClosedEvent(streamID: HTTP2StreamID(1), reason: .cancel))
        try await h.request(7, path: "/etcdserverpb.KV/Put")
        try await h.data(7, try T.framed(T.put("ok")), endStream: true)
        let out = try await h.frames(of: 7, count: 3)
        #expect(Self.status(out)?.code == "0", "a stream fits again once one closed")
        #expect(RPCConnectionLimits(maxConcurrentStreams: Int(Int32.max)).maxConcurrentStreams == 10_000)
    }

    @Test func rapidResetGetsGoAwayEnhanceYourCalm() async throws {
        var limits = RPCConnectionLimits()
        limits.maxPrematureResets = 5
        // The count restarts every window; under a loaded full suite this test once took 30 s, which let the window
        // roll between resets and no GOAWAY came. A window no run outlasts keeps the test about counting.
        limits.abuseWindow = .hours(1)
        let h = try await T.Harness(limits: limits)
        // Answered streams reset afterwards (clientv3's KeepAliveOnce) are not counted.
        for n in 0..<10 {
            let id = 1 + 2 * n
            try await h.request(id, path: "/etcdserverpb.KV/Put")
            try await h.data(id, try T.framed(T.put("a")), endStream: true)
            await h.fire(StreamClosedEvent(streamID: HTTP2StreamID(id), reason: .cancel))
        }
        _ = try await h.written()
        #expect(h.channel.isActive)
        // Reset before any answer, again and again: the sixth is one too many.
        for n in 0..<6 {
            let id = 101 + 2 * n
            try await h.request(id, path: "/etcdserverpb.KV/Put")
            try await h.data(id, try T.framed(T.put("held-reset-\(n)")), endStream: true)
            await h.fire(StreamClosedEvent(streamID: HTTP2StreamID(id), reason: .cancel))
        }
        let goAway = try await h.written().compactMap { frame -> (HTTP2StreamID, HTTP2ErrorCode, String?)? in
            guard case .goAway(let last, let code, let data) = frame.payload else { return nil }
            return (last, code, data.map { String(buffer: $0) })
        }
        #expect(goAway.count == 1)
        #expect(goAway.first?.0 == HTTP2StreamID(111) && goAway.first?.1 == .enhanceYourCalm)
        #expect(goAway.first?.2 == "too_many_resets")
        await h.channel.testingEventLoop.run()
        #expect(!h.channel.isActive)
    }

    @Test func aFloodOfTinyWindowUpdatesGetsGoAway() async throws {
        var limits = RPCConnectionLimits()
        limits.maxSmallWindowUpdates = 100
        limits.abuseWindow = .hours(1)  // as above: the window must not roll during the test
        let h = try await T.Harness(limits: limits)
        // Credit given back in large steps is ordinary client behaviour, however often.
        for _ in 0..<300 {
            try await h.send(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: 16_384)))
        }
        #expect(h.channel.isActive)
        // So is credit returned in small steps for small responses, as grpc's C core (Python's grpcio) does: a
        // stream and a connection WINDOW_UPDATE for each response's bytes, 150 calls' worth here.
        for n in 0..<150 {
            let id = 1 + 2 * n
            try await h.request(id, path: "/etcdserverpb.KV/Put")
            try await h.data(id, try T.framed(T.put("k\(n)")), endStream: true)
            _ = try await h.frames(of: id, count: 3)
            try await h.send(HTTP2Frame(streamID: HTTP2StreamID(id), payload: .windowUpdate(windowSizeIncrement: 20)))
            try await h.send(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: 20)))
        }
        #expect(h.channel.isActive)
        #expect(try await h.written().allSatisfy { if case .goAway = $0.payload { false } else { true } })
        // Credit for nothing sent: past the allowance (100, plus two for each of the 150 responses), GOAWAY.
        for _ in 0..<101 {
            try await h.send(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: 1)))
        }
        let goAway = try await h.written().compactMap { frame -> (HTTP2ErrorCode, String?)? in
            guard case .goAway(_, let code, let data) = frame.payload else { return nil }
            return (code, data.map { String(buffer: $0) })
        }
        #expect(goAway.count == 1 && goAway.first?.0 == .enhanceYourCalm)
        #expect(goAway.first?.1 == "too_many_window_updates")
        await h.channel.testingEventLoop.run()
        #expect(!h.channel.isActive)
    }

    @Test func bufferedRequestBytesAreBounded() async throws {
        var limits = RPCConnectionLimits()
        limits.maxBufferedRequestBytes = 1000
        let h = try await T.Harness(limits: limits)
        // A message announced as 5000 bytes, of which 800 arrived: held (under the bound).
        let big = try T.framed(T.put("k", valueBytes: 4990))
        try await h.request(1, path: "/etcdserverpb.KV/Put")
        try await h.data(1, Array(big.prefix(800)), endStream: false)
        #expect(h.shared.listenerBufferedRequestBytes == 800)
        // 400 more pass the bound: the stream is refused and its bytes released.
        try await h.data(1, Array(big[800..<1200]), endStream: false)
        let status = try #require(Self.status(T.frames(of: 1, in: try await h.written())))
        #expect(status.code == "8" && status.message == "etcdserver: too many requests")
        #expect(h.shared.listenerBufferedRequestBytes == 0)
        // The rest of that message is dropped; other streams are served as before.
        try await h.data(1, Array(big[1200...]), endStream: true)
        #expect(h.shared.listenerBufferedRequestBytes == 0)
        try await h.request(3, path: "/etcdserverpb.KV/Put")
        try await h.data(3, try T.framed(T.put("small")), endStream: true)
        #expect(Self.status(try await h.frames(of: 3, count: 3))?.code == "0")
    }

    /// Holds the promises of DATA writes, as a socket the client does not read from would.
    final class HoldingWrites: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = HTTP2Frame
        typealias OutboundOut = HTTP2Frame
        var held: [EventLoopPromise<Void>] = []

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            let frame = unwrapOutboundIn(data)
            if case .data = frame.payload, let promise {
                held.append(promise)
                context.write(data, promise: nil)
            } else {
                context.write(data, promise: promise)
            }
        }
    }

    @Test func aClientThatDoesNotReadItsAnswersGetsNoMoreWorkDone() async throws {
        var limits = RPCConnectionLimits()
        limits.maxPendingResponseBytes = 0
        let holding = HoldingWrites()
        let h = try await T.Harness(limits: limits, before: holding)
        try await h.request(1, path: "/etcdserverpb.KV/Put")
        try await h.data(1, try T.framed(T.put("answered")), endStream: true)
        #expect(Self.status(try await h.frames(of: 1, count: 3))?.code == "0")
        // Its response is still not on the wire: the next call is refused.
        try await h.request(3, path: "/etcdserverpb.KV/Put")
        try await h.data(3, try T.framed(T.put("refused")), endStream: true)
        let status = try #require(Self.status(T.frames(of: 3, in: try await h.written())))
        #expect(status.code == "8" && status.message == "etcdserver: too many requests")
        // Once the bytes are written, calls are served again.
        try await h.channel.testingEventLoop.executeInContext {
            for promise in holding.held { promise.succeed() }
            holding.held.removeAll()
        }
        try await h.request(5, path: "/etcdserverpb.KV/Put")
        try await h.data(5, try T.framed(T.put("again")), endStream: true)
        #expect(Self.status(try await h.frames(of: 5, count: 3))?.code == "0")
    }
}
