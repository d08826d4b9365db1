import Auth
import EtcdProto

/// The result of applying one replicated request, handed back to the member that proposed it.
public enum ApplyResponse: Sendable {
    case put(Etcdserverpb_PutResponse)
    case deleteRange(Etcdserverpb_DeleteRangeResponse)
    case txn(Etcdserverpb_TxnResponse)
    case compaction(Etcdserverpb_CompactionResponse)
    case leaseGrant(Etcdserverpb_LeaseGrantResponse)
    case leaseRevoke(Etcdserverpb_LeaseRevokeResponse)
    case alarm(Etcdserverpb_AlarmResponse)
    case members([MemberInfo])
    /// An auth operation's response and the header revision it was applied at.
    case auth(AuthResponse, Etcdserverpb_ResponseHeader)
    case none
}

public typealias ApplyResult = Result<ApplyResponse, EtcdError>
