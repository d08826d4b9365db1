import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import TestSupport
import Testing

/// etcd 3.7's RangeStream on a 3-member cluster, through generated grpc-swift stubs: for every kind of Range request
/// the stream's messages merged in order are the unary Range answer byte for byte; a large range arrives in several
/// chunks laid out as etcd lays them out; a compaction past the revision a paused stream pinned ends it with
/// ErrCompacted; sorted requests are refused; auth is checked as for Range; and the gRPC proxy answers it too.
@Suite(.ownThread, .serialized) struct RangeStreamTests {
    typealias KV = Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>

    static let options: CallOptions = {
        var options = CallOptions.timeout(60)
        options.maxResponseMessageBytes = 256 << 20
        // grpc-swift's transport bounds the messages it receives by this one (as of grpc-swift-nio-transport 2.x).
        options.maxRequestMessageBytes = 256 << 20
        return options
    }()

    /// The messages of a RangeStream, in order, or the error that ended it (with the messages before it).
    struct Streamed {
        var messages: [Etcdserverpb_RangeResponse] = []
        var error: RPCError? = nil

        /// protobuf merge, in stream order: what etcd's clients do with the messages.
        var merged: Etcdserverpb_RangeResponse {
            get throws {
                var merged = Etcdserverpb_RangeResponse()
                for m in messages { try merged.merge(serializedBytes: try m.serializedBytes() as [UInt8]) }
                return merged
            }
        }
    }

    static func stream(_ kv: KV, _ r: Etcdserverpb_RangeRequest, metadata: Metadata = [:]) async throws -> Streamed {
        try await kv.rangeStream(r, metadata: metadata, options: options) { response in
            var streamed = Streamed()
            do {
                for try await message in response.messages { streamed.messages.append(message.rangeResponse) }
            } catch let error as RPCError {
                streamed.error = error
            }
            return streamed
        }
    }

    static func request(
        _ key: String, end: String? = nil, prefix: Bool = false,
        _ configure: (inout Etcdserverpb_RangeRequest) -> Void = { _ in }
    ) -> Etcdserverpb_RangeRequest {
        var r = Etcdserverpb_RangeRequest()
        r.key = Data(key.utf8)
        if prefix {
            var bytes = [UInt8](key.utf8)
            bytes[bytes.count - 1] += 1
            r.rangeEnd = Data(bytes)
        } else if let end {
            r.rangeEnd = Data(end.utf8)
        }
        configure(&r)
        return r
    }

    /// Puts `count` keys `prefix%05d` of `size`-byte values, 100 per transaction.
    static func load(_ kv: KV, prefix: String, count: Int, size: Int) async throws {
        for start in stride(from: 0, to: count, by: 100) {
            var txn = Etcdserverpb_TxnRequest()
            for i in start..<min(start + 100, count) {
                var put = Etcdserverpb_PutRequest()
                put.key = Data((prefix + String(format: "%05d", i)).utf8)
                put.value = Data(repeating: UInt8(i % 251), count: size)
                var op = Etcdserverpb_RequestOp()
                op.requestPut = put
                txn.success.append(op)
            }
            _ = try await kv.txn(txn, options: .timeout(60))
        }
    }

    /// The stream merged equals the unary answer, compared as encoded bytes.
    static func expectSameAnswer(
        _ kv: KV, _ r: Etcdserverpb_RangeRequest, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> Streamed {
        let unary = try await kv.range(r, options: options)
        let streamed = try await stream(kv, r)
        #expect(streamed.error == nil, "\(what): \(String(describing: streamed.error))", sourceLocation: sourceLocation)
        let merged = try streamed.merged
        let same = try merged.serializedBytes() as [UInt8] == unary.serializedBytes() as [UInt8]
        let detail =
            "\(what): stream \(merged.kvs.count) kvs count \(merged.count) more \(merged.more) header "
            + "\(merged.header), unary \(unary.kvs.count) kvs count \(unary.count) more \(unary.more) header "
            + "\(unary.header)"
        #expect(same, Comment(rawValue: detail), sourceLocation: sourceLocation)
        return streamed
    }

    @Test func theMergedStreamIsTheUnaryAnswerForEveryKindOfRequest() async throws {
        let cluster = QuorumCluster(size: 3)
        try cluster.start()
        defer { cluster.stopAll() }
        let leader = try cluster.waitForLeader()
        let follower = try #require(cluster.members.first { $0 !== leader })
        try await EtcdClient.with(port: leader.clientPort) { client in
            let kv = client.kv
            // A history: 200 keys of varied sizes, half written again, some deleted; then a large prefix.
            try await Self.load(kv, prefix: "rs/a/", count: 200, size: 37)
            let past = try await kv.range(Self.request("rs/a/00000"), options: Self.options).header.revision
            try await Self.load(kv, prefix: "rs/a/", count: 100, size: 300)
            var delete = Etcdserverpb_DeleteRangeRequest()
            delete.key = Data("rs/a/00150".utf8)
            delete.rangeEnd = Data("rs/a/00160".utf8)
            _ = try await kv.deleteRange(delete, options: .timeout(60))
            try await Self.load(kv, prefix: "rs/big/", count: 3_000, size: 2_048)

            let variants: [(String, Etcdserverpb_RangeRequest)] = [
                ("prefix", Self.request("rs/a/", prefix: true)),
                ("from key", Self.request("rs/a/00120", end: "\0")),
                ("single key", Self.request("rs/a/00042")),
                ("missing single key", Self.request("rs/a/00155")),
                ("limit", Self.request("rs/a/", prefix: true) { $0.limit = 7 }),
                (
                    "limit past the end",
                    Self.request("rs/a/00195", prefix: false) {
                        $0.rangeEnd = Data("rs/b".utf8); $0.limit = 50
                    }
                ),
                ("keys only", Self.request("rs/a/", prefix: true) { $0.keysOnly = true }),
                ("count only", Self.request("rs/", prefix: true) { $0.countOnly = true }),
                ("past revision", Self.request("rs/a/", prefix: true) { $0.revision = past }),
                (
                    "past revision, limit",
                    Self.request("rs/a/", prefix: true) {
                        $0.revision = past; $0.limit = 3
                    }
                ),
                ("min mod revision", Self.request("rs/a/", prefix: true) { $0.minModRevision = past + 1 }),
                (
                    "max mod revision, limit",
                    Self.request("rs/a/", prefix: true) {
                        $0.maxModRevision = past; $0.limit = 20
                    }
                ),
                ("min create revision", Self.request("rs/", prefix: true) { $0.minCreateRevision = past + 1 }),
                ("max create revision", Self.request("rs/a/", prefix: true) { $0.maxCreateRevision = past - 1 }),
                ("ascending by key", Self.request("rs/a/", prefix: true) { $0.sortOrder = .ascend }),
                ("empty", Self.request("rs/none/", prefix: true)),
                ("empty interval", Self.request("rs/b", end: "rs/a")),
            ]
            for (what, r) in variants { _ = try await Self.expectSameAnswer(kv, r, what) }

            // Several chunks, in etcd's layout: the header (no revision, no keys) at once, then the revision with the
            // first keys, then keys, and `count` in the last one.
            let big = try await Self.expectSameAnswer(kv, Self.request("rs/big/", prefix: true), "large prefix")
            #expect(big.messages.count >= 4, "\(big.messages.count) messages")
            let first = try #require(big.messages.first)
            #expect(first.kvs.isEmpty && first.header.revision == 0 && first.header.memberID != 0 && first.count == 0)
            #expect(first.header.clusterID != 0 && first.header.raftTerm != 0)
            #expect(big.messages[1].header.revision > 0 && !big.messages[1].kvs.isEmpty)
            #expect(big.messages.dropFirst(2).allSatisfy { $0.header.revision == 0 && $0.header.memberID == 0 })
            #expect(big.messages.dropLast().allSatisfy { $0.count == 0 } && big.messages.last?.count == 3_000)
            #expect(big.messages.map(\.kvs.count).reduce(0, +) == 3_000)
            #expect(big.messages.allSatisfy { ((try? $0.serializedBytes() as [UInt8])?.count ?? .max) < 3 << 20 })
            let limited = try await Self.expectSameAnswer(
                kv, Self.request("rs/big/", prefix: true) { $0.limit = 2_500 }, "large prefix, limit")
            #expect(limited.messages.last?.more == true && limited.messages.last?.count == 3_000)

            // A sorted request is refused: sorting needs every key first.
            let sorted = try await Self.stream(kv, Self.request("rs/a/", prefix: true) { $0.sortOrder = .descend })
            #expect(sorted.error?.code == .invalidArgument && sorted.messages.isEmpty)
            #expect(sorted.error?.message.contains("RangeStream does not support sort order") == true)
            let byValue = try await Self.stream(kv, Self.request("rs/a/", prefix: true) { $0.sortTarget = .value })
            #expect(byValue.error?.code == .invalidArgument)
            // A compacted or future revision: the same error as Range, before any data chunk.
            let future = try await Self.stream(kv, Self.request("rs/a/", prefix: true) { $0.revision = 1 << 40 })
            #expect(future.error?.code == .outOfRange && future.messages.allSatisfy { $0.kvs.isEmpty })
            #expect(future.error?.message == "etcdserver: mvcc: required revision is a future revision")
        }
        // Serializable against a follower, and linearizable through it.
        try await EtcdClient.with(port: follower.clientPort) { client in
            for serializable in [true, false] {
                let r = Self.request("rs/", prefix: true) { $0.serializable = serializable }
                let answer = try await Self.expectSameAnswer(client.kv, r, "follower, serializable \(serializable)")
                let keys = try answer.merged.kvs.count
                #expect(keys == 3_190)
            }
        }
        // The gRPC proxy answers RangeStream from a unary Range upstream, in the same layout.
        let proxy = try GRPCProxyEndToEndTests.Proxy(endpoints: cluster.endpoints)
        defer { proxy.stop() }
        try await EtcdClient.with(port: proxy.port) { client in
            for (what, r) in [
                ("proxy: prefix", Self.request("rs/a/", prefix: true)),
                // Under 1.5 MiB: the proxy's upstream calls receive no more (grpc-swift's transport bounds received
                // messages by the request bound, --max-send-bytes), for Range as for this fallback.
                ("proxy: limit", Self.request("rs/big/", prefix: true) { $0.limit = 600 }),
                ("proxy: serializable", Self.request("rs/a/", prefix: true) { $0.serializable = true }),
                ("proxy: count only", Self.request("rs/", prefix: true) { $0.countOnly = true }),
            ] {
                let streamed = try await Self.expectSameAnswer(client.kv, r, what)
                #expect(streamed.messages.count >= 2)
            }
            let sorted = try await Self.stream(
                client.kv, Self.request("rs/a/", prefix: true) { $0.sortOrder = .descend })
            #expect(sorted.error?.code == .invalidArgument)
            #expect(sorted.error?.message.contains("RangeStream does not support sort order") == true)
        }
    }

    /// Quorum's guarantee: every chunk is read at the revision the first one pinned, and a compaction past it fails
    /// the next chunk the member reads with ErrCompacted; a stream never mixes revisions. A member reads a chunk only
    /// when less than 4 MiB wait to be written, so a client that stops reading a 16 MiB answer (with a 64 KiB HTTP/2
    /// window) leaves most of it unread, and the compaction ends the stream.
    @Test func aCompactionWhileTheClientPausesEndsTheStreamWithErrCompacted() async throws {
        let cluster = QuorumCluster(size: 3)
        try cluster.start()
        defer { cluster.stopAll() }
        let leader = try cluster.waitForLeader()
        try await EtcdClient.with(port: leader.clientPort) { client in
            try await Self.load(client.kv, prefix: "rc/", count: 4_000, size: 4_096)
        }
        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.http2.targetWindowSize = 65_535
        try await withGRPCClient(
            transport: .http2NIOPosix(
                target: .ipv4(address: "127.0.0.1", port: leader.clientPort), transportSecurity: .plaintext,
                config: config)
        ) { grpc in
            let kv = KV(wrapping: grpc)
            let outcome = try await kv.rangeStream(Self.request("rc/", prefix: true), options: Self.options) {
                response in
                var streamed = Streamed()
                var iterator = response.messages.makeAsyncIterator()
                do {
                    // The header, then the first data chunk: the stream has pinned its revision.
                    for _ in 0..<2 {
                        if let message = try await iterator.next() { streamed.messages.append(message.rangeResponse) }
                    }
                    let pinned = streamed.messages.last?.header.revision ?? 0
                    // While the client reads nothing: a write, then a compaction past the pinned revision.
                    _ = try await EtcdClient.with(port: leader.clientPort) { other in
                        let put = try await other.put("rc-after", "x")
                        var compact = Etcdserverpb_CompactionRequest()
                        compact.revision = put.header.revision
                        #expect(compact.revision > pinned)
                        return try await other.kv.compact(compact, options: .timeout(60))
                    }
                    while let message = try await iterator.next() { streamed.messages.append(message.rangeResponse) }
                } catch let error as RPCError {
                    streamed.error = error
                }
                return streamed
            }
            let received = outcome.messages.map(\.kvs.count).reduce(0, +)
            #expect(
                outcome.error?.code == .outOfRange, "received \(received) keys, \(String(describing: outcome.error))")
            #expect(outcome.error?.message == "etcdserver: mvcc: required revision has been compacted")
            #expect(received < 4_000 && outcome.messages.allSatisfy { $0.count == 0 })
            // What did arrive was read at the pinned revision: the keys as loaded, in order.
            let keys = outcome.messages.flatMap(\.kvs).map { String(decoding: $0.key, as: UTF8.self) }
            #expect(keys == (0..<received).map { "rc/" + String(format: "%05d", $0) })
        }
    }

    /// With auth on, RangeStream needs read permission on the range, as Range does, with the same errors.
    @Test func authIsCheckedAsForRange() async throws {
        let cluster = QuorumCluster(size: 1, extraArguments: ["--bcrypt-cost", "4"])
        try cluster.start()
        defer { cluster.stopAll() }
        let leader = try cluster.waitForLeader()
        try await EtcdClient.with(port: leader.clientPort) { client in
            try await Self.load(client.kv, prefix: "ok/", count: 20, size: 10)
            try await Self.load(client.kv, prefix: "secret/", count: 20, size: 10)
        }
        try AuthEndToEndTests.enableAuth(leader.endpoint)
        for arguments in [
            ["role", "add", "reader"], ["role", "grant-permission", "reader", "read", "ok/", "--prefix"],
            ["user", "add", "rita:pw"], ["user", "grant-role", "rita", "reader"],
        ] {
            let result = try etcdctl(leader.endpoint, arguments + ["--user=root:rootpw"])
            #expect(result.ok, "\(arguments): \(result.stderr)")
        }
        try await EtcdClient.with(port: leader.clientPort) { client in
            let rita = try await AuthRecipeTests.token(client.client, "rita", "pw")
            let allowed = try await Self.stream(client.kv, Self.request("ok/", prefix: true), metadata: rita)
            let allowedKeys = try allowed.merged.kvs.count
            #expect(allowed.error == nil && allowedKeys == 20)
            for (metadata, who) in [(rita, "rita"), ([:] as Metadata, "anonymous")] {
                let refused = try await Self.stream(
                    client.kv, Self.request("secret/", prefix: true), metadata: metadata)
                #expect(refused.messages.isEmpty, "\(who)")
                var unaryError: RPCError?
                do {
                    _ = try await client.kv.range(
                        Self.request("secret/", prefix: true), metadata: metadata, options: Self.options)
                } catch let error as RPCError {
                    unaryError = error
                }
                #expect(refused.error?.code == unaryError?.code && refused.error?.message == unaryError?.message)
                #expect(refused.error != nil, "\(who)")
            }
        }
    }
}
