import Foundation
import GRPCCore
import NIOCore
import NIOHPACK

/// Carries calls without a fast route to grpc-swift's `GRPCServer`, which runs the generated service code for
/// them (membership, maintenance, election, lock, auth, the peer service): the same `RPCStream`s grpc-swift's own
/// transports produce, so those services keep grpc-swift's semantics (deadlines, interceptors, status mapping).
final class RPCBridge: Sendable {
    private let methods: [String: MethodDescriptor]
    private let submit: @Sendable (BridgedJob) -> Void

    init(methods: [MethodDescriptor], submit: @escaping @Sendable (BridgedJob) -> Void) {
        var byPath: [String: MethodDescriptor] = [:]
        for method in methods { byPath["/\(method.service.fullyQualifiedService)/\(method.method)"] = method }
        self.methods = byPath
        self.submit = submit
    }

    func descriptor(forPath path: String) -> MethodDescriptor? { methods[path] }

    func start(_ job: BridgedJob) { submit(job) }
}

/// One bridged call, ready for `GRPCServer`'s stream handler.
struct BridgedJob: Sendable {
    typealias Stream = RPCStream<
        RPCAsyncSequence<RPCRequestPart<[UInt8]>, any Error>, RPCWriter<RPCResponsePart<[UInt8]>>.Closable
    >
    let stream: Stream
    let remotePeer: String
    let localPeer: String
    let remote: RemoteRPCStream

    func run(_ handler: @Sendable (Stream, ServerContext) async -> Void) async {
        await withServerContextRPCCancellationHandle { cancellation in
            remote.post { handle in
                guard let handle, let call = handle.stream.call as? BridgedCall else {
                    cancellation.cancel()
                    return
                }
                call.attach(cancellation)
            }
            let context = ServerContext(
                descriptor: stream.descriptor, remotePeer: remotePeer, localPeer: localPeer, cancellation: cancellation)
            await handler(stream, context)
        }
    }
}

/// The event-loop side of a bridged call: request parts into the call's inbound sequence, reset into cancellation.
///
/// Flow control follows the handler: a message's bytes go back to the client as stream window only once the
/// handler has taken it (`CreditingParts`), so a client streaming faster than its handler consumes (a database
/// snapshot to a slow disk) is held back by HTTP/2 instead of filling this member's memory.
final class BridgedCall: RPCCall {
    private let inbound: AsyncThrowingStream<RPCRequestPart<[UInt8]>, any Error>.Continuation
    private var cancellation: ServerContext.RPCCancellationHandle?
    private var isCancelled = false

    init(descriptor: MethodDescriptor, headers: HPACKHeaders, handle: RPCStreamHandle, bridge: RPCBridge) {
        let (parts, inbound) = AsyncThrowingStream.makeStream(of: RPCRequestPart<[UInt8]>.self)
        self.inbound = inbound
        inbound.yield(.metadata(Metadata(requestHeaders: headers)))
        let remote = handle.remote
        let credited = CreditingParts(base: parts) { bytes in
            remote.post { handle in
                if let handle { handle.connection.credit(handle.stream, bytes: bytes) }
            }
        }
        let stream = BridgedJob.Stream(
            descriptor: descriptor, inbound: RPCAsyncSequence(wrapping: credited),
            outbound: RPCWriter.Closable(wrapping: BridgedWriter(remote: remote)))
        bridge.start(
            BridgedJob(
                stream: stream, remotePeer: handle.connection.remotePeer, localPeer: handle.connection.localPeer,
                remote: remote))
    }

    var creditsOnConsumption: Bool { true }

    func received(_ message: ByteBuffer, stream: RPCStreamHandle) {
        inbound.yield(.message(Array(message.readableBytesView)))
    }

    func receivedEnd(stream: RPCStreamHandle) {
        inbound.finish()
    }

    func cancelled() {
        isCancelled = true
        inbound.finish(throwing: RPCError(code: .cancelled, message: "the client reset the stream"))
        cancellation?.cancel()
    }

    /// The connection answers DEADLINE_EXCEEDED; the handler is cancelled as grpc-swift cancels it at a deadline.
    func deadlinePassed() {
        cancelled()
    }

    func attach(_ handle: ServerContext.RPCCancellationHandle) {
        if isCancelled { handle.cancel() } else { cancellation = handle }
    }
}

/// A bridged call's request parts as the handler takes them, reporting each message's bytes (with gRPC's
/// five-byte prefix) as consumed.
struct CreditingParts: AsyncSequence, Sendable {
    typealias Element = RPCRequestPart<[UInt8]>
    let base: AsyncThrowingStream<Element, any Error>
    let consumed: @Sendable (Int) -> Void

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<Element, any Error>.AsyncIterator
        let consumed: @Sendable (Int) -> Void

        mutating func next() async throws -> Element? {
            let part = try await base.next()
            if case .message(let bytes) = part { consumed(bytes.count + GRPCWire.prefixLength) }
            return part
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), consumed: consumed)
    }
}

/// Response parts from grpc-swift onto the stream. A write returns once its message reached the socket, which
/// is the back-pressure a long server stream (a database snapshot) needs.
struct BridgedWriter: ClosableRPCWriterProtocol {
    typealias Element = RPCResponsePart<[UInt8]>
    let remote: RemoteRPCStream

    func write(_ element: Element) async throws {
        try await write(contentsOf: CollectionOfOne(element))
    }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        let parts = Array(elements)
        let done = remote.eventLoop.makePromise(of: Void.self)
        remote.post { handle in
            guard let handle, !handle.isFinished else {
                done.fail(RPCError(code: .cancelled, message: "the stream is closed"))
                return
            }
            var lastWrite: EventLoopPromise<Void>?
            for part in parts {
                switch part {
                case .metadata(let metadata):
                    var headers = GRPCWire.responseHeaders
                    headers.add(metadata: metadata)
                    handle.connection.sendHeadersIfNeeded(handle.stream, headers)
                case .message(let bytes):
                    let written = handle.eventLoop.makePromise(of: Void.self)
                    handle.sendFramed(GRPCWire.frame(bytes: bytes, allocator: handle.allocator), promise: written)
                    lastWrite = written
                case .status(let status, let metadata):
                    var trailers = HPACKHeaders()
                    trailers.add(metadata: metadata)
                    handle.finish(code: status.code.rawValue, message: status.message, trailers: trailers)
                }
            }
            if let lastWrite { lastWrite.futureResult.cascade(to: done) } else { done.succeed() }
        }
        try await done.futureResult.get()
    }

    func finish() async {
        remote.post { handle in
            handle?.finish(code: Status.Code.unknown.rawValue, message: "the handler ended without a status")
        }
    }

    func finish(throwing error: any Error) async {
        remote.post { handle in
            if let error = error as? RPCError {
                handle?.finish(code: error.code.rawValue, message: error.message)
            } else {
                handle?.finish(code: Status.Code.unknown.rawValue, message: "\(error)")
            }
        }
    }
}

extension Metadata {
    /// Request metadata from HTTP/2 headers: everything but pseudo-headers; `-bin` values are base64.
    init(requestHeaders headers: HPACKHeaders) {
        self.init()
        for (name, value, _) in headers where !name.hasPrefix(":") {
            if name.hasSuffix("-bin") {
                if let bytes = Self.decodeBase64(value) { addBinary(bytes, forKey: name) }
            } else {
                addString(value, forKey: name)
            }
        }
    }

    /// gRPC allows unpadded base64 in binary headers.
    static func decodeBase64(_ value: String) -> [UInt8]? {
        var padded = value
        while padded.utf8.count % 4 != 0 { padded += "=" }
        return Data(base64Encoded: padded).map { Array($0) }
    }
}

extension HPACKHeaders {
    /// Adds what a handler gave as metadata, except the names the transport writes itself: pseudo-headers,
    /// `content-type`, `te`, the status and the encodings. An error relayed from another server (the gRPC proxy,
    /// a call forwarded to the leader) carries that server's trailers; written again, a pseudo-header in trailers is
    /// a protocol error and a second `grpc-status` contradicts the first, and the client got no answer at all.
    mutating func add(metadata: Metadata) {
        for (key, value) in metadata where !Self.isWrittenByTransport(key) {
            switch value {
            case .string(let text): add(name: key, value: text)
            case .binary(let bytes): add(name: key, value: Data(bytes).base64EncodedString())
            }
        }
    }
}

extension HPACKHeaders {
    static func isWrittenByTransport(_ name: String) -> Bool {
        if name.hasPrefix(":") { return true }
        switch name.lowercased() {
        case "content-type", "te", "grpc-status", "grpc-message", "grpc-encoding", "grpc-accept-encoding": return true
        default: return false
        }
    }
}
