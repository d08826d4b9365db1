import MVCC

/// gRPC status codes, as numbers on the wire (kept here so the node code needs no gRPC import).
public enum StatusCode: Int, Sendable {
    case ok = 0, canceled = 1, unknown = 2, invalidArgument = 3, deadlineExceeded = 4, notFound = 5
    case alreadyExists = 6, permissionDenied = 7, resourceExhausted = 8, failedPrecondition = 9, aborted = 10
    case outOfRange = 11, unimplemented = 12, `internal` = 13, unavailable = 14, dataLoss = 15, unauthenticated = 16
}

/// An error a client sees, with etcd's gRPC code and exact message: clients (clientv3, etcdctl,
/// kube-apiserver) match on these strings, so they are part of the wire contract.
public struct EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static let emptyKey = EtcdError(.invalidArgument, "etcdserver: key is not provided")
    public static let keyNotFound = EtcdError(.invalidArgument, "etcdserver: key not found")
    public static let valueProvided = EtcdError(.invalidArgument, "etcdserver: value is provided")
    public static let leaseProvided = EtcdError(.invalidArgument, "etcdserver: lease is provided")
    public static let tooManyOps = EtcdError(.invalidArgument, "etcdserver: too many operations in txn request")
    public static let duplicateKey = EtcdError(.invalidArgument, "etcdserver: duplicate key given in txn request")
    public static let compacted = EtcdError(.outOfRange, "etcdserver: mvcc: required revision has been compacted")
    public static let futureRevision = EtcdError(
        .outOfRange, "etcdserver: mvcc: required revision is a future revision")
    public static let noSpace = EtcdError(.resourceExhausted, "etcdserver: mvcc: database space exceeded")
    public static let leaseNotFound = EtcdError(.notFound, "etcdserver: requested lease not found")
    public static let leaseExists = EtcdError(.failedPrecondition, "etcdserver: lease already exists")
    public static let leaseTTLTooLarge = EtcdError(.outOfRange, "etcdserver: too large lease TTL")
    public static let watchCanceled = EtcdError(.canceled, "etcdserver: watch canceled")
    public static let memberExists = EtcdError(.failedPrecondition, "etcdserver: member ID already exist")
    public static let peerURLExists = EtcdError(.failedPrecondition, "etcdserver: Peer URLs already exists")
    public static let memberNotEnoughStarted = EtcdError(
        .failedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
    public static let memberBadURLs = EtcdError(.invalidArgument, "etcdserver: given member URLs are invalid")
    public static let memberNotFound = EtcdError(.notFound, "etcdserver: member not found")
    public static let memberNotLearner = EtcdError(.failedPrecondition, "etcdserver: can only promote a learner member")
    public static let learnerNotReady = EtcdError(
        .failedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
    public static let tooManyLearners = EtcdError(
        .failedPrecondition, "etcdserver: too many learner members in cluster")
    public static let requestTooLarge = EtcdError(.invalidArgument, "etcdserver: request is too large")
    public static let tooManyRequests = EtcdError(.resourceExhausted, "etcdserver: too many requests")
    /// The caller's deadline (`grpc-timeout`) passed: what grpc-go answers for a handler that returns
    /// `context.DeadlineExceeded`, as etcd's handlers do when the client's context expires.
    public static let deadlineExceeded = EtcdError(.deadlineExceeded, "context deadline exceeded")
    public static let permissionDenied = EtcdError(.permissionDenied, "etcdserver: permission denied")
    public static let authNotEnabled = EtcdError(.failedPrecondition, "etcdserver: authentication is not enabled")
    public static let noLeader = EtcdError(.unavailable, "etcdserver: no leader")
    public static let notLeader = EtcdError(.failedPrecondition, "etcdserver: not leader")
    public static let leaderChanged = EtcdError(.unavailable, "etcdserver: leader changed")
    public static let notCapable = EtcdError(.unavailable, "etcdserver: not capable")
    public static let stopped = EtcdError(.unavailable, "etcdserver: server stopped")
    public static let timeout = EtcdError(.unavailable, "etcdserver: request timed out")
    public static let timeoutDueToLeaderFail = EtcdError(
        .unavailable, "etcdserver: request timed out, possibly due to previous leader failure")
    public static let unhealthy = EtcdError(.unavailable, "etcdserver: unhealthy cluster")
    public static let corrupt = EtcdError(.dataLoss, "etcdserver: corrupt cluster")
    public static let notSupportedForLearner = EtcdError(.unavailable, "etcdserver: rpc not supported for learner")
    public static let badLeaderTransferee = EtcdError(.failedPrecondition, "etcdserver: bad leader transferee")
    public static let invalidSortOption = EtcdError(.invalidArgument, "etcdserver: invalid sort option")

    /// Storage failures are internal: the member cannot continue safely and stops serving.
    public static func `internal`(_ message: String) -> EtcdError { EtcdError(.internal, message) }
}

extension EtcdError {
    /// The key space's errors as etcd reports them to clients.
    public init(_ error: MVCCError) {
        switch error {
        case .compacted: self = .compacted
        case .futureRevision: self = .futureRevision
        default: self = .internal(error.description)
        }
    }
}
