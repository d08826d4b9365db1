import Auth
import EtcdProto
import GRPCCore
import MVCC
import NIOCore
import NIOHPACK
import Node
import Prometheus
import RPCTransport
import SwiftProtobuf

/// The etcd methods the client port serves in place, on the connection's event loop (`RPCConnectionHandler`):
/// the key-value calls, leases and watches that carry nearly all of a cluster's traffic. The other services
/// (Cluster, Maintenance, Auth, Election, Lock) run on grpc-swift through the bridge.
enum EtcdFastRoutes {
    static func make(handler: EtcdHandler, metrics: ServerMetrics) -> [String: FastRoute] {
        var routes: [String: FastRoute] = [:]
        let auth = handler.node.auth
        /// A unary method: `body` gets the request and its caller. While auth is off the caller is `.anyone`
        /// at once (one atomic load); otherwise the credentials are resolved first, and a refusal answers the call.
        func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ service: String, _ method: String, _ request: Request.Type, _ response: Response.Type,
            _ body: @escaping @Sendable (Request, Caller, UnaryResponder) -> Void
        ) {
            let counters = metrics.rpcCounters(service: service, method: method, type: "unary")
            // Made once per method, so that a call allocates nothing more than its `UnaryCall`.
            let serve: @Sendable (Request, Credentials?, UnaryResponder) -> Void = { request, credentials, responder in
                guard let credentials else { return body(request, .anyone, responder) }
                handler.resolve(credentials) { resolved in
                    switch resolved {
                    case .success(let caller): body(request, caller, responder)
                    case .failure(let error): responder.respond(Result<Response, EtcdError>.failure(error))
                    }
                }
            }
            routes["/\(service)/\(method)"] = FastRoute {
                UnaryCall<Request>(counters: counters, auth: auth, requests: metrics.clientRequests, body: serve)
            }
        }
        let kv = "etcdserverpb.KV"
        // The answer is encoded as the key space is read (`rangeFramed`): a large Range holds its encoded bytes only.
        unary(kv, "Range", Etcdserverpb_RangeRequest.self, Etcdserverpb_RangeResponse.self) { r, caller, responder in
            do throws(EtcdError) { try TxnRules.validate(r) } catch {
                return responder.respond(framed: .failure(error))
            }
            guard handler.needsReadBarrier(r) else {
                // On the event loop as always, unless resolving a simple token waited for its index on the apply loop.
                if responder.remote.eventLoop.inEventLoop {
                    return responder.respond(
                        framed: Result { () throws(EtcdError) in try handler.rangeFramed(r, caller) })
                }
                return responder.respond(computingFramed: {
                    Result { () throws(EtcdError) in try handler.rangeFramed(r, caller) }
                })
            }
            handler.node.readBarrier(deadline: handler.nodeDeadline(responder.deadline)) { error in
                if let error { return responder.respond(framed: .failure(error)) }
                // The read itself runs back on the event loop, never on the Raft loop that completed the barrier.
                responder.respond(computingFramed: {
                    Result { () throws(EtcdError) in try handler.rangeFramed(r, caller) }
                })
            }
        }
        let rangeStreams = metrics.rpcCounters(service: kv, method: "RangeStream", type: "server_stream")
        routes["/\(kv)/RangeStream"] = FastRoute {
            RangeStreamCall(handler: handler, counters: rangeStreams, requests: metrics.clientRequests)
        }
        unary(kv, "Put", Etcdserverpb_PutRequest.self, Etcdserverpb_PutResponse.self) { r, caller, responder in
            handler.put(r, caller, deadline: handler.nodeDeadline(responder.deadline), completion: responder.respond)
        }
        unary(kv, "DeleteRange", Etcdserverpb_DeleteRangeRequest.self, Etcdserverpb_DeleteRangeResponse.self) {
            r, caller, responder in
            handler.deleteRange(
                r, caller, deadline: handler.nodeDeadline(responder.deadline), completion: responder.respond)
        }
        unary(kv, "Txn", Etcdserverpb_TxnRequest.self, Etcdserverpb_TxnResponse.self) { r, caller, responder in
            handler.txn(r, caller, deadline: handler.nodeDeadline(responder.deadline), completion: responder.respond)
        }
        unary(kv, "Compact", Etcdserverpb_CompactionRequest.self, Etcdserverpb_CompactionResponse.self) {
            r, caller, responder in
            handler.compact(
                r, caller, deadline: handler.nodeDeadline(responder.deadline), completion: responder.respond)
        }

        let lease = "etcdserverpb.Lease"
        unary(lease, "LeaseGrant", Etcdserverpb_LeaseGrantRequest.self, Etcdserverpb_LeaseGrantResponse.self) {
            r, caller, responder in
            handler.leaseGrant(
                r, caller, deadline: handler.nodeDeadline(responder.deadline), completion: responder.respond)
        }
        unary(lease, "LeaseRevoke", Etcdserverpb_LeaseRevokeRequest.self, Etcdserverpb_LeaseRevokeResponse.self) {
            r, caller, responder in
            handler.leaseRevoke(
                r, caller, deadline: handler.nodeDeadline(responder.deadline), completion: responder.respond)
        }
        unary(
            lease, "LeaseTimeToLive", Etcdserverpb_LeaseTimeToLiveRequest.self,
            Etcdserverpb_LeaseTimeToLiveResponse.self
        ) { r, caller, responder in
            responder.respondAsync { () async throws(EtcdError) in try await handler.leaseTimeToLive(r, caller) }
        }
        unary(lease, "LeaseLeases", Etcdserverpb_LeaseLeasesRequest.self, Etcdserverpb_LeaseLeasesResponse.self) {
            _, caller, responder in
            responder.respondAsync { () async throws(EtcdError) in try await handler.leaseLeases(caller) }
        }
        let keepAlives = metrics.rpcCounters(service: lease, method: "LeaseKeepAlive", type: "bidi_stream")
        let requests = metrics.clientRequests
        routes["/\(lease)/LeaseKeepAlive"] = FastRoute {
            LeaseKeepAliveCall(handler: handler, counters: keepAlives, requests: requests)
        }
        let watches = metrics.rpcCounters(service: "etcdserverpb.Watch", method: "Watch", type: "bidi_stream")
        routes["/etcdserverpb.Watch/Watch"] = FastRoute {
            WatchCall(handler: handler, counters: watches, requests: requests)
        }
        return routes
    }
}

/// A unary call: one request message, one response or status, answered from wherever the result is known.
final class UnaryCall<Request: SwiftProtobuf.Message>: RPCCall {
    private let counters: RPCMethodCounters
    private let auth: AuthState?
    /// A client's call counts in `etcd_server_client_requests_total` (nil: a peer's).
    private let requests: ClientRequestCounters?
    /// The request, and its credentials when auth is on (nil otherwise).
    private let body: @Sendable (Request, Credentials?, UnaryResponder) -> Void
    private var request: ByteBuffer?
    private var extraMessage = false
    private var token: String?
    /// When the call started, for `grpc_server_handling_seconds` (only noted with `--metrics extensive`).
    private var startedAt: NIODeadline?

    init(
        counters: RPCMethodCounters, auth: AuthState, requests: ClientRequestCounters,
        body: @escaping @Sendable (Request, Credentials?, UnaryResponder) -> Void
    ) {
        self.counters = counters
        self.auth = auth
        self.requests = requests
        self.body = body
    }

    /// A call without client identities (the peer port's).
    init(counters: RPCMethodCounters, body: @escaping @Sendable (Request, UnaryResponder) -> Void) {
        self.counters = counters
        self.auth = nil
        self.requests = nil
        self.body = { request, _, responder in body(request, responder) }
    }

    func started(headers: HPACKHeaders, stream: RPCStreamHandle) {
        counters.started()
        requests?.count(stream: false, version: headers.first(name: ClientRequestCounters.versionHeader))
        if counters.timesCalls { startedAt = .now() }
        if auth?.isEnabled == true { token = headers.first(name: "token") }
    }

    func received(_ message: ByteBuffer, stream: RPCStreamHandle) {
        counters.received()
        if request == nil { request = message } else { extraMessage = true }
    }

    func receivedEnd(stream: RPCStreamHandle) {
        let responder = UnaryResponder(
            remote: stream.remote, counters: counters, deadline: stream.deadline, startedAt: startedAt)
        guard let bytes = request, !extraMessage else {
            return responder.fail(
                code: .internalError,
                message: extraMessage
                    ? "grpc: unary call sent more than one message" : "grpc: unary call sent no message")
        }
        request = nil
        let decoded: Request
        do {
            decoded = try Request(serializedBytes: bytes.readableBytesSpan)
        } catch {
            return responder.fail(code: .internalError, message: "grpc: error unmarshalling request: \(error)")
        }
        body(decoded, stream.credentials(token: token), responder)
    }

    func cancelled() {}
}

/// Answers one unary call from any thread: the response is serialized and written on the connection's event
/// loop (at once when already there, otherwise with the loop's next batch of completions).
struct UnaryResponder: Sendable {
    let remote: RemoteRPCStream
    let counters: RPCMethodCounters
    /// The caller's deadline (`grpc-timeout`): the connection answers DEADLINE_EXCEEDED when it passes, and the
    /// member does not propose a write whose deadline passed before it got to it.
    var deadline: NIODeadline? = nil
    /// When the call started, if its handling time is measured (`--metrics extensive`).
    var startedAt: NIODeadline? = nil

    func respond<Response: SwiftProtobuf.Message>(_ result: Result<Response, EtcdError>) {
        answer(result) { handle, response in handle.send(response) }
    }

    /// Answers with an already framed message (`EtcdHandler.rangeFramed`).
    func respond(framed result: Result<ByteBuffer, EtcdError>) {
        answer(result) { handle, framed in handle.sendFramed(framed) }
    }

    /// Sends the answer (`send`) or the error, finishes the call and counts it.
    private func answer<Value: Sendable>(
        _ result: Result<Value, EtcdError>, send: @escaping @Sendable (RPCStreamHandle, Value) -> Void
    ) {
        remote.run { handle in
            // Gone (connection closed), or answered already (reset, deadline passed): nothing to say, nothing to count.
            guard let handle, !handle.isFinished else { return }
            switch result {
            case .success(let value):
                send(handle, value)
                handle.finish()
                counters.sent()
                counters.succeeded(startedAt: startedAt)
            case .failure(let error):
                handle.finish(error)
                counters.failed(code: error.code.rawValue, startedAt: startedAt)
            }
        }
    }

    /// Computes a framed answer on the event loop, then answers.
    func respond(computingFramed result: @escaping @Sendable () -> Result<ByteBuffer, EtcdError>) {
        remote.run { _ in respond(framed: result()) }
    }

    /// Computes the result on the event loop, then answers.
    func respond<Response: SwiftProtobuf.Message>(
        computing result: @escaping @Sendable () -> Result<Response, EtcdError>
    ) {
        remote.run { _ in respond(result()) }
    }

    /// Runs an async handler in a task of its own (the calls that are not on the hot path).
    func respondAsync<Response: SwiftProtobuf.Message>(
        _ body: @escaping @Sendable () async throws(EtcdError) -> Response
    ) {
        Task {
            do throws(EtcdError) {
                respond(Result<Response, EtcdError>.success(try await body()))
            } catch {
                respond(Result<Response, EtcdError>.failure(error))
            }
        }
    }

    func fail(code: RPCError.Code, message: String) {
        let number = code.rawValue
        remote.run { handle in handle?.finish(code: number, message: message) }
        counters.failed(code: number, startedAt: startedAt)
    }
}

/// LeaseKeepAlive: renewals the member can answer (it leads) are answered in place, in order; a follower asks
/// the leader (batched with the other keep-alives it forwards).
///
/// Bounded: at most `maxOutstanding` renewals of one stream may wait for an answer (etcd serves a stream's
/// renewals one at a time); past it, and when the member's own bounds on renewals waiting for a leader are
/// reached, the stream ends with "too many requests".
final class LeaseKeepAliveCall: RPCCall {
    static let maxOutstanding = 128

    private let handler: EtcdHandler
    private let counters: RPCMethodCounters
    private let requests: ClientRequestCounters
    private var token: String?
    /// Renewals received and not answered yet.
    private var outstanding = 0

    init(handler: EtcdHandler, counters: RPCMethodCounters, requests: ClientRequestCounters) {
        self.handler = handler
        self.counters = counters
        self.requests = requests
    }

    func started(headers: HPACKHeaders, stream: RPCStreamHandle) {
        counters.started()
        requests.count(stream: true, version: headers.first(name: ClientRequestCounters.versionHeader))
        token = headers.first(name: "token")
    }

    func received(_ message: ByteBuffer, stream: RPCStreamHandle) {
        counters.received()
        let request: Etcdserverpb_LeaseKeepAliveRequest
        do {
            request = try Etcdserverpb_LeaseKeepAliveRequest(serializedBytes: message.readableBytesSpan)
        } catch {
            stream.finish(
                code: RPCError.Code.internalError.rawValue, message: "grpc: error unmarshalling request: \(error)")
            return
        }
        if outstanding >= Self.maxOutstanding {
            stream.finish(.tooManyRequests)
            return
        }
        let id = request.id
        if let credentials = stream.credentials(token: token) {
            // etcd's `checkLeaseRenew`; a refusal ends the stream with the error, as etcd's keep-alive loop does.
            outstanding += 1
            let remote = stream.remote
            let handler = self.handler
            handler.resolve(credentials) { resolved in
                do throws(EtcdError) {
                    try handler.checkLeaseKeepAlive(id, try resolved.get())
                    remote.post { handle in
                        guard let handle, let call = handle.call as? LeaseKeepAliveCall else { return }
                        call.outstanding -= 1
                        call.renew(id, stream: handle)
                    }
                } catch {
                    remote.post { $0?.finish(error) }
                }
            }
            return
        }
        renew(id, stream: stream)
    }

    /// Renews on the event loop: at once when this member leads, otherwise through the leader.
    private func renew(_ id: Int64, stream: RPCStreamHandle) {
        if let response = handler.leaseKeepAliveNow(id) {
            stream.send(response)
            counters.sent()
            return
        }
        outstanding += 1
        let remote = stream.remote
        let handler = self.handler
        let accepted = handler.forwardKeepAlive(id) { forwarded in
            if let forwarded { return Self.answer(remote, .success(forwarded)) }
            // No leader to ask right now: the slow path waits for one.
            let waiting = handler.awaitingLeader {
                do throws(EtcdError) {
                    Self.answer(remote, .success(try await handler.leaseKeepAlive(id)))
                } catch {
                    Self.answer(remote, .failure(error))
                }
            }
            if !waiting { Self.answer(remote, .failure(.tooManyRequests)) }
        }
        if !accepted {
            outstanding -= 1
            stream.finish(.tooManyRequests)
        }
    }

    /// Answers one outstanding renewal from any thread.
    private static func answer(
        _ remote: RemoteRPCStream, _ result: Result<Etcdserverpb_LeaseKeepAliveResponse, EtcdError>
    ) {
        remote.post { handle in
            guard let handle else { return }
            let call = handle.call as? LeaseKeepAliveCall
            call?.outstanding -= 1
            switch result {
            case .success(let response):
                handle.send(response)
                call?.counters.sent()
            case .failure(let error): handle.finish(error)
            }
        }
    }

    func receivedEnd(stream: RPCStreamHandle) {
        stream.finish()
        counters.succeeded()
    }

    func cancelled() {
        counters.failed(code: RPCError.Code.cancelled.rawValue)
    }
}

/// Watch: one bidirectional stream carrying many watchers. The hub queues responses on the stream's bounded
/// `WatchStream`; this call drains it onto the connection while at most `highWater` bytes are unwritten, so a
/// client that stops reading only fills its own queue (the hub then moves its watchers to catch-up).
final class WatchCall: RPCCall {
    static let highWater = 1 << 20
    static let batchLimit = 64

    private let handler: EtcdHandler
    private let counters: RPCMethodCounters
    private let requests: ClientRequestCounters
    private let watchStream: WatchStream
    private var unwritten = 0
    private var token: String?
    /// A create request is being authorized (auth on: the caller's identity is resolved off the event loop).
    private var authorizing = false
    /// Requests that arrived meanwhile, handled in arrival order once it is decided, as etcd handles a stream's
    /// requests one by one: a RequestProgress sent after a create must count that watcher, and watch ids follow
    /// the order of the creates. At most `maxDeferred`; a client that sends more is refused.
    private var deferred: [Etcdserverpb_WatchRequest] = []
    static let maxDeferred = 1024

    init(handler: EtcdHandler, counters: RPCMethodCounters, requests: ClientRequestCounters) {
        self.handler = handler
        self.counters = counters
        self.requests = requests
        watchStream = WatchStream(counters: handler.node.hub.counters)
    }

    func started(headers: HPACKHeaders, stream: RPCStreamHandle) {
        counters.started()
        requests.count(stream: true, version: headers.first(name: ClientRequestCounters.versionHeader))
        // clientv3's WithRequireLeader: a member without a leader refuses the watch instead of going silent.
        if headers.first(name: "hasleader") == "true" && !handler.node.status.hasLeader {
            stream.finish(.noLeader)
            return
        }
        token = headers.first(name: "token")
        let remote = stream.remote
        watchStream.onReady {
            remote.post { handle in
                guard let handle, let call = handle.call as? WatchCall else { return }
                call.drain(handle)
            }
        }
    }

    func received(_ message: ByteBuffer, stream: RPCStreamHandle) {
        counters.received()
        let request: Etcdserverpb_WatchRequest
        do {
            request = try Etcdserverpb_WatchRequest(serializedBytes: message.readableBytesSpan)
        } catch {
            stream.finish(
                code: RPCError.Code.internalError.rawValue, message: "grpc: error unmarshalling request: \(error)")
            return
        }
        if authorizing {
            guard deferred.count < Self.maxDeferred else {
                stream.finish(.tooManyRequests)
                return
            }
            deferred.append(request)
            return
        }
        handle(request, stream: stream)
    }

    private func handle(_ request: Etcdserverpb_WatchRequest, stream: RPCStreamHandle) {
        let hub = handler.node.hub!
        switch request.requestUnion {
        case .createRequest(let create):
            if let credentials = stream.credentials(token: token) {
                authorizing = true
                // etcd's `isWatchPermitted`, at creation over the watched range.
                let remote = stream.remote
                let handler = self.handler
                handler.resolve(credentials) { resolved in
                    let refusal: AuthError?
                    switch resolved {
                    case .failure(let error):
                        refusal =
                            error.code == .unauthenticated
                            ? AuthError.invalidAuthToken : AuthError(.unknown, error.message)
                    case .success(let caller):
                        do throws(EtcdError) {
                            try handler.check(caller) { (store, info) throws(AuthError) in
                                try store.checkWatch(create, info)
                            }
                            refusal = nil
                        } catch {
                            refusal = AuthError(
                                AuthError.Code(rawValue: error.code.rawValue) ?? .unknown, error.message)
                        }
                    }
                    remote.post { handle in
                        guard let handle, let call = handle.call as? WatchCall else { return }
                        if let refusal {
                            call.refuse(reason: AuthStore.watchCancelReason(for: refusal))
                        } else {
                            call.create(create)
                        }
                        call.authorizing = false
                        call.handleDeferred(stream: handle)
                    }
                }
                return
            }
            self.create(create)
        case .cancelRequest(let cancel):
            handler.cancelWatch(cancel.watchID, on: watchStream)
        case .progressRequest:
            hub.requestProgress(on: watchStream)
        case .none:
            break
        }
    }

    /// Handles the requests that waited for an authorization, until one of them waits again.
    private func handleDeferred(stream: RPCStreamHandle) {
        while !authorizing && !deferred.isEmpty && !stream.isFinished {
            handle(deferred.removeFirst(), stream: stream)
        }
    }

    private func create(_ create: Etcdserverpb_WatchCreateRequest) {
        handler.node.hub.watch(
            WatchRequestSpec(create, maxRequestBytes: handler.node.config.maxRequestBytes), on: watchStream)
    }

    private func refuse(reason: String) {
        handler.refuseWatch(reason: reason, on: watchStream)
    }

    /// A client that half-closes keeps its watchers (as with etcd); only a reset ends the stream.
    func receivedEnd(stream: RPCStreamHandle) {}

    func cancelled() {
        handler.node.hub.closeStream(watchStream)
        counters.succeeded()
    }

    func writable(stream: RPCStreamHandle) {
        drain(stream)
    }

    /// Writes queued responses until the stream has `highWater` bytes on their way; the write that brings it
    /// back under resumes draining.
    private func drain(_ stream: RPCStreamHandle) {
        while !stream.isFinished && unwritten < Self.highWater && stream.isWritable {
            let batch = watchStream.take(limit: Self.batchLimit)
            if batch.isEmpty { return }
            // The batch's messages, each with its prefix, go in one DATA frame (HTTP/2 splits it only where its
            // frame size or window requires): a put fanned out to the stream's watchers costs one frame instead of
            // one per watcher. Events come already encoded (`EncodedWatchResponse`) and are copied once, into the
            // frame; control responses (created, canceled, progress) are serialized here.
            var framed: [ByteBuffer?] = []  // the control responses, in order (nil: could not be encoded)
            var bytes = 0
            for item in batch {
                switch item {
                case .encoded(let encoded):
                    bytes += GRPCWire.prefixLength + encoded.byteCount
                case .message(let response):
                    let message = try? GRPCWire.frame(response)
                    framed.append(message)
                    bytes += message?.readableBytes ?? 0
                }
            }
            var data = stream.allocator.buffer(capacity: bytes)
            var nextMessage = 0
            for item in batch {
                switch item {
                case .encoded(let encoded):
                    GRPCWire.writePrefix(length: encoded.byteCount, to: &data)
                    encoded.forEachPart { data.writeBytes($0) }
                case .message:
                    if var message = framed[nextMessage] { data.writeBuffer(&message) }
                    nextMessage += 1
                }
            }
            if bytes == 0 { continue }
            counters.sent(batch.count)
            unwritten += bytes
            let written = stream.eventLoop.makePromise(of: Void.self)
            stream.sendFramed(data, promise: written)
            written.futureResult.assumeIsolated().whenComplete { [self] _ in
                let wasFull = unwritten >= Self.highWater
                unwritten -= bytes
                if wasFull && unwritten < Self.highWater {
                    drain(stream)
                    stream.flushIfNeeded()
                }
            }
        }
    }
}
