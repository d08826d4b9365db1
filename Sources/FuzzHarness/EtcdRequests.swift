import EtcdProto
import Foundation
import Node
import Server
import SwiftProtobuf

/// Every request type of etcd's v3 API, by gRPC path and by JSON-gateway method, with the checks the member makes
/// on it before proposing anything: the gRPC and HTTP targets decode whatever a client sent as the type its path
/// names and run those checks, so a request that would crash the member crashes the harness.
enum EtcdRequests {
    struct Method: Sendable {
        /// `/etcdserverpb.KV/Range`.
        var path: String
        /// The JSON gateway's method name (`JSONGateway.Method`), nil for methods the gateway does not serve.
        var gateway: String?
        /// Whether requests come as a stream (Watch, LeaseKeepAlive).
        var streaming: Bool
        /// Decodes one protobuf message.
        var decodeBinary: @Sendable ([UInt8]) throws -> any SwiftProtobuf.Message
        /// Decodes a gateway body (protobuf JSON).
        var decodeJSON: @Sendable ([UInt8]) throws -> any SwiftProtobuf.Message
    }

    /// The longest Txn the checks accept: etcd's default `--max-txn-ops`.
    static let maxTxnOps = 128

    /// The pre-proposal checks of `EtcdHandler` that do not need a member: `TxnRules` for the key-value calls
    /// (nested txns included), the lease TTL bound, member URL parsing, and the watcher a create request asks for.
    static func check(_ message: any SwiftProtobuf.Message) throws {
        switch message {
        case let r as Etcdserverpb_RangeRequest: try TxnRules.validate(r)
        case let r as Etcdserverpb_PutRequest: try TxnRules.validate(r)
        case let r as Etcdserverpb_DeleteRangeRequest: try TxnRules.validate(r)
        case let r as Etcdserverpb_TxnRequest:
            try TxnRules.validate(r, maxOps: maxTxnOps)
            _ = TxnRules.hasPut(r)
        case let r as Etcdserverpb_MemberAddRequest: for url in r.peerUrls { _ = try ListenURL(url) }
        case let r as Etcdserverpb_MemberUpdateRequest: for url in r.peerUrls { _ = try ListenURL(url) }
        case let r as Etcdserverpb_WatchRequest:
            if case .createRequest(let create) = r.requestUnion { _ = RequestParsing.watchSpec(create) }
        default: break
        }
    }

    static func method<Request: SwiftProtobuf.Message>(
        _ path: String, _ type: Request.Type, gateway: String?, streaming: Bool = false
    ) -> Method {
        Method(
            path: path, gateway: gateway, streaming: streaming,
            decodeBinary: { try Request(serializedBytes: $0) },
            decodeJSON: { try RequestParsing.decodeGatewayBody($0, as: Request.self) })
    }

    static let all: [Method] = [
        method("/etcdserverpb.KV/Range", Etcdserverpb_RangeRequest.self, gateway: "range"),
        method("/etcdserverpb.KV/Put", Etcdserverpb_PutRequest.self, gateway: "put"),
        method("/etcdserverpb.KV/DeleteRange", Etcdserverpb_DeleteRangeRequest.self, gateway: "deleteRange"),
        method("/etcdserverpb.KV/Txn", Etcdserverpb_TxnRequest.self, gateway: "txn"),
        method("/etcdserverpb.KV/Compact", Etcdserverpb_CompactionRequest.self, gateway: "compaction"),
        method("/etcdserverpb.Watch/Watch", Etcdserverpb_WatchRequest.self, gateway: "watch", streaming: true),
        method("/etcdserverpb.Lease/LeaseGrant", Etcdserverpb_LeaseGrantRequest.self, gateway: "leaseGrant"),
        method("/etcdserverpb.Lease/LeaseRevoke", Etcdserverpb_LeaseRevokeRequest.self, gateway: "leaseRevoke"),
        method(
            "/etcdserverpb.Lease/LeaseKeepAlive", Etcdserverpb_LeaseKeepAliveRequest.self, gateway: "leaseKeepAlive",
            streaming: true),
        method(
            "/etcdserverpb.Lease/LeaseTimeToLive", Etcdserverpb_LeaseTimeToLiveRequest.self,
            gateway: "leaseTimeToLive"),
        method("/etcdserverpb.Lease/LeaseLeases", Etcdserverpb_LeaseLeasesRequest.self, gateway: "leaseLeases"),
        method("/etcdserverpb.Cluster/MemberAdd", Etcdserverpb_MemberAddRequest.self, gateway: "memberAdd"),
        method("/etcdserverpb.Cluster/MemberRemove", Etcdserverpb_MemberRemoveRequest.self, gateway: "memberRemove"),
        method("/etcdserverpb.Cluster/MemberUpdate", Etcdserverpb_MemberUpdateRequest.self, gateway: "memberUpdate"),
        method("/etcdserverpb.Cluster/MemberList", Etcdserverpb_MemberListRequest.self, gateway: "memberList"),
        method(
            "/etcdserverpb.Cluster/MemberPromote", Etcdserverpb_MemberPromoteRequest.self, gateway: "memberPromote"),
        method("/etcdserverpb.Maintenance/Alarm", Etcdserverpb_AlarmRequest.self, gateway: "alarm"),
        method("/etcdserverpb.Maintenance/Status", Etcdserverpb_StatusRequest.self, gateway: "status"),
        method("/etcdserverpb.Maintenance/Defragment", Etcdserverpb_DefragmentRequest.self, gateway: "defragment"),
        method("/etcdserverpb.Maintenance/Hash", Etcdserverpb_HashRequest.self, gateway: "hash"),
        method("/etcdserverpb.Maintenance/HashKV", Etcdserverpb_HashKVRequest.self, gateway: "hashKV"),
        method(
            "/etcdserverpb.Maintenance/Snapshot", Etcdserverpb_SnapshotRequest.self, gateway: "snapshot",
            streaming: true),
        method("/etcdserverpb.Maintenance/MoveLeader", Etcdserverpb_MoveLeaderRequest.self, gateway: "moveLeader"),
        method("/etcdserverpb.Maintenance/Downgrade", Etcdserverpb_DowngradeRequest.self, gateway: nil),
        method("/etcdserverpb.Auth/AuthEnable", Etcdserverpb_AuthEnableRequest.self, gateway: "authEnable"),
        method("/etcdserverpb.Auth/AuthDisable", Etcdserverpb_AuthDisableRequest.self, gateway: "authDisable"),
        method("/etcdserverpb.Auth/AuthStatus", Etcdserverpb_AuthStatusRequest.self, gateway: "authStatus"),
        method("/etcdserverpb.Auth/Authenticate", Etcdserverpb_AuthenticateRequest.self, gateway: "authenticate"),
        method("/etcdserverpb.Auth/UserAdd", Etcdserverpb_AuthUserAddRequest.self, gateway: "userAdd"),
        method("/etcdserverpb.Auth/UserGet", Etcdserverpb_AuthUserGetRequest.self, gateway: "userGet"),
        method("/etcdserverpb.Auth/UserList", Etcdserverpb_AuthUserListRequest.self, gateway: "userList"),
        method("/etcdserverpb.Auth/UserDelete", Etcdserverpb_AuthUserDeleteRequest.self, gateway: "userDelete"),
        method(
            "/etcdserverpb.Auth/UserChangePassword", Etcdserverpb_AuthUserChangePasswordRequest.self,
            gateway: "userChangePassword"),
        method(
            "/etcdserverpb.Auth/UserGrantRole", Etcdserverpb_AuthUserGrantRoleRequest.self, gateway: "userGrantRole"),
        method(
            "/etcdserverpb.Auth/UserRevokeRole", Etcdserverpb_AuthUserRevokeRoleRequest.self, gateway: "userRevokeRole"),
        method("/etcdserverpb.Auth/RoleAdd", Etcdserverpb_AuthRoleAddRequest.self, gateway: "roleAdd"),
        method("/etcdserverpb.Auth/RoleGet", Etcdserverpb_AuthRoleGetRequest.self, gateway: "roleGet"),
        method("/etcdserverpb.Auth/RoleList", Etcdserverpb_AuthRoleListRequest.self, gateway: "roleList"),
        method("/etcdserverpb.Auth/RoleDelete", Etcdserverpb_AuthRoleDeleteRequest.self, gateway: "roleDelete"),
        method(
            "/etcdserverpb.Auth/RoleGrantPermission", Etcdserverpb_AuthRoleGrantPermissionRequest.self,
            gateway: "roleGrantPermission"),
        method(
            "/etcdserverpb.Auth/RoleRevokePermission", Etcdserverpb_AuthRoleRevokePermissionRequest.self,
            gateway: "roleRevokePermission"),
        method("/v3electionpb.Election/Campaign", V3electionpb_CampaignRequest.self, gateway: "campaign"),
        method("/v3electionpb.Election/Proclaim", V3electionpb_ProclaimRequest.self, gateway: "proclaim"),
        method("/v3electionpb.Election/Leader", V3electionpb_LeaderRequest.self, gateway: "leader"),
        method(
            "/v3electionpb.Election/Observe", V3electionpb_LeaderRequest.self, gateway: "observe", streaming: true),
        method("/v3electionpb.Election/Resign", V3electionpb_ResignRequest.self, gateway: "resign"),
        method("/v3lockpb.Lock/Lock", V3lockpb_LockRequest.self, gateway: "lock"),
        method("/v3lockpb.Lock/Unlock", V3lockpb_UnlockRequest.self, gateway: "unlock"),
    ]

    static let byPath: [String: Method] = Dictionary(uniqueKeysWithValues: all.map { ($0.path, $0) })
    static let byGatewayMethod: [String: Method] = Dictionary(
        uniqueKeysWithValues: all.compactMap { m in m.gateway.map { ($0, m) } })
}
