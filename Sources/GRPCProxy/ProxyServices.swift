import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import Logging
import SwiftProtobuf
import Synchronization

/// Messages passed through as they are: the proxy forwards most methods without decoding them.
struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

/// Runs `body` until it ends or the client's call is cancelled (the client reset the stream or its connection went),
/// whichever comes first: a stream that waits on a member (a watch, an election observer) must not outlive its
/// client, and the transport reports a client gone after a half-close only through the RPC's cancellation.
func untilCancelled(_ context: ServerContext, _ body: @escaping @Sendable () async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await context.cancellation.cancelled
            throw RPCError(code: .cancelled, message: "context canceled")
        }
        defer { group.cancelAll() }
        try await group.next()
    }
}

/// etcd's errors the proxy answers itself, with etcd's codes and messages.
enum ProxyErrors {
    static let compacted = RPCError(
        code: .outOfRange, message: "etcdserver: mvcc: required revision has been compacted")
    static let emptyKey = RPCError(code: .invalidArgument, message: "etcdserver: key is not provided")
}

/// What the proxy shares between its services.
package final class ProxyCore: Sendable {
    let upstream: Upstream
    let namespace: KeyNamespace
    let metrics: ProxyMetrics
    let cache = Mutex(RangeCache())
    let logger: Logger
    let advertiseClientURL: String
    let resolverPrefix: String

    package init(
        upstream: Upstream, namespace: KeyNamespace, metrics: ProxyMetrics, advertiseClientURL: String,
        resolverPrefix: String, logger: Logger
    ) {
        self.upstream = upstream
        self.namespace = namespace
        self.metrics = metrics
        self.advertiseClientURL = advertiseClientURL
        self.resolverPrefix = resolverPrefix
        self.logger = logger
    }

    /// What a client's call carries on to the member: its auth token only, as etcd's proxy passes it
    /// (`AuthUnaryClientInterceptor`, `AuthStreamClientInterceptor`).
    static func forwarded(_ metadata: Metadata) -> Metadata {
        var out = Metadata()
        if let token = metadata[stringValues: "token"].first(where: { _ in true }) {
            out.addString(token, forKey: "token")
        }
        return out
    }

    static func token(_ metadata: Metadata) -> String? {
        metadata[stringValues: "token"].first(where: { _ in true })
    }

    func kv(_ client: Upstream.Client) -> Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix> {
        Etcdserverpb_KV.Client(wrapping: client)
    }

    // MARK: KV (etcd's kvProxy: serializable reads from the cache, writes invalidate it)

    func range(_ request: Etcdserverpb_RangeRequest, _ metadata: Metadata) async throws -> Etcdserverpb_RangeResponse {
        // Answers cached for one user must not reach another: with a token (authentication on), reads bypass the
        // cache (etcd's proxy shares it between users).
        let cacheable = Self.token(metadata) == nil
        if request.serializable && cacheable {
            switch cache.withLock({ $0.get(request) }) {
            case .hit(let response):
                metrics.cacheHits.increment()
                return response
            case .compacted:
                metrics.cacheHits.increment()
                throw ProxyErrors.compacted
            case .miss:
                metrics.cacheMisses.increment()
            }
        }
        if !namespace.isEmpty && request.key.isEmpty { throw ProxyErrors.emptyKey }
        let upstreamRequest = namespace.range(request)
        let options = upstream.callOptions
        let response = try await upstream.call { client in
            try await kv(client).range(upstreamRequest, metadata: Self.forwarded(metadata), options: options)
        }
        let answer = namespace.range(response)
        if cacheable {
            let count = cache.withLock { cache in
                cache.add(request, answer)
                return cache.count
            }
            metrics.cacheKeys.set(Double(count))
        }
        return answer
    }

    private func invalidate(key: Data, end: Data = Data()) {
        let count = cache.withLock { cache in
            cache.invalidate(key: key, end: end)
            return cache.count
        }
        metrics.cacheKeys.set(Double(count))
    }

    func put(_ request: Etcdserverpb_PutRequest, _ metadata: Metadata) async throws -> Etcdserverpb_PutResponse {
        invalidate(key: request.key)
        if !namespace.isEmpty && request.key.isEmpty { throw ProxyErrors.emptyKey }
        let upstreamRequest = namespace.put(request)
        let options = upstream.callOptions
        let response = try await upstream.call { client in
            try await kv(client).put(upstreamRequest, metadata: Self.forwarded(metadata), options: options)
        }
        return namespace.put(response)
    }

    func deleteRange(_ request: Etcdserverpb_DeleteRangeRequest, _ metadata: Metadata) async throws
        -> Etcdserverpb_DeleteRangeResponse
    {
        invalidate(key: request.key, end: request.rangeEnd)
        if !namespace.isEmpty && request.key.isEmpty { throw ProxyErrors.emptyKey }
        let upstreamRequest = namespace.deleteRange(request)
        let options = upstream.callOptions
        let response = try await upstream.call { client in
            try await kv(client).deleteRange(upstreamRequest, metadata: Self.forwarded(metadata), options: options)
        }
        return namespace.deleteRange(response)
    }

    func txn(_ request: Etcdserverpb_TxnRequest, _ metadata: Metadata) async throws -> Etcdserverpb_TxnResponse {
        let upstreamRequest = namespace.txn(request)
        let options = upstream.callOptions
        let response = namespace.txn(
            try await upstream.call { client in
                try await kv(client).txn(upstreamRequest, metadata: Self.forwarded(metadata), options: options)
            })
        // As etcd: compared keys may be stale in the cache, written keys are, and read ranges are fresh answers.
        let cacheable = Self.token(metadata) == nil
        let count = cache.withLock { cache in
            for compare in request.compare { cache.invalidate(key: compare.key, end: compare.rangeEnd) }
            let ops = response.succeeded ? request.success : request.failure
            for (op, result) in zip(ops, response.responses) {
                switch (op.request, result.response) {
                case (.requestPut(let put), .responsePut): cache.invalidate(key: put.key)
                case (.requestDeleteRange(let delete), .responseDeleteRange):
                    cache.invalidate(key: delete.key, end: delete.rangeEnd)
                case (.requestRange(let range), .responseRange(let answer)) where cacheable:
                    var asSerializable = range
                    asSerializable.serializable = true
                    cache.add(asSerializable, answer)
                case (.requestTxn, _):
                    // A nested transaction's writes: forget everything it may have touched.
                    cache.invalidate(key: Data([0]), end: Data([0]))
                default: break
                }
            }
            return cache.count
        }
        metrics.cacheKeys.set(Double(count))
        return response
    }

    func compact(_ request: Etcdserverpb_CompactionRequest, _ metadata: Metadata) async throws
        -> Etcdserverpb_CompactionResponse
    {
        let options = upstream.callOptions
        let response = try await upstream.call { client in
            try await kv(client).compact(request, metadata: Self.forwarded(metadata), options: options)
        }
        cache.withLock { $0.compact(request.revision) }
        return response
    }

    // MARK: Lease, Cluster

    func timeToLive(_ request: Etcdserverpb_LeaseTimeToLiveRequest, _ metadata: Metadata) async throws
        -> Etcdserverpb_LeaseTimeToLiveResponse
    {
        let options = upstream.callOptions
        let response = try await upstream.call { client in
            try await Etcdserverpb_Lease.Client(wrapping: client).leaseTimeToLive(
                request, metadata: Self.forwarded(metadata), options: options)
        }
        return namespace.isEmpty ? response : namespace.timeToLive(response)
    }

    /// etcd's `clusterProxy.MemberList`: with an advertised address (by default 127.0.0.1:23790) the members are
    /// the proxies registered under `--resolver-prefix`, or this proxy alone; with `--advertise-client-url=""`
    /// the cluster's members.
    func memberList(_ request: Etcdserverpb_MemberListRequest, _ metadata: Metadata) async throws
        -> Etcdserverpb_MemberListResponse
    {
        if !advertiseClientURL.isEmpty {
            if !resolverPrefix.isEmpty {
                let members = try await registeredProxies(metadata)
                if !members.isEmpty {
                    var response = Etcdserverpb_MemberListResponse()
                    response.members = members
                    return response
                }
            }
            var me = Etcdserverpb_Member()
            me.name = ProcessInfo.processInfo.hostName
            me.clientUrls = [advertiseClientURL]
            var response = Etcdserverpb_MemberListResponse()
            response.members = [me]
            return response
        }
        let options = upstream.callOptions
        return try await upstream.call { client in
            try await Etcdserverpb_Cluster.Client(wrapping: client).memberList(
                request, metadata: Self.forwarded(metadata), options: options)
        }
    }

    /// The proxies registered under `--resolver-prefix` (clientv3's endpoints manager: each key under the prefix
    /// holds `{"Op":0,"Addr":...,"Metadata":"{\"name\":...}"}`).
    private func registeredProxies(_ metadata: Metadata) async throws -> [Etcdserverpb_Member] {
        var request = Etcdserverpb_RangeRequest()
        // Under `--namespace`, inside it (etcd's proxy watches the registrations through its namespaced client).
        request.key = namespace.prefix + Data(resolverPrefix.utf8)
        request.rangeEnd = Registration.prefixEnd(request.key)
        request.serializable = true
        let options = upstream.callOptions
        let response = try await upstream.call { client in
            try await kv(client).range(request, metadata: Self.forwarded(metadata), options: options)
        }
        return response.kvs.compactMap { kv in
            guard let update = try? JSONDecoder().decode(Registration.Update.self, from: kv.value) else { return nil }
            var member = Etcdserverpb_Member()
            if let meta = update.Metadata?.data(using: .utf8),
                let decoded = try? JSONDecoder().decode(Registration.Meta.self, from: meta)
            {
                member.name = decoded.name
            }
            member.clientUrls = [update.Addr]
            return member
        }
    }
}

/// Every etcd v3 service, served by forwarding to the members: KV through the cache and namespace, Watch through
/// the coalescing watch proxy, MemberList and TimeToLive answered as etcd's proxy answers them, and every other
/// method passed through byte for byte (with the caller's token).
package struct ProxyService: RegistrableRPCService {
    let core: ProxyCore
    let watch: WatchProxy

    package init(core: ProxyCore, watch: WatchProxy) {
        self.core = core
        self.watch = watch
    }

    /// Methods whose requests or answers are streams; everything else is unary and may be retried on another
    /// member when the first cannot be reached.
    static let streaming: Set<String> = [
        Etcdserverpb_Watch.Method.Watch.descriptor.fullyQualifiedMethod,
        Etcdserverpb_Lease.Method.LeaseKeepAlive.descriptor.fullyQualifiedMethod,
        Etcdserverpb_Maintenance.Method.Snapshot.descriptor.fullyQualifiedMethod,
        V3electionpb_Election.Method.Observe.descriptor.fullyQualifiedMethod,
    ]

    package func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let all =
            Etcdserverpb_KV.Method.descriptors + Etcdserverpb_Lease.Method.descriptors
            + Etcdserverpb_Cluster.Method.descriptors + Etcdserverpb_Maintenance.Method.descriptors
            + Etcdserverpb_Auth.Method.descriptors + V3electionpb_Election.Method.descriptors
            + V3lockpb_Lock.Method.descriptors
        for descriptor in all {
            forward(descriptor, with: &router)
        }
        let core = self.core
        unary(Etcdserverpb_KV.Method.Range.descriptor, with: &router) { try await core.range($0, $1) }
        unary(Etcdserverpb_KV.Method.Put.descriptor, with: &router) { try await core.put($0, $1) }
        unary(Etcdserverpb_KV.Method.DeleteRange.descriptor, with: &router) { try await core.deleteRange($0, $1) }
        unary(Etcdserverpb_KV.Method.Txn.descriptor, with: &router) { try await core.txn($0, $1) }
        unary(Etcdserverpb_KV.Method.Compact.descriptor, with: &router) { try await core.compact($0, $1) }
        unary(Etcdserverpb_Lease.Method.LeaseTimeToLive.descriptor, with: &router) { try await core.timeToLive($0, $1) }
        unary(Etcdserverpb_Cluster.Method.MemberList.descriptor, with: &router) { try await core.memberList($0, $1) }
        // RangeStream falls back to unary Range upstream (as etcd's proxy does): the members' answer, with the proxy's
        // namespace and cache applied, goes out in chunks. Merged, the chunks are the Range answer.
        router.registerHandler(
            forMethod: Etcdserverpb_KV.Method.RangeStream.descriptor,
            deserializer: ProtobufDeserializer<Etcdserverpb_RangeRequest>(),
            serializer: ProtobufSerializer<Etcdserverpb_RangeStreamResponse>()
        ) { request, _ in
            let single = try await ServerRequest(stream: request)
            let message = single.message
            guard RangeStreamChunks.sortsByKey(message) else {
                throw RPCError(code: .invalidArgument, message: RangeStreamChunks.sortRefused)
            }
            let response = try await core.range(message, single.metadata)
            return StreamingServerResponse { writer in
                try await writer.write(contentsOf: RangeStreamChunks.split(response))
                return [:]
            }
        }
        let watch = self.watch
        router.registerHandler(
            forMethod: Etcdserverpb_Watch.Method.Watch.descriptor,
            deserializer: ProtobufDeserializer<Etcdserverpb_WatchRequest>(),
            serializer: ProtobufSerializer<Etcdserverpb_WatchResponse>()
        ) { request, context in
            watch.serve(request, context: context)
        }
    }

    private func unary<Input: SwiftProtobuf.Message & Sendable, Output: SwiftProtobuf.Message & Sendable, Transport>(
        _ descriptor: MethodDescriptor, with router: inout RPCRouter<Transport>,
        _ body: @escaping @Sendable (Input, Metadata) async throws -> Output
    ) {
        router.registerHandler(
            forMethod: descriptor, deserializer: ProtobufDeserializer<Input>(),
            serializer: ProtobufSerializer<Output>()
        ) { request, _ in
            let single = try await ServerRequest(stream: request)
            return StreamingServerResponse(
                single: ServerResponse(message: try await body(single.message, single.metadata)))
        }
    }

    /// Passes a method through to the members as bytes.
    private func forward<Transport>(_ descriptor: MethodDescriptor, with router: inout RPCRouter<Transport>) {
        let upstream = core.upstream
        let isStreaming = Self.streaming.contains(descriptor.fullyQualifiedMethod)
        router.registerHandler(forMethod: descriptor, deserializer: RawBytes(), serializer: RawBytes()) {
            request, context in
            let metadata = ProxyCore.forwarded(request.metadata)
            let options = upstream.callOptions
            if !isStreaming {
                let single = try await ServerRequest(stream: request)
                let message = single.message
                let answer = try await upstream.call { client in
                    try await client.unary(
                        request: ClientRequest(message: message, metadata: metadata), descriptor: descriptor,
                        serializer: RawBytes(), deserializer: RawBytes(), options: options
                    ) { try $0.message }
                }
                return StreamingServerResponse(single: ServerResponse(message: answer))
            }
            return StreamingServerResponse(metadata: [:]) { writer in
                let member = upstream.current
                do {
                    try await untilCancelled(context) {
                        try await member.client.bidirectionalStreaming(
                            request: StreamingClientRequest(metadata: metadata) { out in
                                for try await message in request.messages { try await out.write(message) }
                            },
                            descriptor: descriptor, serializer: RawBytes(), deserializer: RawBytes(),
                            options: options
                        ) { response in
                            for try await message in response.messages { try await writer.write(message) }
                        }
                    }
                } catch {
                    // The client retries; its next call goes to another member.
                    if Upstream.isUnreachable(error) { upstream.failed(member) }
                    throw Upstream.answer(error)
                }
                return [:]
            }
        }
    }
}
