import Auth
import EtcdProto
import GRPCCore
import NIOCore
import NIOHPACK
import Node
import RPCTransport

/// etcd 3.7's RangeStream: the answer of a Range in chunks, so that neither the member nor the client holds the whole
/// of a large one. Merging the messages in order (protobuf merge) gives exactly the unary Range answer.
///
/// Layout (as etcd's; clients must not rely on it): the first message is the header without a revision, sent as
/// soon as the call is authorized; the first data chunk carries `header.revision` and key-values, later chunks only
/// key-values, and the last one `more` and `count` too. Every chunk is read at the revision the first one pinned
/// (`RangeCursor`), so a compaction past it ends the stream with etcd's ErrCompacted.
///
/// Bounded: a chunk is read only while less than `highWater` bytes of earlier ones wait to be written — a client that
/// stops reading (or keeps its HTTP/2 window shut) holds at most that much here, and the read resumes when the bytes
/// drain. Same checks as Range: read permission on the range, the same read barrier unless serializable, and the
/// stream fails with etcd's ErrAuthOldRevision if the auth store changes while it runs. Sorted requests are refused
/// (`RangeCursor.sortRefused`): sorting needs every key before the first can go out; clients use Range.
final class RangeStreamCall: RPCCall {
    static let highWater = 4 << 20

    private let handler: EtcdHandler
    private let counters: RPCMethodCounters
    private let requests: ClientRequestCounters
    private var message: ByteBuffer?
    private var extraMessage = false
    private var token: String?
    private var caller: Caller = .anyone
    private var cursor: RangeCursor?
    /// The first data chunk (the one carrying `header.revision`) went out.
    private var sentData = false
    /// Bytes handed to the connection and not yet written to the socket.
    private var unwritten = 0
    /// Bytes of keys and values per chunk: about etcd's, which follows --max-request-bytes.
    private let chunkBytes: Int

    init(handler: EtcdHandler, counters: RPCMethodCounters, requests: ClientRequestCounters) {
        self.handler = handler
        self.counters = counters
        self.requests = requests
        chunkBytes = min(max(handler.node.config.maxRequestBytes, 64 << 10), Self.highWater / 2)
    }

    func started(headers: HPACKHeaders, stream: RPCStreamHandle) {
        counters.started()
        requests.count(stream: true, version: headers.first(name: ClientRequestCounters.versionHeader))
        token = headers.first(name: "token")
    }

    func received(_ message: ByteBuffer, stream: RPCStreamHandle) {
        counters.received()
        if self.message == nil { self.message = message } else { extraMessage = true }
    }

    func receivedEnd(stream: RPCStreamHandle) {
        guard let bytes = message, !extraMessage else {
            return fail(
                stream, code: .internalError,
                message: extraMessage
                    ? "grpc: server-streaming call sent more than one message" : "grpc: call sent no message")
        }
        message = nil
        let request: Etcdserverpb_RangeRequest
        do {
            request = try Etcdserverpb_RangeRequest(serializedBytes: bytes.readableBytesSpan)
        } catch {
            return fail(stream, code: .internalError, message: "grpc: error unmarshalling request: \(error)")
        }
        do throws(EtcdError) {
            try TxnRules.validate(request)
            guard RangeCursor.servesInPages(request) else { throw RangeCursor.sortRefused }
        } catch {
            return fail(stream, error)
        }
        guard let credentials = stream.credentials(token: token) else {
            return authorized(request, stream: stream)
        }
        let remote = stream.remote
        handler.resolve(credentials) { resolved in
            remote.post { handle in
                guard let handle, !handle.isFinished, let call = handle.call as? RangeStreamCall else { return }
                switch resolved {
                case .success(let caller):
                    call.caller = caller
                    call.authorized(request, stream: handle)
                case .failure(let error): call.fail(handle, error)
                }
            }
        }
    }

    /// Checks read permission, sends the header, and starts reading (after the read barrier unless serializable).
    private func authorized(_ request: Etcdserverpb_RangeRequest, stream: RPCStreamHandle) {
        do throws(EtcdError) {
            try handler.check(caller) { (store, info) throws(AuthError) in try store.checkRange(request, info) }
        } catch {
            return fail(stream, error)
        }
        send(
            RangeWire.streamMessage(
                header: handler.node.header(revision: 0), kvs: [], more: false, count: 0, allocator: stream.allocator),
            stream: stream)
        guard handler.needsReadBarrier(request) else { return start(request, stream: stream) }
        let remote = stream.remote
        handler.node.readBarrier(deadline: handler.nodeDeadline(stream.deadline)) { error in
            remote.post { handle in
                guard let handle, !handle.isFinished, let call = handle.call as? RangeStreamCall else { return }
                if let error { return call.fail(handle, error) }
                call.start(request, stream: handle)
            }
        }
    }

    private func start(_ request: Etcdserverpb_RangeRequest, stream: RPCStreamHandle) {
        cursor = RangeCursor(request, store: handler.node.store)
        pump(stream)
    }

    /// Reads and sends chunks while the connection takes them and less than `highWater` bytes wait; the write that
    /// brings it back under, or the connection becoming writable again, resumes.
    private func pump(_ stream: RPCStreamHandle) {
        while var reading = cursor, !stream.isFinished, unwritten < Self.highWater, stream.isWritable {
            let kvs: [Mvccpb_KeyValue]
            do throws(EtcdError) {
                kvs = try reading.next(byteBudget: chunkBytes)
                try handler.check(caller) { (store, info) throws(AuthError) in try store.ensureRevisionUnchanged(info) }
            } catch {
                cursor = nil
                return fail(stream, error)
            }
            var header: Etcdserverpb_ResponseHeader? = nil
            if !sentData {
                var h = Etcdserverpb_ResponseHeader()
                h.revision = reading.headerRevision
                header = h
                sentData = true
            }
            let last = reading.finished
            cursor = last ? nil : reading
            send(
                RangeWire.streamMessage(
                    header: header, kvs: kvs, more: last && reading.more, count: last ? reading.count : 0,
                    allocator: stream.allocator),
                stream: stream)
            if last {
                handler.node.observer.rangeServed()
                stream.finish()
                counters.succeeded()
            }
        }
    }

    private func send(_ framed: ByteBuffer, stream: RPCStreamHandle) {
        let bytes = framed.readableBytes
        unwritten += bytes
        counters.sent()
        let written = stream.eventLoop.makePromise(of: Void.self)
        stream.sendFramed(framed, promise: written)
        written.futureResult.assumeIsolated().whenComplete { [self] _ in
            let wasFull = unwritten >= Self.highWater
            unwritten -= bytes
            if wasFull && unwritten < Self.highWater && cursor != nil {
                pump(stream)
                stream.flushIfNeeded()
            }
        }
    }

    private func fail(_ stream: RPCStreamHandle, _ error: EtcdError) {
        stream.finish(error)
        counters.failed(code: error.code.rawValue)
    }

    private func fail(_ stream: RPCStreamHandle, code: RPCError.Code, message: String) {
        stream.finish(code: code.rawValue, message: message)
        counters.failed(code: code.rawValue)
    }

    func writable(stream: RPCStreamHandle) {
        pump(stream)
    }

    func cancelled() {
        cursor = nil
        counters.failed(code: RPCError.Code.cancelled.rawValue)
    }
}
