/// What the application reloads from disk at restart.
public struct PersistentState: Sendable {
    public var hardState: HardState
    /// Last snapshot persisted (its metadata; `data` opaque). The log continues after it.
    public var snapshot: Snapshot?
    /// Durable entries. Entries at or below the snapshot's index are ignored, so the application may keep a
    /// trailing margin of its log after a compaction.
    public var entries: [Entry]
    /// Configuration at the start of the log when there is no snapshot (empty for clusters created with
    /// `RaftNode.bootstrapState`, whose first entries carry the configuration). Ignored when `snapshot` is set: the
    /// snapshot's own configuration is used. Configuration entries in `entries` are replayed on top.
    public var confState: ConfState
    /// Highest index the application's state machine has applied (durably). Committed entries after it are
    /// handed out again after the restart. Values below the snapshot index are raised to it.
    public var applied: UInt64

    public init(
        hardState: HardState = HardState(), snapshot: Snapshot? = nil, entries: [Entry] = [],
        confState: ConfState = ConfState(), applied: UInt64 = 0
    ) {
        self.hardState = hardState
        self.snapshot = snapshot
        self.entries = entries
        self.confState = confState
        self.applied = applied
    }
}

/// A batch of work for the application. Handle it in this order, then call `advance(_:)`:
///
/// 1. send `messages` (they may leave before anything is durable: the leader's appends travel while it
///    writes its own copy, so one fsync is paid in parallel on leader and followers);
/// 2. persist `snapshot` (replacing the whole stored log), then `entries` (truncating the stored log from
///    `entries.first!.index` first), then `hardState`, with an fsync when `mustSync`;
/// 3. send `messagesAfterPersist` (they vouch for the state just made durable: votes, append acks);
/// 4. restore the state machine from `snapshot` if any, then apply `committedEntries` in order (skipping
///    entries with empty data, which new leaders append), calling `applyConfChange` for `.confChange` ones;
/// 5. serve `readStates` once the applied index reaches their index; fail `droppedReadIndexes`.
public struct Ready: Sendable {
    /// Non-nil when the leader or the role changed.
    public var softState: SoftState?
    /// Non-nil when it changed since the last Ready and must be persisted.
    public var hardState: HardState?
    public var entries: [Entry] = []
    /// Snapshot received from the leader, to persist and restore the state machine from.
    public var snapshot: Snapshot?
    public var committedEntries: [Entry] = []
    public var messages: [Message] = []
    public var messagesAfterPersist: [Message] = []
    public var readStates: [ReadState] = []
    /// Contexts of `readIndex` requests that were dropped (no leader known, leadership lost before the read
    /// was confirmed, ...): the application should fail or retry them. Requests forwarded to a leader that
    /// dies are not reported; the application needs its own timeout for those.
    public var droppedReadIndexes: [[UInt8]] = []
    /// Whether the write needs an fsync: new entries, a snapshot, or a term/vote change. A change of the
    /// commit index alone does not: it can be recomputed from the cluster after a crash.
    public var mustSync: Bool = false

    public init() {}

    /// Whether the Ready carries nothing at all.
    public var isEmpty: Bool {
        softState == nil && hardState == nil && entries.isEmpty && snapshot == nil && committedEntries.isEmpty
            && messages.isEmpty && messagesAfterPersist.isEmpty && readStates.isEmpty
            && droppedReadIndexes.isEmpty
    }
}
