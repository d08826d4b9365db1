import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOPosix
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// One member against 10,000 client connections carrying 100,000 requests at once (loopback): 10,000 Puts sent
/// whole, each answered (applied, or etcd's "too many requests" past the member's bounds), and 90,000 half-sent,
/// holding their streams and buffered bytes; the member's peak memory stays under 1 GiB, and another client is
/// served throughout. About 45 s on 2 busy cores with the debug build.
@Suite(.ownThread) struct ClientFloodTests {
    static let floodPath = ProcessInfo.processInfo.environment["QUORUM_FLOOD_PATH"] ?? "/etcdserverpb.KV/Put"
    static let connections = Int(ProcessInfo.processInfo.environment["QUORUM_FLOOD_CONNECTIONS"] ?? "") ?? 10_000
    static let requestsPerConnection = 10
    /// Of each connection's requests, how many are sent whole (the others stay half-sent, holding their stream
    /// and buffered bytes): 100,000 requests in flight at once cost the debug build's HTTP/2 stack more CPU than
    /// CI's 2 cores give in a minute if all of them are served.
    static let completePerConnection = 1
    /// The member's peak resident memory (VmHWM) must stay under this (measured: see docs/BENCHMARKS.md).
    static let memoryBound = 1 << 30

    /// Answers counted by gRPC status; `waitForAll` returns once every request was answered, or at its deadline.
    final class Tally: Sendable {
        struct State {
            var byStatus: [String: Int] = [:]
            var answered = 0
            var expired = false
            var waiter: CheckedContinuation<Void, Never>?
        }
        let expected: Int
        private let state = Mutex(State())

        init(expected: Int) { self.expected = expected }

        func record(_ status: String) {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                s.byStatus[status, default: 0] += 1
                s.answered += 1
                if s.answered == expected { defer { s.waiter = nil }; return s.waiter }
                return nil
            }
            waiter?.resume()
        }

        /// Whether every request was answered within `timeout` (the guard against a hang: the test's own time
        /// limit would also count the time it waited for a thread of its own).
        func waitForAll(timeout: Duration) async -> Bool {
            let timer = Task {
                try? await Task.sleep(for: timeout)
                let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                    s.expired = true
                    defer { s.waiter = nil }
                    return s.waiter
                }
                waiter?.resume()
            }
            defer { timer.cancel() }
            await withCheckedContinuation { continuation in
                let done = state.withLock { s -> Bool in
                    if s.answered >= expected || s.expired { return true }
                    s.waiter = continuation
                    return false
                }
                if done { continuation.resume() }
            }
            return state.withLock { $0.answered >= expected }
        }

        var snapshot: (byStatus: [String: Int], answered: Int) { state.withLock { ($0.byStatus, $0.answered) } }

        /// Connection-level events (GOAWAY, closes, errors) by kind: none is expected while the test runs, and
        /// each explains unanswered requests.
        func note(_ event: String) { events.withLock { $0[event, default: 0] += 1 } }
        var connectionEvents: [String: Int] { events.withLock { $0 } }
        private let events = Mutex<[String: Int]>([:])
    }

    /// The bytes one flood connection sends, encoded once: the connection preface, an empty SETTINGS, and per
    /// stream a HEADERS block (HPACK literals, no indexing) and one DATA frame with a Put, ending the stream.
    /// Written raw, so that the test's own CPU goes to sockets, not to an HTTP/2 stack (the member gets 2 cores'
    /// worth of debug build otherwise shared with it).
    static func floodBytes(requests: Int, complete: Int, request: String, body: [UInt8], authority: String)
        -> [UInt8]
    {
        func frame(_ type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
            let n = payload.count
            return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags]
                + [
                    UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff),
                    UInt8(stream & 0xff),
                ]
                + payload
        }
        func literal(_ name: String, _ value: String) -> [UInt8] {
            // "Literal Header Field with Incremental Indexing — New Name", lengths under 127, no Huffman.
            [0x40, UInt8(name.utf8.count)] + Array(name.utf8) + [UInt8(value.utf8.count)] + Array(value.utf8)
        }
        let fields = [
            (":method", "POST"), (":scheme", "http"), (":path", request), (":authority", authority),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ]
        // The first block adds the six fields to the dynamic table (the last one added at index 62); later blocks
        // name them by index, as HTTP/2 clients do.
        let first = fields.flatMap { literal($0.0, $0.1) }
        let indexed = (0..<fields.count).map { UInt8(0x80 | (62 + fields.count - 1 - $0)) }
        let message =
            [
                0, UInt8(body.count >> 24 & 0xff), UInt8(body.count >> 16 & 0xff), UInt8(body.count >> 8 & 0xff),
                UInt8(body.count & 0xff),
            ] + body
        var bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(0x4, flags: 0, stream: 0, [])
        for n in 0..<requests {
            let id = UInt32(1 + 2 * n)
            bytes += frame(0x1, flags: 0x4, stream: id, n == 0 ? first : indexed)  // END_HEADERS
            if n < complete {
                bytes += frame(0x0, flags: 0x1, stream: id, message)  // END_STREAM
            } else {
                // Still being sent: the first half of the message, the rest never comes.
                bytes += frame(0x0, flags: 0, stream: id, Array(message.prefix(message.count / 2)))
            }
        }
        return bytes
    }

    /// Sends its requests when connected; classifies each stream's answer from frame headers alone: a stream that
    /// got DATA was answered with a response (the Put applied), one ended by HEADERS without DATA got a
    /// trailers-only status (an error: "too many requests" here), RST_STREAM is a reset.
    final class FloodHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let tally: Tally
        let request: [UInt8]
        /// Succeeds with the member's first bytes (its SETTINGS): proof that it accepted the connection, which a
        /// completed TCP connect is not (the kernel completes it while the connection waits in the accept queue).
        let accepted: EventLoopPromise<Void>
        private var pending = ByteBuffer()
        private var gotData: Set<UInt32> = []
        private var heard = false

        init(tally: Tally, request: [UInt8], accepted: EventLoopPromise<Void>) {
            self.tally = tally
            self.request = request
            self.accepted = accepted
        }

        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: request)), promise: nil)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            if !heard {
                heard = true
                accepted.succeed()
            }
            pending.writeBuffer(&bytes)
            while pending.readableBytes >= 9 {
                let header = pending.getBytes(at: pending.readerIndex, length: 9)!
                let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
                guard pending.readableBytes >= 9 + length else { break }
                let (type, flags) = (header[3], header[4])
                let stream =
                    UInt32(header[5] & 0x7f) << 24 | UInt32(header[6]) << 16 | UInt32(header[7]) << 8
                    | UInt32(header[8])
                pending.moveReaderIndex(forwardBy: 9 + length)
                switch type {
                case 0x0 where stream != 0:
                    gotData.insert(stream)
                case 0x1 where flags & 0x1 != 0:
                    tally.record(gotData.remove(stream) != nil ? "response" : "trailers-only")
                case 0x3:
                    tally.record("reset")
                case 0x7 where length >= 8:
                    let payload = pending.getBytes(at: pending.readerIndex - length, length: length)!
                    let code = payload[4...7].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                    tally.note("GOAWAY \(code) \(String(decoding: payload.dropFirst(8), as: UTF8.self))")
                default:
                    break
                }
            }
            pending.discardReadBytes()
        }

        func channelInactive(context: ChannelHandlerContext) {
            tally.note("closed by the member")
            if !heard {
                heard = true
                accepted.fail(ChannelError.ioOnClosedChannel)
            }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            tally.note("error: \(error)")
            context.close(promise: nil)
        }
    }

    static func raiseOpenFileLimit() throws -> Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { throw TestFailure("setrlimit failed") }
        return Int(limit.rlim_cur)
    }

    /// The member's peak resident set (VmHWM) in bytes.
    static func peakResident(of pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
            return (kb ?? 0) * 1024
        }
        return 0
    }

    /// CPU seconds (user + system) a process used so far.
    static func cpuSeconds(of pid: Int32) -> Double {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        guard let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func p99(_ samples: [Duration]) -> Duration {
        let sorted = samples.sorted()
        return sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
    }

    @Test func tenThousandConnectionsAndAHundredThousandRequests() async throws {
        let openFiles = try Self.raiseOpenFileLimit()
        try #require(openFiles >= Self.connections + 1000, "needs an open-file limit above \(Self.connections)")
        let scratch = TemporaryDirectory()
        // The member inherits the raised limit.
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        let pid = try #require(member.process?.processIdentifier)
        let started = ContinuousClock.now

        try await withGRPCClient(
            transport: .http2NIOPosix(
                target: .ipv4(address: "127.0.0.1", port: member.clientPort), transportSecurity: .plaintext)
        ) { grpc in
            let kv = Etcdserverpb_KV.Client(wrapping: grpc)
            var put = Etcdserverpb_PutRequest()
            put.key = Data("probe".utf8)
            put.value = Data("1".utf8)
            _ = try await kv.put(put)
            var range = Etcdserverpb_RangeRequest()
            range.key = Data("probe".utf8)
            let clock = ContinuousClock()
            var normal: [Duration] = []
            for _ in 0..<200 { normal.append(try await clock.measure { _ = try await kv.range(range) }) }

            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            let total = Self.connections * Self.completePerConnection
            let tally = Tally(expected: total)
            let port = member.clientPort
            var floodPut = Etcdserverpb_PutRequest()
            floodPut.key = Data("flood".utf8)
            floodPut.value = Data(repeating: 0x78, count: 64)
            let request = Self.floodBytes(
                requests: Self.requestsPerConnection, complete: Self.completePerConnection, request: Self.floodPath,
                body: try floodPut.serializedBytes(),
                authority: "127.0.0.1:\(port)")
            let flood = Task {
                var channels: [any Channel] = []
                channels.reserveCapacity(Self.connections)
                // Connected 500 at a time, each batch once the member accepted the previous one (it answered with
                // its SETTINGS), so its accept queue never overflows: an overflowing queue drops handshakes that
                // the client believes complete, and after a minute of SYN-ACK retries they are reset unanswered.
                for batchStart in stride(from: 0, to: Self.connections, by: 500) {
                    let batch = (batchStart..<min(Self.connections, batchStart + 500)).map { _ in
                        let accepted = group.next().makePromise(of: Void.self)
                        let connected = ClientBootstrap(group: group)
                            .channelInitializer { channel in
                                channel.eventLoop.makeCompletedFuture {
                                    try channel.pipeline.syncOperations.addHandler(
                                        FloodHandler(tally: tally, request: request, accepted: accepted))
                                }
                            }
                            .connect(host: "127.0.0.1", port: port)
                        connected.whenFailure { accepted.fail($0) }
                        return (connected, accepted.futureResult)
                    }
                    for (connected, accepted) in batch {
                        channels.append(try await connected.get())
                        try await accepted.get()
                    }
                }
                print(
                    "flood: connected after \(ContinuousClock.now - started), \(tally.snapshot.answered) answered, "
                        + "member CPU \(Self.cpuSeconds(of: pid)) s, test CPU \(Self.cpuSeconds(of: getpid())) s")
                return channels
            }
            // Another client, served while the flood is under way.
            var during: [Duration] = []
            var probeFailures: [String] = []
            var probes = 0
            while tally.snapshot.answered < total && probes < 2000 && !Task.isCancelled {
                probes += 1
                do {
                    during.append(try await clock.measure { _ = try await kv.range(range) })
                } catch {
                    probeFailures.append("\(error)")
                }
            }
            let channels = try await flood.value
            let allAnswered = await tally.waitForAll(timeout: .seconds(150))
            let unanswered =
                "not every whole request was answered within 150 s: \(tally.snapshot.answered) answers; connection "
                + "events \(tally.connectionEvents); member log: \(member.logTail())"
            #expect(allAnswered, "\(unanswered)")
            // Every connection up, its whole requests answered, the other nine streams of each still open and
            // half-sent (90,000 requests in flight): the other client is served meanwhile.
            var held: [Duration] = []
            for _ in 0..<100 {
                do {
                    held.append(try await clock.measure { _ = try await kv.range(range) })
                } catch {
                    probeFailures.append("\(error)")
                }
            }
            let elapsed = ContinuousClock.now - started
            let peak = Self.peakResident(of: pid)
            let (byStatus, answered) = tally.snapshot
            print(
                "flood: \(channels.count) connections, \(answered) answers \(byStatus), probes \(during.count) "
                    + "(p99 \(Self.p99(normal)) before, \(during.isEmpty ? .zero : Self.p99(during)) during, "
                    + "\(held.isEmpty ? .zero : Self.p99(held)) with the streams held), "
                    + "peak RSS \(peak >> 20) MiB, \(elapsed), member CPU \(Self.cpuSeconds(of: pid)) s, "
                    + "test CPU \(Self.cpuSeconds(of: getpid())) s")
            #expect(channels.count == Self.connections)
            #expect(answered == total)
            // Every answer is either the write applied or a refusal (etcd's "too many requests"): no reset.
            #expect(Set(byStatus.keys).isSubset(of: ["response", "trailers-only"]), "\(byStatus)")
            #expect((byStatus["response"] ?? 0) > 0)
            #expect(held.count == 100, "the other client was served while 90,000 streams were held")
            #expect(probeFailures.isEmpty, "\(probeFailures.count) failures: \(probeFailures.prefix(3))")
            #expect(peak < Self.memoryBound, "peak resident \(peak >> 20) MiB")
            for channel in channels { channel.close(promise: nil) }
            try await group.shutdownGracefully()
            // And after it, the member still serves.
            _ = try await kv.put(put)
            #expect(member.isRunning)
        }
    }
}
