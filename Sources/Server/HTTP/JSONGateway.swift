import Auth
import EtcdProto
import Foundation
import GRPCCore
import MVCC
import NIOHTTP1
import Node
import RPCTransport
import SwiftProtobuf

/// etcd's gRPC-gateway: `POST /v3/<service>/<method>` with the request as protobuf JSON.
enum JSONGateway {
    enum Method: String, Sendable {
        case range, put, deleteRange, txn, compaction
        case leaseGrant, leaseRevoke, leaseKeepAlive, leaseTimeToLive, leaseLeases
        case memberList, memberAdd, memberRemove, memberUpdate, memberPromote
        case alarm, status, defragment, hash, hashKV, moveLeader, downgrade
        case authEnable, authDisable, authStatus, authenticate
        case userAdd, userGet, userList, userDelete, userChangePassword, userGrantRole, userRevokeRole
        case roleAdd, roleGet, roleList, roleDelete, roleGrantPermission, roleRevokePermission
        case lock, unlock
        case campaign, proclaim, leader, resign
        /// Streams: a bidirectional one (watch) and server streams (snapshot, observe).
        case watch, snapshot, observe
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
        "maintenance/downgrade": .downgrade,
        "auth/enable": .authEnable, "auth/disable": .authDisable, "auth/status": .authStatus,
        "auth/authenticate": .authenticate,
        "auth/user/add": .userAdd, "auth/user/get": .userGet, "auth/user/list": .userList,
        "auth/user/delete": .userDelete, "auth/user/changepw": .userChangePassword,
        "auth/user/grant": .userGrantRole, "auth/user/revoke": .userRevokeRole,
        "auth/role/add": .roleAdd, "auth/role/get": .roleGet, "auth/role/list": .roleList,
        "auth/role/delete": .roleDelete, "auth/role/grant": .roleGrantPermission,
        "auth/role/revoke": .roleRevokePermission,
        "watch": .watch, "maintenance/snapshot": .snapshot,
        "lock/lock": .lock, "lock/unlock": .unlock,
        "election/campaign": .campaign, "election/proclaim": .proclaim, "election/leader": .leader,
        "election/observe": .observe, "election/resign": .resign,
    ]

    /// Whether `path` is under one of the gateway's prefixes (an unknown method there gets grpc-gateway's 404).
    static func isGatewayPath(_ path: String) -> Bool {
        ["/v3/", "/v3beta/", "/v3alpha/"].contains { path.hasPrefix($0) }
    }

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
    ///
    /// Every call holds one of `streams` while it runs (a streamed one until its response ends): etcd's gateway
    /// reaches its member over one gRPC connection, whose `--max-concurrent-streams` its calls share, so once that
    /// many watches are open through it, further calls wait for one to end.
    static func call(
        _ method: Method, body: [UInt8], handler: EtcdHandler, authorization: String? = nil,
        streams: GatewayStreams? = nil
    ) async -> HTTPReply {
        guard await streams?.acquire() ?? true else { return failure(EtcdError(.canceled, "context canceled")) }
        let credentials = handler.node.auth.isEnabled ? Credentials(token: authorization) : nil
        switch method {
        case .watch:
            return watch(body, handler: handler, credentials: credentials, release: { streams?.release() })
        case .snapshot, .observe:
            return serverStream(
                method, body, handler: handler, credentials: credentials, release: { streams?.release() })
        default:
            defer { streams?.release() }
            let caller: Caller
            do throws(EtcdError) {
                caller = try await handler.resolve(credentials)
            } catch {
                return failure(error)
            }
            return await call(method, body: body, handler: handler, caller: caller)
        }
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
        case .downgrade:
            return await run(body) { (r: Etcdserverpb_DowngradeRequest) async throws(EtcdError) in
                try await handler.downgrade(r, caller)
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
        case .lock:
            return await run(body) { (r: V3lockpb_LockRequest) async throws(EtcdError) in
                try await LockService(handler: handler).lock(r, caller)
            }
        case .unlock:
            return await run(body) { (r: V3lockpb_UnlockRequest) async throws(EtcdError) in
                try await LockService(handler: handler).unlock(r, caller)
            }
        case .campaign:
            return await run(body) { (r: V3electionpb_CampaignRequest) async throws(EtcdError) in
                try await ElectionService(handler: handler).campaign(r, caller)
            }
        case .proclaim:
            return await run(body) { (r: V3electionpb_ProclaimRequest) async throws(EtcdError) in
                try await ElectionService(handler: handler).proclaim(r, caller)
            }
        case .leader:
            return await run(body) { (r: V3electionpb_LeaderRequest) async throws(EtcdError) in
                try await ElectionService(handler: handler).leader(r, caller)
            }
        case .resign:
            return await run(body) { (r: V3electionpb_ResignRequest) async throws(EtcdError) in
                try await ElectionService(handler: handler).resign(r, caller)
            }
        case .watch, .snapshot, .observe:
            return failure(EtcdError(.internal, "\(method) is a stream"))
        }
    }

    // MARK: Streams

    /// `/v3/watch`, as grpc-gateway serves the Watch stream: the body holds one or more `WatchRequest` objects
    /// (sent in order, as if the client had sent them on a stream it then half-closed, which keeps its
    /// watchers); each response goes out as `{"result":{...}}` and a newline, in its own chunk, until the client
    /// disconnects. A body whose first object does not decode is refused (500, code 2, as there); objects after
    /// one that does not decode are ignored.
    private static func watch(
        _ body: [UInt8], handler: EtcdHandler, credentials: Credentials?, release: @escaping @Sendable () -> Void
    ) -> HTTPReply {
        var requests: [Etcdserverpb_WatchRequest] = []
        for (index, value) in jsonValues(body).enumerated() {
            do {
                requests.append(try Etcdserverpb_WatchRequest(jsonUTF8Bytes: Array(value), options: decoding))
            } catch {
                if index == 0 {
                    release()
                    return failure(EtcdError(.unknown, "\(error)"))
                }
                break
            }
        }
        let sent = requests
        return .streaming(
            HTTPBodyStream { write in
                defer { release() }
                let hub = handler.node.hub!
                let stream = WatchStream(wireFormat: false, counters: hub.counters)
                defer { hub.closeStream(stream) }
                var caller: Result<Caller, EtcdError>?
                for request in sent {
                    switch request.requestUnion {
                    case .createRequest(let create):
                        if credentials != nil && caller == nil {
                            do throws(EtcdError) {
                                caller = .success(try await handler.resolve(credentials))
                            } catch {
                                caller = .failure(error)
                            }
                        }
                        if let refusal = watchRefusal(create, caller: caller, handler: handler) {
                            handler.refuseWatch(reason: refusal, on: stream)
                            continue
                        }
                        hub.watch(
                            WatchRequestSpec(create, maxRequestBytes: handler.node.config.maxRequestBytes), on: stream)
                    case .cancelRequest(let cancel):
                        handler.cancelWatch(cancel.watchID, on: stream)
                    case .progressRequest:
                        hub.requestProgress(on: stream)
                    case .none:
                        break
                    }
                }
                while let response = await stream.next() {
                    guard let chunk = try? resultChunk(response) else { continue }
                    do { try await write(chunk, nil) } catch { return }
                }
            })
    }

    /// etcd's refusal of a watch the caller may not create (its `cancel_reason`), or nil.
    private static func watchRefusal(
        _ create: Etcdserverpb_WatchCreateRequest, caller: Result<Caller, EtcdError>?, handler: EtcdHandler
    ) -> String? {
        switch caller {
        case nil:
            return nil
        case .failure(let error):
            return AuthStore.watchCancelReason(
                for: error.code == .unauthenticated ? AuthError.invalidAuthToken : AuthError(.unknown, error.message))
        case .success(let caller):
            do throws(EtcdError) {
                try handler.check(caller) { (store, info) throws(AuthError) in try store.checkWatch(create, info) }
                return nil
            } catch {
                return AuthStore.watchCancelReason(
                    for: AuthError(AuthError.Code(rawValue: error.code.rawValue) ?? .unknown, error.message))
            }
        }
    }

    /// The server streams (`/v3/maintenance/snapshot`, `/v3/election/observe`): one request, then each response
    /// as `{"result":{...}}` and a newline; an error ends the stream as grpc-gateway ends it, with
    /// `{"error":{...}}` (and its HTTP status, if nothing was sent before it).
    private static func serverStream(
        _ method: Method, _ body: [UInt8], handler: EtcdHandler, credentials: Credentials?,
        release: @escaping @Sendable () -> Void
    ) -> HTTPReply {
        let observed: V3electionpb_LeaderRequest
        do {
            observed = try decode(body)
            if method == .snapshot { let _: Etcdserverpb_SnapshotRequest = try decode(body) }
        } catch {
            release()
            return failure(EtcdError(.invalidArgument, "\(error)"))
        }
        return .streaming(
            HTTPBodyStream { write in
                defer { release() }
                do {
                    let caller = try await rpcCaller(handler, credentials)
                    switch method {
                    case .snapshot:
                        try await MaintenanceService(handler: handler).snapshot(caller) {
                            try await write(try resultChunk($0), nil)
                        }
                    default:
                        try await ElectionService(handler: handler).observe(observed, caller) {
                            try await write(try resultChunk($0), nil)
                        }
                    }
                } catch is HTTPClientGone {
                    return
                } catch {
                    let failure = EtcdError(error)
                    try? await write(streamError(failure), status(of: failure))
                }
            })
    }

    private static func rpcCaller(_ handler: EtcdHandler, _ credentials: Credentials?) async throws -> Caller {
        do throws(EtcdError) {
            return try await handler.resolve(credentials)
        } catch {
            throw error
        }
    }

    static func decode<Request: SwiftProtobuf.Message>(_ body: [UInt8]) throws -> Request {
        body.allSatisfy(isJSONSpace) ? Request() : try Request(jsonUTF8Bytes: body, options: decoding)
    }

    /// One streamed response: `{"result":` the message `}` and grpc-gateway's newline delimiter.
    private static func resultChunk(_ message: some SwiftProtobuf.Message) throws -> [UInt8] {
        Array(#"{"result":"#.utf8) + (try message.jsonUTF8Bytes(options: encoding)) + Array("}\n".utf8)
    }

    /// grpc-gateway's error chunk on a stream (its `StreamError` message).
    static func streamError(_ error: EtcdError) -> [UInt8] {
        let status = status(of: error)
        var fields = [#""grpc_code":\#(error.code.rawValue)"#, #""http_code":\#(status.code)"#]
        if !error.message.isEmpty { fields.append(#""message":"# + goJSONQuoted(error.message)) }
        fields.append(#""http_status":"# + goJSONQuoted(status.reasonPhrase))
        return Array(#"{"error":{"#.utf8) + Array(fields.joined(separator: ",").utf8) + Array("}}".utf8)
    }

    private static func isJSONSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    /// The consecutive JSON values of a body (Go's `json.Decoder` reads a stream of them): each object or array
    /// up to its matching bracket, any other value up to the next space. What is left unbalanced at the end is
    /// returned as a last value, which then fails to decode.
    static func jsonValues(_ body: [UInt8]) -> [ArraySlice<UInt8>] {
        var values: [ArraySlice<UInt8>] = []
        var index = 0
        while index < body.count {
            if isJSONSpace(body[index]) {
                index += 1
                continue
            }
            let start = index
            var depth = 0
            var inString = false
            var escaped = false
            scan: while index < body.count {
                let byte = body[index]
                index += 1
                if inString {
                    if escaped {
                        escaped = false
                    } else if byte == UInt8(ascii: "\\") {
                        escaped = true
                    } else if byte == UInt8(ascii: "\"") {
                        inString = false
                        if depth == 0 { break scan }
                    }
                    continue
                }
                switch byte {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth <= 0 { break scan }
                default:
                    if depth == 0 && index < body.count
                        && (isJSONSpace(body[index]) || body[index] == UInt8(ascii: "{"))
                    {
                        break scan
                    }
                }
            }
            values.append(body[start..<index])
        }
        return values
    }

    static let decoding: JSONDecodingOptions = {
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
            request = try decode(body)
        } catch {
            return failure(EtcdError(.invalidArgument, "\(error)"))
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

    /// grpc-gateway's mapping from gRPC codes to HTTP statuses (`runtime.HTTPStatusFromCode`).
    static func status(of error: EtcdError) -> HTTPResponseStatus {
        switch error.code {
        case .canceled: return .requestTimeout
        case .invalidArgument, .outOfRange: return .badRequest
        case .deadlineExceeded: return .gatewayTimeout
        case .notFound: return .notFound
        case .alreadyExists, .aborted: return .conflict
        case .permissionDenied: return .forbidden
        case .unauthenticated: return .unauthorized
        case .resourceExhausted: return .tooManyRequests
        case .failedPrecondition: return .preconditionFailed
        case .unimplemented: return .notImplemented
        case .unavailable: return .serviceUnavailable
        default: return .internalServerError
        }
    }

    /// grpc-gateway v1's error body, as etcd 3.4 and 3.5 write it: `{"error":…,"message":…,"code":…}` (the
    /// message twice, empty strings left out as its JSON marshaler leaves them out).
    static func failure(_ error: EtcdError) -> HTTPReply {
        var fields: [String] = []
        if !error.message.isEmpty {
            fields.append(#""error":"# + goJSONQuoted(error.message))
            fields.append(#""message":"# + goJSONQuoted(error.message))
        }
        if error.code.rawValue != 0 { fields.append(#""code":\#(error.code.rawValue)"#) }
        return .json("{" + fields.joined(separator: ",") + "}", status: status(of: error))
    }
}

extension EtcdError {
    /// An error from a stream's producer: etcd's own, a gRPC status, or anything else as Unknown (grpc-gateway's
    /// treatment of a non-status error).
    init(_ error: any Error) {
        if let error = error as? EtcdError {
            self = error
        } else if let error = error as? RPCError {
            self.init(StatusCode(rawValue: error.code.rawValue) ?? .unknown, error.message)
        } else {
            self.init(.unknown, "\(error)")
        }
    }
}
