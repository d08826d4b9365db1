/// The in-memory log of one member: every entry after the last compaction point, plus the bookkeeping of what
/// the application has been handed (to persist, to apply) and what it has confirmed.
///
/// Raft does no I/O, so there is no separate "storage" and "unstable" log as in etcd: the durable copy lives
/// in the application, and this type only tracks which prefix of it is known durable (`persisted`) and which
/// suffix still has to be handed out (`unstableFrom`). Everything is one contiguous array mutated in place.
struct RaftLog: Sendable {
    /// Index and term of the entry just before `entries[0]` (the compaction point; 0/0 for a fresh log).
    private(set) var baseIndex: UInt64
    private(set) var baseTerm: UInt64
    private(set) var entries: [Entry] = []

    /// Highest index known committed. Never decreases.
    private(set) var committed: UInt64
    /// Highest index handed out in `Ready.committedEntries` (or covered by a handed-out snapshot).
    var applying: UInt64
    /// Highest index the application reported applied.
    var applied: UInt64
    /// First index that has not yet been handed out for persistence.
    private(set) var unstableFrom: UInt64
    /// Highest index such that the application's durable log equals this log up to it. Only ever
    /// underestimates: truncations lower it at once, confirmations raise it in `advance`.
    var persisted: UInt64
    /// A snapshot received from the leader that still has to be handed to the application.
    var pendingSnapshot: Snapshot?

    init(baseIndex: UInt64, baseTerm: UInt64, entries: [Entry], committed: UInt64, applied: UInt64) {
        self.baseIndex = baseIndex
        self.baseTerm = baseTerm
        self.entries = entries
        for (offset, e) in entries.enumerated() {
            precondition(e.index == baseIndex + 1 + UInt64(offset), "log entries must be contiguous")
            precondition(e.term >= (offset == 0 ? baseTerm : entries[offset - 1].term), "terms must not decrease")
        }
        let last = baseIndex + UInt64(entries.count)
        precondition(committed <= last, "commit index \(committed) beyond the last index \(last): log lost?")
        precondition(applied <= committed, "applied index beyond commit index")
        self.committed = committed
        self.applying = applied
        self.applied = applied
        self.unstableFrom = last + 1
        self.persisted = last
    }

    @inline(__always) var firstIndex: UInt64 { baseIndex + 1 }
    @inline(__always) var lastIndex: UInt64 { baseIndex + UInt64(entries.count) }
    var lastTerm: UInt64 { entries.last?.term ?? baseTerm }

    /// The term of the entry at `index`, or nil when it was compacted or does not exist yet.
    @inline(__always) func term(at index: UInt64) -> UInt64? {
        if index == baseIndex { return baseTerm }
        if index < baseIndex || index > lastIndex { return nil }
        return entries[Int(index - baseIndex - 1)].term
    }

    func matchTerm(_ index: UInt64, _ term: UInt64) -> Bool { self.term(at: index) == term }

    /// Election restriction (Raft §5.4.1): a log is at least as up to date as ours if its last term is
    /// greater, or equal with an index at least as large.
    func isUpToDate(lastIndex index: UInt64, lastTerm term: UInt64) -> Bool {
        term > lastTerm || (term == lastTerm && index >= lastIndex)
    }

    func entry(at index: UInt64) -> Entry {
        precondition(index > baseIndex && index <= lastIndex, "entry \(index) not in the log")
        return entries[Int(index - baseIndex - 1)]
    }

    /// Entries from `index` through the end, at most `maxBytes` of them (but at least one); nil if `index`
    /// was compacted away.
    func entries(from index: UInt64, maxBytes: Int) -> [Entry]? {
        guard index > baseIndex else { return nil }
        guard index <= lastIndex else { return [] }
        let lo = Int(index - baseIndex - 1)
        var hi = lo
        var bytes = 0
        while hi < entries.count {
            bytes += entries[hi].byteSize
            if hi > lo && bytes > maxBytes { break }
            hi += 1
        }
        return Array(entries[lo..<hi])
    }

    /// Appends entries at the end (leader path and bootstrap).
    mutating func append(_ new: Entry) {
        precondition(new.index == lastIndex + 1, "append must extend the log")
        precondition(new.term >= lastTerm, "appended term must not go back")
        entries.append(new)
    }

    /// Index of the first entry of `new` that conflicts with the log (same index, different term) or that
    /// the log does not have yet; 0 if the log already contains all of them.
    func findConflict(_ new: [Entry]) -> UInt64 {
        for e in new where !matchTerm(e.index, e.term) {
            return e.index
        }
        return 0
    }

    /// Fast backtracking: the largest index `<= index` whose term is `<= term`, with that term. A follower
    /// uses it to hint where its log may match the leader's, and the leader to skip a whole term of entries
    /// the follower cannot have, so a divergent follower costs one round trip per term instead of per entry.
    func findConflictByTerm(index: UInt64, term: UInt64) -> (index: UInt64, term: UInt64) {
        if index < baseIndex { return (index, 0) }
        var i = min(index, lastIndex)
        while i > baseIndex {
            let t = entries[Int(i - baseIndex - 1)].term
            if t <= term { return (i, t) }
            i -= 1
        }
        return (baseIndex, baseTerm <= term ? baseTerm : 0)
    }

    /// Follower side of AppendEntries. Returns the index of the last new entry when the previous entry
    /// matches (the log now matches the leader's up to there), nil when the consistency check fails.
    /// `truncatedFrom` reports where the log was cut, so the caller can roll back configurations.
    mutating func maybeAppend(
        prevIndex: UInt64, prevTerm: UInt64, leaderCommit: UInt64, entries new: [Entry], skipCheck: Bool = false
    ) -> (lastNew: UInt64, truncatedFrom: UInt64?, appendedFrom: Int)? {
        guard skipCheck ? prevIndex <= lastIndex && prevIndex >= baseIndex : matchTerm(prevIndex, prevTerm) else {
            return nil
        }
        let lastNew = prevIndex + UInt64(new.count)
        let conflict = findConflict(new)
        var truncatedFrom: UInt64?
        var appendedFrom = new.count
        if conflict != 0 {
            precondition(conflict > committed, "entry \(conflict) conflicts with a committed entry")
            appendedFrom = Int(conflict - prevIndex - 1)
            if conflict <= lastIndex {
                truncate(from: conflict)
                truncatedFrom = conflict
            }
            entries.append(contentsOf: new[appendedFrom...])
        }
        commit(to: min(leaderCommit, lastNew))
        return (lastNew, truncatedFrom, appendedFrom)
    }

    /// Drops entries from `index` on. Only uncommitted entries may go.
    private mutating func truncate(from index: UInt64) {
        precondition(index > committed && index > baseIndex, "cannot truncate committed entries")
        entries.removeSubrange(Int(index - baseIndex - 1)...)
        unstableFrom = min(unstableFrom, index)
        persisted = min(persisted, index - 1)
    }

    mutating func commit(to index: UInt64) {
        guard index > committed else { return }
        precondition(index <= lastIndex, "commit index \(index) beyond last index \(lastIndex): log lost?")
        committed = index
    }

    /// Replaces the whole log with a snapshot's position (the entries it covers are in the snapshot).
    mutating func restore(_ snapshot: Snapshot) {
        let meta = snapshot.metadata
        precondition(meta.index > committed, "restoring a snapshot that does not advance the commit index")
        entries.removeAll(keepingCapacity: true)
        baseIndex = meta.index
        baseTerm = meta.term
        committed = meta.index
        applying = meta.index
        unstableFrom = meta.index + 1
        // Entries up to our old commit index are the same in the snapshot; anything above may have differed.
        persisted = min(persisted, applied)
        pendingSnapshot = snapshot
    }

    /// Forgets entries through `index` (already applied and folded into a snapshot). Returns the bytes of entry
    /// data it dropped, so that the application can tell when a large amount of memory was freed at once.
    @discardableResult
    mutating func compact(through index: UInt64) -> Int {
        guard index > baseIndex else { return 0 }
        precondition(index <= applied && index <= persisted, "only applied, durable entries may be compacted")
        let newBaseTerm = term(at: index)!
        let dropped = ..<Int(index - baseIndex)
        var bytes = 0
        for entry in entries[dropped] { bytes += entry.data.count }
        entries.removeSubrange(dropped)
        baseIndex = index
        baseTerm = newBaseTerm
        return bytes
    }

    /// Entries not yet handed out for persistence; marks them handed out.
    mutating func takeUnstable() -> [Entry] {
        guard unstableFrom <= lastIndex else { return [] }
        let out = Array(entries[Int(unstableFrom - baseIndex - 1)...])
        unstableFrom = lastIndex + 1
        return out
    }

    var hasUnstable: Bool { unstableFrom <= lastIndex }

    /// Called when the application confirms a Ready durable: everything it held that was not truncated
    /// since is now known durable.
    mutating func persisted(through index: UInt64) {
        let safe = min(index, unstableFrom - 1)
        if safe > persisted { persisted = safe }
    }

    var hasNextCommitted: Bool { applying < committed && pendingSnapshot == nil }

    /// Committed entries not yet handed out for applying, within the byte budget; marks them handed out.
    mutating func takeCommitted(maxBytes: Int) -> [Entry] {
        guard hasNextCommitted else { return [] }
        let lo = Int(applying - baseIndex)
        var hi = lo
        var bytes = 0
        let end = Int(committed - baseIndex)
        while hi < end {
            bytes += entries[hi].byteSize
            if maxBytes > 0 && hi > lo && bytes > maxBytes { break }
            hi += 1
        }
        applying = baseIndex + UInt64(hi)
        return Array(entries[lo..<hi])
    }
}
