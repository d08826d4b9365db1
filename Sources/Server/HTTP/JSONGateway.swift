import EtcdProto
import Foundation
import NIOHTTP1
import Node
import SwiftProtobuf

/// etcd's gRPC-gateway: `POST /v3/<service>/<method>` with the request as protobuf JSON.
enum JSONGateway {
    enum Method: String, Sendable {
        case range, put, deleteRange, txn, compaction
        case leaseGrant, leaseRevoke, leaseKeepAlive, leaseTimeToLive, leaseLeases
        case memberList, memberAdd, memberRemove, memberUpdate, memberPromote
        case alarm, status, defragment, hash, hashKV, moveLeader
        case authStatus
    }

    private static let routes: [String: Method] = [
        "kv/range": .range, "kv/put": .put, "kv/deleterange": .deleteRange, "kv/txn": .txn,
        "kv/compaction": .compaction,
        "lease/grant": .leaseGrant, "lease/revoke": .leaseRevoke, "kv/lease/revoke": .leaseRevoke,
        "lease/keepalive": .leaseKeepAlive, "lease/timetolive": .leaseTimeToLive,
        "kv/lease/timetolive": .leaseTimeToLive, "lease/leases": .leaseLeases, "kv/lease/leases": .leaseLeases,
        "cluster/member/list": .memberList, "cluster/member/add": .memberAdd, "cluster/member/remove": .memberRemove,
        "cluster/member/update": .memberUpdate, "cluster/member/promote": .memberPromote,
        "maintenance/alarm": .alarm, "maintenance/status": .status, "maintenance/defragment": .defragment,
        "maintenance/hash": .hash, "maintenance/hashkv": .hashKV, "maintenance/transfer-leadership": .moveLeader,
        "auth/status": .authStatus,
    ]

    /// The method for a path under `/v3/` (also the older `/v3beta/` and `/v3alpha/` prefixes).
    static func method(for path: String) -> Method? {
        for prefix in ["/v3/", "/v3beta/", "/v3alpha/"] where path.hasPrefix(prefix) {
            return routes[String(path.dropFirst(prefix.count))]
        }
        return nil
    }

    static func call(_ method: Method, body: [UInt8], handler: EtcdHandler) async -> HTTPReply {
        switch method {
        case .range: return await run(body) { (r: Etcdserverpb_RangeRequest) async throws(EtcdError) in try await handler.range(r) }
        case .put: return await run(body) { (r: Etcdserverpb_PutRequest) async throws(EtcdError) in try await handler.put(r) }
        case .deleteRange:
            return await run(body) { (r: Etcdserverpb_DeleteRangeRequest) async throws(EtcdError) in try await handler.deleteRange(r) }
        case .txn: return await run(body) { (r: Etcdserverpb_TxnRequest) async throws(EtcdError) in try await handler.txn(r) }
        case .compaction:
            return await run(body) { (r: Etcdserverpb_CompactionRequest) async throws(EtcdError) in try await handler.compact(r) }
        case .leaseGrant:
            return await run(body) { (r: Etcdserverpb_LeaseGrantRequest) async throws(EtcdError) in try await handler.leaseGrant(r) }
        case .leaseRevoke:
            return await run(body) { (r: Etcdserverpb_LeaseRevokeRequest) async throws(EtcdError) in try await handler.leaseRevoke(r) }
        case .leaseKeepAlive:
            // A stream in gRPC; the gateway answers one request with one result, wrapped as grpc-gateway does.
            let reply = await run(body) { (r: Etcdserverpb_LeaseKeepAliveRequest) async throws(EtcdError) in
                try await handler.leaseKeepAlive(r.id)
            }
            guard reply.status == .ok else { return reply }
            return HTTPReply(status: .ok, contentType: reply.contentType, body: Array(#"{"result":"#.utf8) + reply.body + [UInt8(ascii: "}")])
        case .leaseTimeToLive:
            return await run(body) { (r: Etcdserverpb_LeaseTimeToLiveRequest) async throws(EtcdError) in try await handler.leaseTimeToLive(r) }
        case .leaseLeases:
            return await run(body) { (_: Etcdserverpb_LeaseLeasesRequest) async throws(EtcdError) in try await handler.leaseLeases() }
        case .memberList:
            return await run(body) { (r: Etcdserverpb_MemberListRequest) async throws(EtcdError) in
                if r.linearizable { try await handler.node.readBarrier() }
                return handler.memberList()
            }
        case .memberAdd:
            return await run(body) { (r: Etcdserverpb_MemberAddRequest) async throws(EtcdError) in try await handler.memberAdd(r) }
        case .memberRemove:
            return await run(body) { (r: Etcdserverpb_MemberRemoveRequest) async throws(EtcdError) in try await handler.memberRemove(r) }
        case .memberUpdate:
            return await run(body) { (r: Etcdserverpb_MemberUpdateRequest) async throws(EtcdError) in try await handler.memberUpdate(r) }
        case .memberPromote:
            return await run(body) { (r: Etcdserverpb_MemberPromoteRequest) async throws(EtcdError) in try await handler.memberPromote(r) }
        case .alarm:
            return await run(body) { (r: Etcdserverpb_AlarmRequest) async throws(EtcdError) in try await handler.alarm(r) }
        case .status:
            return await run(body) { (_: Etcdserverpb_StatusRequest) async throws(EtcdError) in try handler.status() }
        case .defragment:
            return await run(body) { (_: Etcdserverpb_DefragmentRequest) async throws(EtcdError) in
                try await handler.node.defragment()
                var response = Etcdserverpb_DefragmentResponse()
                response.header = handler.node.header(revision: handler.node.store.revisions.current)
                return response
            }
        case .hash:
            return await run(body) { (_: Etcdserverpb_HashRequest) async throws(EtcdError) in try handler.hash() }
        case .hashKV:
            return await run(body) { (r: Etcdserverpb_HashKVRequest) async throws(EtcdError) in try handler.hashKV(r) }
        case .moveLeader:
            return await run(body) { (r: Etcdserverpb_MoveLeaderRequest) async throws(EtcdError) in
                try await handler.node.moveLeader(to: r.targetID)
                var response = Etcdserverpb_MoveLeaderResponse()
                response.header = handler.node.header(revision: handler.node.store.revisions.current)
                return response
            }
        case .authStatus:
            return await run(body) { (_: Etcdserverpb_AuthStatusRequest) async throws(EtcdError) in
                var response = Etcdserverpb_AuthStatusResponse()
                response.header = handler.node.header(revision: handler.node.store.revisions.current)
                return response
            }
        }
    }

    private static let decoding: JSONDecodingOptions = {
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = true
        return options
    }()

    private static let encoding: JSONEncodingOptions = {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return options
    }()

    private static func run<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ body: [UInt8], _ call: (Request) async throws(EtcdError) -> Response
    ) async -> HTTPReply {
        let request: Request
        do {
            request = body.isEmpty ? Request() : try Request(jsonUTF8Bytes: body, options: decoding)
        } catch {
            return failure(EtcdError(.invalidArgument, "invalid request body: \(error)"))
        }
        do {
            let response = try await call(request)
            let json: [UInt8] = try response.jsonUTF8Bytes(options: encoding)
            return HTTPReply(status: .ok, contentType: "application/json", body: json)
        } catch let error as EtcdError {
            return failure(error)
        } catch {
            return failure(.internal("\(error)"))
        }
    }

    /// grpc-gateway's error body and its mapping from gRPC codes to HTTP statuses.
    static func failure(_ error: EtcdError) -> HTTPReply {
        let status: HTTPResponseStatus
        switch error.code {
        case .invalidArgument, .failedPrecondition, .outOfRange: status = .badRequest
        case .notFound: status = .notFound
        case .alreadyExists, .aborted: status = .conflict
        case .permissionDenied: status = .forbidden
        case .unauthenticated: status = .unauthorized
        case .resourceExhausted: status = .tooManyRequests
        case .unimplemented: status = .notImplemented
        case .unavailable: status = .serviceUnavailable
        case .deadlineExceeded: status = .gatewayTimeout
        case .canceled: status = .requestTimeout
        default: status = .internalServerError
        }
        let message = error.message.replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "\"", with: "\\\"")
        return .json(#"{"error":"\#(message)","code":\#(error.code.rawValue),"message":"\#(message)"}"#, status: status)
    }
}
