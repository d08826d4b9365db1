import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import Logging

/// `--resolver-prefix`/`--resolver-ttl`: the proxy registers its advertised address under the prefix with a lease
/// of that TTL, as etcd's `grpcproxy.Register` does through clientv3's endpoints manager, and keeps the lease alive;
/// when the lease is lost (a partition, a restart of the cluster) it registers again, at most once a second.
/// Proxies sharing a prefix list each other as the cluster's members (`MemberList`).
enum Registration {
    /// clientv3's `endpoints` record (`internal.Update`): `Op` 0 is Add; `Metadata` is etcd's proxy's JSON string.
    struct Update: Codable {
        var Op: Int
        var Addr: String
        var Metadata: String?
    }

    struct Meta: Codable {
        var name: String
    }

    static func prefixEnd(_ key: Data) -> Data {
        var bytes = [UInt8](key)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return Data(bytes)
            }
            bytes.removeLast()
        }
        return Data([0])
    }

    /// `prefix` is the whole key prefix: under `--namespace`, the namespace's and `--resolver-prefix` (etcd's proxy
    /// registers through its namespaced client).
    static func run(upstream: Upstream, prefix: String, address: String, ttl: Int, logger: Logger) async {
        while !Task.isCancelled {
            do {
                try await registerOnce(upstream: upstream, prefix: prefix, address: address, ttl: ttl, logger: logger)
                logger.warning("session expired; possible network partition or server restart")
                logger.warning("creating a new session to rejoin")
            } catch {
                if Task.isCancelled { return }
                logger.warning("failed to create a session", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private static func registerOnce(upstream: Upstream, prefix: String, address: String, ttl: Int, logger: Logger)
        async throws
    {
        let options = upstream.callOptions
        var grant = Etcdserverpb_LeaseGrantRequest()
        grant.ttl = Int64(ttl)
        let lease = try await upstream.call { client in
            try await Etcdserverpb_Lease.Client(wrapping: client).leaseGrant(grant, options: options)
        }.id
        let meta = String(
            decoding: try JSONEncoder().encode(Meta(name: ProcessInfo.processInfo.hostName)), as: UTF8.self)
        var put = Etcdserverpb_PutRequest()
        put.key = Data("\(prefix)/\(address)".utf8)
        put.value = try JSONEncoder().encode(Update(Op: 0, Addr: address, Metadata: meta))
        put.lease = lease
        var txn = Etcdserverpb_TxnRequest()
        var op = Etcdserverpb_RequestOp()
        op.requestPut = put
        txn.success = [op]
        _ = try await upstream.call { client in
            try await Etcdserverpb_KV.Client(wrapping: client).txn(txn, options: options)
        }
        logger.info("registered \"\(address)\" with \(ttl)-second lease")
        // Keep the lease alive (every third of its TTL, as clientv3) until it is gone.
        var keepAlive = Etcdserverpb_LeaseKeepAliveRequest()
        keepAlive.id = lease
        let request = keepAlive
        let interval = Duration.milliseconds(max(500, ttl * 1000 / 3))
        try await upstream.call { client in
            try await Etcdserverpb_Lease.Client(wrapping: client).leaseKeepAlive(
                request: StreamingClientRequest { writer in
                    while true {
                        try await writer.write(request)
                        try await Task.sleep(for: interval)
                    }
                }, options: options
            ) { response in
                for try await answer in response.messages where answer.ttl <= 0 { return }
            }
        }
    }
}
