import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2

/// A gRPC client on the generated etcd stubs, for tests that need more than etcdctl can do
/// (many concurrent writers, exact error codes, raw bytes).
struct EtcdClient: Sendable {
    let kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>
    let watch: Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix>
    let lease: Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix>
    let client: GRPCClient<HTTP2ClientTransport.Posix>

    /// Runs `body` with a client connected to `port` on loopback.
    static func with<T: Sendable>(port: Int, _ body: @Sendable (EtcdClient) async throws -> T) async throws -> T {
        try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        ) { client in
            try await body(
                EtcdClient(
                    kv: Etcdserverpb_KV.Client(wrapping: client), watch: Etcdserverpb_Watch.Client(wrapping: client),
                    lease: Etcdserverpb_Lease.Client(wrapping: client), client: client))
        }
    }

    func put(_ key: String, _ value: String, lease: Int64 = 0) async throws -> Etcdserverpb_PutResponse {
        var r = Etcdserverpb_PutRequest()
        r.key = Data(key.utf8)
        r.value = Data(value.utf8)
        r.lease = lease
        return try await kv.put(r, options: .timeout(10))
    }

    func range(_ key: String, end: String? = nil, prefix: Bool = false, revision: Int64 = 0) async throws
        -> Etcdserverpb_RangeResponse
    {
        var r = Etcdserverpb_RangeRequest()
        r.key = Data(key.utf8)
        if prefix {
            var bytes = [UInt8](key.utf8)
            bytes[bytes.count - 1] += 1
            r.rangeEnd = Data(bytes)
        } else if let end {
            r.rangeEnd = Data(end.utf8)
        }
        r.revision = revision
        return try await kv.range(r, options: .timeout(10))
    }

    /// Collects every event under `prefix` from `startRevision` until `stop` says enough.
    func events(prefix: String, from startRevision: Int64, until stop: @Sendable @escaping ([Mvccpb_Event]) -> Bool)
        async throws -> [Mvccpb_Event]
    {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(prefix.utf8)
        var end = [UInt8](prefix.utf8)
        end[end.count - 1] += 1
        create.rangeEnd = Data(end)
        create.startRevision = startRevision
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        let first = request
        return try await watch.watch(
            request: StreamingClientRequest { writer in
                try await writer.write(first)
                try await Task.sleep(for: .seconds(60))
            },
            options: .timeout(30)
        ) { response in
            var collected: [Mvccpb_Event] = []
            for try await message in response.messages {
                collected += message.events
                if stop(collected) { break }
            }
            return collected
        }
    }
}

extension CallOptions {
    /// A bound that only stops a hung call: on a 2-core machine running the suite in parallel, a call whose answer
    /// arrived in time may still wait many seconds for a cooperative thread to resume its task, so the bound is
    /// generous (it is not what any test measures).
    static func timeout(_ seconds: Int) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = .seconds(max(seconds, 60))
        return options
    }
}
