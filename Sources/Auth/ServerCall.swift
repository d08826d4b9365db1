/// The RPCs whose permission does not depend on keys, and what etcd 3.5 requires of their caller.
///
/// Kept as data so that the gRPC and HTTP layers cannot drift from etcd and a test can walk the whole table.
/// Sources: `v3rpc/key.go` (Compact goes through `AuthAdmin.isPermitted`), `v3rpc/maintenance.go`
/// (`isAuthenticated` is an admin check, `requireAuthInfo` only needs an identity), `etcdserver/server.go`
/// (`checkMembershipOperationPermission`, MemberList's `requireAuthInfo`), and `v3_server.go` (leases).
public enum ServerCall: String, Sendable, CaseIterable {
    case compact
    case defragment, snapshot, hash, hashKV, moveLeader, downgrade
    /// Alarm with action ACTIVATE or DEACTIVATE.
    case alarmChange
    /// Alarm with action GET.
    case alarmGet
    case status
    case memberAdd, memberRemove, memberUpdate, memberPromote
    case memberList
    case leaseGrant, leaseRevoke, leaseTimeToLive
    /// LeaseKeepAlive, LeaseLeases: their key checks are ``AuthStore/checkLeaseRenew(_:leaseKeys:)`` and
    /// ``AuthStore/checkLeaseLeases(_:allLeaseKeys:)``.
    case leaseKeepAlive, leaseLeases
    /// Authenticate: anyone may try; the password is the check.
    case authenticate

    /// What a caller needs.
    public enum Requirement: Sendable, Equatable {
        /// Nothing beyond a valid token if one is sent.
        case none
        /// Some identity while auth is on (`user name is empty` otherwise).
        case identity
        /// Role `root` while auth is on.
        case admin
    }

    public var requirement: Requirement {
        switch self {
        case .compact, .defragment, .snapshot, .hash, .hashKV, .moveLeader, .downgrade, .alarmChange:
            return .admin
        case .memberAdd, .memberRemove, .memberUpdate, .memberPromote:
            return .admin
        case .alarmGet, .status, .memberList, .leaseGrant, .leaseRevoke, .leaseTimeToLive:
            return .identity
        case .leaseKeepAlive, .leaseLeases:
            return .identity
        case .authenticate:
            return .none
        }
    }
}

extension AuthStore {
    /// Checks the key-independent requirement of `call` for `info` (the identity resolved by
    /// ``resolveIdentity(token:clientCertificateCommonName:tokens:)``, which already refused a bad token).
    public func checkCall(_ call: ServerCall, _ info: AuthInfo?) throws(AuthError) {
        switch call.requirement {
        case .none: return
        case .identity: try requireAuthInfo(info)
        case .admin: try isAdminPermitted(info)
        }
    }
}
