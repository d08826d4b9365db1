/// Errors of the revisioned key space, with etcd's exact messages (clients match on them).
public enum MVCCError: Error, Equatable, Sendable, CustomStringConvertible {
    case compacted
    case futureRevision
    case leaseNotFound
    case keyNotFound
    case storage(String)

    public var description: String {
        switch self {
        case .compacted: return "mvcc: required revision has been compacted"
        case .futureRevision: return "mvcc: required revision is a future revision"
        case .leaseNotFound: return "lease not found"
        case .keyNotFound: return "key not found"
        case .storage(let message): return "mvcc: storage error: \(message)"
        }
    }
}
