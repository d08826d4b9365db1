import Auth
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
        case authEnable, authDisable, authStatus, authenticate
        case userAdd, userGet, userList, userDelete, userChangePassword, userGrantRole, userRevokeRole
        case roleAdd, roleGet, roleList, roleDelete, roleGrantPermission, roleRevokePermission
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
        "auth/enable": .authEnable, "auth/disable": .authDisable, "auth/status": .authStatus,
        "auth/authenticate": .authenticate,
        "auth/user/add": .userAdd, "auth/user/get": .userGet, "auth/user/list": .userList,
        "auth/user/delete": .userDelete, "auth/user/changepw": .userChangePassword,
        "auth/user/grant": .userGrantRole, "auth/user/revoke": .userRevokeRole,
        "auth/role/add": .roleAdd, "auth/role/get": .roleGet, "auth/role/list": .roleList,
        "auth/role/delete": .roleDelete, "auth/role/grant": .roleGrantPermission,
        "auth/role/revoke": .roleRevokePermission,
    ]

    /// The method for a path under `/v3/` (also the older `/v3beta/` and `/v3alpha/` prefixes).
    static func method(for path: String) -> Method? {
        for prefix in ["/v3/", "/v3beta/", "/v3alpha/"] where path.hasPrefix(prefix) {
            return routes[String(path.dropFirst(prefix.count))]
        }
        return nil
    }

    /// Serves one gateway call. The token comes from the `Authorization` header (etcd's gateway forwards it as
    /// the `token` metadata); a client certificate does not identify gateway callers, as in etcd, where the
    /// gateway reaches the server with its own connection.
    static func call(_ method: Method, body: [UInt8], handler: EtcdHandler, authorization: String? = nil) async
        -> HTTPReply
    {
        let caller: Caller
        do throws(EtcdError) {
            caller = try await handler.resolve(handler.node.auth.isEnabled ? Credentials(token: authorization) : nil)
        } catch {
            return failure(error)
        }
        return await call(method, body: body, handler: handler, caller: caller)
    }

    private static func call(_ method: Method, body: [UInt8], handler: EtcdHandler, caller: Caller) async -> HTTPReply {
        switch method {
        case .range:
            return await run(body) { (r: Etcdserverpb_RangeRequest) async throws(EtcdError) in
                try await handler.range(r, caller)
            }
        case .put:
            return await run(body) { (r: Etcdserverpb_PutRequest) async throws(EtcdError) in
                try await handler.put(r, caller)
            }
        case .deleteRange:
            return await run(body) { (r: Etcdserverpb_DeleteRangeRequest) async throws(EtcdError) in
                try await handler.deleteRange(r, caller)
            }
        case .txn:
            return await run(body) { (r: Etcdserverpb_TxnRequest) async throws(EtcdError) in
                try await handler.txn(r, caller)
            }
        case .compaction:
            return await run(body) { (r: Etcdserverpb_CompactionRequest) async throws(EtcdError) in
                try await handler.compact(r, caller)
            }
        case .leaseGrant:
            return await run(body) { (r: Etcdserverpb_LeaseGrantRequest) async throws(EtcdError) in
                try await handler.leaseGrant(r, caller)
            }
        case .leaseRevoke:
            return await run(body) { (r: Etcdserverpb_LeaseRevokeRequest) async throws(EtcdError) in
                try await handler.leaseRevoke(r, caller)
            }
        case .leaseKeepAlive:
            // A stream in gRPC; the gateway answers one request with one result, wrapped as grpc-gateway does.
            let reply = await run(body) { (r: Etcdserverpb_LeaseKeepAliveRequest) async throws(EtcdError) in
                try handler.checkLeaseKeepAlive(r.id, caller)
                return try await handler.leaseKeepAlive(r.id)
            }
            guard reply.status == .ok else { return reply }
            return HTTPReply(
                status: .ok, contentType: reply.contentType,
                body: Array(#"{"result":"#.utf8) + reply.body + [UInt8(ascii: "}")])
        case .leaseTimeToLive:
            return await run(body) { (r: Etcdserverpb_LeaseTimeToLiveRequest) async throws(EtcdError) in
                try await handler.leaseTimeToLive(r, caller)
            }
        case .leaseLeases:
            return await run(body) { (_: Etcdserverpb_LeaseLeasesRequest) async throws(EtcdError) in
                try await handler.leaseLeases(caller)
            }
        case .memberList:
            return await run(body) { (r: Etcdserverpb_MemberListRequest) async throws(EtcdError) in
                try handler.authorize(.memberList, caller)
                if r.linearizable { try await handler.node.readBarrier() }
                return try handler.memberList(caller)
            }
        case .memberAdd:
            return await run(body) { (r: Etcdserverpb_MemberAddRequest) async throws(EtcdError) in
                try await handler.memberAdd(r, caller)
            }
        case .memberRemove:
            return await run(body) { (r: Etcdserverpb_MemberRemoveRequest) async throws(EtcdError) in
                try await handler.memberRemove(r, caller)
            }
        case .memberUpdate:
            return await run(body) { (r: Etcdserverpb_MemberUpdateRequest) async throws(EtcdError) in
                try await handler.memberUpdate(r, caller)
            }
        case .memberPromote:
            return await run(body) { (r: Etcdserverpb_MemberPromoteRequest) async throws(EtcdError) in
                try await handler.memberPromote(r, caller)
            }
        case .alarm:
            return await run(body) { (r: Etcdserverpb_AlarmRequest) async throws(EtcdError) in
                try await handler.alarm(r, caller)
            }
        case .status:
            return await run(body) { (_: Etcdserverpb_StatusRequest) async throws(EtcdError) in
                try handler.status(caller)
            }
        case .defragment:
            return await run(body) { (_: Etcdserverpb_DefragmentRequest) async throws(EtcdError) in
                try await handler.defragment(caller)
            }
        case .hash:
            return await run(body) { (_: Etcdserverpb_HashRequest) async throws(EtcdError) in try handler.hash(caller) }
        case .hashKV:
            return await run(body) { (r: Etcdserverpb_HashKVRequest) async throws(EtcdError) in
                try handler.hashKV(r, caller)
            }
        case .moveLeader:
            return await run(body) { (r: Etcdserverpb_MoveLeaderRequest) async throws(EtcdError) in
                try await handler.moveLeader(r, caller)
            }
        case .authEnable:
            return await run(body) { (_: Etcdserverpb_AuthEnableRequest) async throws(EtcdError) in
                try await handler.authEnable(caller)
            }
        case .authDisable:
            return await run(body) { (_: Etcdserverpb_AuthDisableRequest) async throws(EtcdError) in
                try await handler.authDisable(caller)
            }
        case .authStatus:
            return await run(body) { (_: Etcdserverpb_AuthStatusRequest) async throws(EtcdError) in
                try await handler.authStatus(caller)
            }
        case .authenticate:
            return await run(body) { (r: Etcdserverpb_AuthenticateRequest) async throws(EtcdError) in
                try await handler.authenticate(r)
            }
        case .userAdd:
            return await run(body) { (r: Etcdserverpb_AuthUserAddRequest) async throws(EtcdError) in
                try await handler.userAdd(r, caller)
            }
        case .userGet:
            return await run(body) { (r: Etcdserverpb_AuthUserGetRequest) async throws(EtcdError) in
                try await handler.userGet(r, caller)
            }
        case .userList:
            return await run(body) { (_: Etcdserverpb_AuthUserListRequest) async throws(EtcdError) in
                try await handler.userList(caller)
            }
        case .userDelete:
            return await run(body) { (r: Etcdserverpb_AuthUserDeleteRequest) async throws(EtcdError) in
                try await handler.userDelete(r, caller)
            }
        case .userChangePassword:
            return await run(body) { (r: Etcdserverpb_AuthUserChangePasswordRequest) async throws(EtcdError) in
                try await handler.userChangePassword(r, caller)
            }
        case .userGrantRole:
            return await run(body) { (r: Etcdserverpb_AuthUserGrantRoleRequest) async throws(EtcdError) in
                try await handler.userGrantRole(r, caller)
            }
        case .userRevokeRole:
            return await run(body) { (r: Etcdserverpb_AuthUserRevokeRoleRequest) async throws(EtcdError) in
                try await handler.userRevokeRole(r, caller)
            }
        case .roleAdd:
            return await run(body) { (r: Etcdserverpb_AuthRoleAddRequest) async throws(EtcdError) in
                try await handler.roleAdd(r, caller)
            }
        case .roleGet:
            return await run(body) { (r: Etcdserverpb_AuthRoleGetRequest) async throws(EtcdError) in
                try await handler.roleGet(r, caller)
            }
        case .roleList:
            return await run(body) { (_: Etcdserverpb_AuthRoleListRequest) async throws(EtcdError) in
                try await handler.roleList(caller)
            }
        case .roleDelete:
            return await run(body) { (r: Etcdserverpb_AuthRoleDeleteRequest) async throws(EtcdError) in
                try await handler.roleDelete(r, caller)
            }
        case .roleGrantPermission:
            return await run(body) { (r: Etcdserverpb_AuthRoleGrantPermissionRequest) async throws(EtcdError) in
                try await handler.roleGrantPermission(r, caller)
            }
        case .roleRevokePermission:
            return await run(body) { (r: Etcdserverpb_AuthRoleRevokePermissionRequest) async throws(EtcdError) in
                try await handler.roleRevokePermission(r, caller)
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
