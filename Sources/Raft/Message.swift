/// The messages members exchange. Every kind here may cross the network; purely local events (ticks,
/// campaigning, reports about unreachable peers) are methods on `RaftNode` instead, so `step` never has to
/// guess whether a message came from a peer or from its own application.
public enum MessageKind: UInt8, Sendable, CaseIterable {
    /// Proposal forwarded by a follower to its leader. Carries no term: it is valid in any term.
    case propose = 1
    /// Log entries (possibly none) after `index`/`logTerm`, plus the leader's commit index.
    case append = 2
    /// Follower's answer to `append`/`snapshot`: the new last index, or a rejection with a hint.
    case appendResponse = 3
    case requestVote = 4
    case requestVoteResponse = 5
    /// Pre-vote (thesis §9.6): asks whether a vote *would* be granted in `term` without anyone changing term.
    case requestPreVote = 6
    case requestPreVoteResponse = 7
    /// Leader tells a lagging follower to install `snapshot`.
    case snapshot = 8
    /// Leader asserts its leadership and carries a safe commit index and, for ReadIndex, a request id.
    case heartbeat = 9
    case heartbeatResponse = 10
    /// Follower asks the leader to hand leadership to `from` (forwarded `transferLeadership`). Term-less.
    case transferLeader = 11
    /// Leader tells the transferee to campaign immediately, bypassing pre-vote and leases.
    case timeoutNow = 12
    /// Follower forwards a ReadIndex request (`context`) to the leader. Term-less.
    case readIndex = 13
    /// Leader answers a forwarded ReadIndex with the read index in `index`.
    case readIndexResponse = 14
}

/// One Raft message. Fields not used by a kind are zero/empty; the codec omits nothing so that the encoding
/// stays simple and fixed, and relies on varints to keep zero fields at one byte.
public struct Message: Sendable, Equatable {
    public var kind: MessageKind
    public var from: NodeID
    public var to: NodeID
    public var term: UInt64
    /// Term of the entry at `index` (append: the entry preceding `entries`; votes: the candidate's last term;
    /// rejections: the term of the follower's entry at `rejectHint`).
    public var logTerm: UInt64
    public var index: UInt64
    public var entries: [Entry]
    public var commit: UInt64
    public var snapshot: Snapshot?
    public var reject: Bool
    public var rejectHint: UInt64
    /// Vote requests: `Message.transferContext` marks a campaign triggered by leader transfer. Heartbeats:
    /// ReadIndex round identifier. ReadIndex messages: the application's request context.
    public var context: [UInt8]

    public init(
        kind: MessageKind, from: NodeID = 0, to: NodeID = 0, term: UInt64 = 0, logTerm: UInt64 = 0,
        index: UInt64 = 0, entries: [Entry] = [], commit: UInt64 = 0, snapshot: Snapshot? = nil,
        reject: Bool = false, rejectHint: UInt64 = 0, context: [UInt8] = []
    ) {
        self.kind = kind
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.snapshot = snapshot
        self.reject = reject
        self.rejectHint = rejectHint
        self.context = context
    }

    /// Context of vote requests sent because of a leader transfer: receivers must not ignore them on the
    /// grounds that they recently heard from a leader (the leader itself asked for the election).
    public static let transferContext: [UInt8] = Array("transfer".utf8)

    /// Whether the message must wait until the Ready that produced it is durable. Responses that vouch for
    /// persisted state (appended entries, a cast vote) and the candidate's own vote requests (which rely on
    /// its persisted self-vote) fall in that category; everything a leader sends does not.
    var requiresPersistence: Bool {
        switch kind {
        case .appendResponse, .requestVote, .requestVoteResponse, .requestPreVote, .requestPreVoteResponse:
            return true
        default:
            return false
        }
    }
}

extension Message: CustomStringConvertible {
    public var description: String {
        var s = "\(kind) \(from)->\(to) t\(term)"
        switch kind {
        case .append:
            s += " prev=\(index)/t\(logTerm) n=\(entries.count) commit=\(commit)"
        case .appendResponse:
            s += reject ? " REJECT index=\(index) hint=\(rejectHint)/t\(logTerm)" : " index=\(index)"
        case .requestVote, .requestPreVote:
            s += " last=\(index)/t\(logTerm)"
        case .requestVoteResponse, .requestPreVoteResponse:
            s += reject ? " REJECT" : " GRANT"
        case .snapshot:
            if let snap = snapshot { s += " snap=\(snap.metadata.index)/t\(snap.metadata.term)" }
        case .heartbeat:
            s += " commit=\(commit)"
        case .propose:
            s += " n=\(entries.count)"
        case .readIndexResponse:
            s += " index=\(index)"
        default:
            break
        }
        return s
    }
}
