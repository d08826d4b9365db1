import EtcdProto
import Foundation

/// Where one version of a key lives in the history table (`revs`, keyed by revision).
struct RevisionRef: Equatable, Sendable {
    var main: Int64
    var sub: Int64
    var tombstone: Bool
}

/// The newest version of a live key, without its key, value and mod revision: the key is the map's, the mod
/// revision (and sub) is the entry's newest history ref, and the value lives in SQLite and the `ValueCache`.
struct HeadMeta: Equatable, Sendable {
    var createRevision: Int64
    var version: Int64
    var lease: Int64
    /// The value's length: a keys-only or count-only read never needs the value, and an empty one is never fetched.
    var valueLength: UInt32

    /// Only while `KVStore.load` runs: a row written before the history's index recorded value lengths.
    static let unknownLength = UInt32.max

    init(createRevision: Int64, version: Int64, lease: Int64, valueLength: Int) {
        self.createRevision = createRevision
        self.version = version
        self.lease = lease
        self.valueLength = UInt32(clamping: valueLength)
    }

    init(_ kv: Mvccpb_KeyValue) {
        self.init(createRevision: kv.createRevision, version: kv.version, lease: kv.lease, valueLength: kv.value.count)
    }
}

/// A key's versions since the last compaction, ascending by revision. Most keys have one (every key of a compacted
/// store, every key written once), and that one is held inline: an array of one would be a 64-byte allocation per
/// key, the largest part of the index after the keys themselves. A key with more keeps the older ones in an array.
struct RevisionHistory: RandomAccessCollection, ExpressibleByArrayLiteral, Equatable {
    /// The newest version; nil only when the history is empty.
    private var newest: RevisionRef?
    /// The versions before `newest`, ascending.
    private var older: [RevisionRef] = []

    init(_ refs: some Sequence<RevisionRef>) {
        for ref in refs { append(ref) }
    }

    init(arrayLiteral refs: RevisionRef...) { self.init(refs) }

    var startIndex: Int { 0 }
    var endIndex: Int { newest == nil ? 0 : older.count + 1 }

    subscript(position: Int) -> RevisionRef {
        position < older.count ? older[position] : newest!
    }

    var last: RevisionRef? { newest }

    mutating func append(_ ref: RevisionRef) {
        if let newest { older.append(newest) }
        newest = ref
    }

    mutating func removeLast() {
        newest = older.popLast()
    }
}

/// What memory holds for one key: its newest version's metadata while it exists (no value: values would make the
/// index grow with the data, see `ValueCache`), and every version since the last compaction (as etcd's tree index
/// does), so that keys-only and count-only reads at the head never touch the database, reads with values fetch
/// exactly the rows they miss, and historical reads know exactly which rows to fetch.
///
/// A class: the ordered map then moves pointers, not 50-byte values, when keys are inserted, and a write that
/// looked a key up updates its entry without a second search. Only the apply loop mutates entries, under the
/// store's lock.
final class KeyEntry {
    var head: HeadMeta?
    /// Ascending by revision; a deletion is a tombstone entry. While the key exists the last one is its head's row.
    var history: RevisionHistory
    /// Where the value cache last put the head's value (checked against the row on use, so never stale): a hit
    /// without hashing.
    var valueSlot: Int32 = -1

    init(head: HeadMeta? = nil, history: RevisionHistory = []) {
        self.head = head
        self.history = history
    }

    /// The row of the newest version, while the key exists.
    var headRef: RevisionRef? { head == nil ? nil : history.last }

    /// The newest version with `value` (the caller found it in the cache, the pending rows or SQLite).
    func headKV(key: Data, value: Data) -> Mvccpb_KeyValue? {
        guard let head, let ref = history.last else { return nil }
        var kv = Mvccpb_KeyValue()
        kv.key = key
        kv.modRevision = ref.main
        kv.createRevision = head.createRevision
        kv.version = head.version
        kv.lease = head.lease
        kv.value = value
        return kv
    }

    /// The newest version at or before `revision`, tombstones included.
    func version(atOrBefore revision: Int64) -> RevisionRef? {
        var low = 0
        var high = history.count
        while low < high {
            let mid = (low + high) / 2
            if history[mid].main <= revision { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : history[low - 1]
    }

    /// The version just before the one at `revision`, tombstones included.
    func version(before revision: Int64) -> RevisionRef? {
        version(atOrBefore: revision - 1)
    }

    func retains(main: Int64, sub: Int64) -> Bool {
        guard let ref = version(atOrBefore: main) else { return false }
        return ref.main == main && ref.sub == sub
    }

    /// etcd's compaction of one key at `revision`: versions after it stay, and so does the newest one at or
    /// before it unless that is a deletion made before `revision`.
    ///
    /// A deletion made at `revision` itself stays (until a later compaction): a watcher may start at the compaction
    /// revision, and its first event is that deletion. etcd dropped it until 3.5.15 (etcd issue 18089, "Watch
    /// dropping an event when compacting on delete"); the member simulation found Quorum doing the same.
    func compact(at revision: Int64) {
        guard let first = history.first, first.main <= revision else { return }
        let above = history.firstIndex { $0.main > revision } ?? history.count
        let newest = history[above - 1]
        let keepsNewest = Self.compactionKeeps(newest.main, tombstone: newest.tombstone, at: revision)
        if above == 1 && keepsNewest { return }
        history = RevisionHistory((keepsNewest ? [newest] : []) + history[above...])
    }

    /// Whether a compaction at `revision` keeps a key's newest version at or before it (see `compact(at:)`).
    static func compactionKeeps(_ main: Int64, tombstone: Bool, at revision: Int64) -> Bool {
        !tombstone || main == revision
    }
}

/// The store's memory: the key index, the revision bookkeeping, the value cache and the rows not yet committed to
/// SQLite.
struct MemoryState {
    var keys = SortedKeyMap<KeyEntry>()
    var liveKeys = 0
    var revisions: RevisionState
    /// Rows written since the last SQLite commit, by revision (array index = sub); readers of the history merge
    /// them with what SQLite has, so the apply loop may commit lazily.
    var uncommitted: [Int64: [Mvccpb_KeyValue]] = [:]
    /// SQLite holds every row at or below this revision.
    var committedThrough: Int64
    let values: ValueCache
    /// Hits and misses of the caches an installed snapshot replaced, so that the counts exported as counters
    /// never go back.
    var earlierCacheLookups: (hits: Int, misses: Int) = (0, 0)

    init(revisions: RevisionState, valueCacheBytes: Int) {
        self.revisions = revisions
        committedThrough = revisions.current
        values = ValueCache(budget: valueCacheBytes)
    }

    /// Records a version of `key` (a deletion when `head` is nil) at `ref`; `entry` is the key's entry when the
    /// caller already found it. The new head's value enters the cache (the apply loop has it), the superseded
    /// head's leaves it: only historical reads want it, and its bytes serve live values better.
    mutating func record(
        _ key: Data, _ ref: RevisionRef, head: HeadMeta?, value: Data? = nil, entry known: KeyEntry? = nil
    ) {
        record(into: known ?? keys.value(for: key, orInsert: { KeyEntry() }), ref, head: head, value: value)
    }

    /// `record(_:_:head:)` for a key given as bytes (start-up, straight from SQLite's row): a key already in the index
    /// costs no copy.
    mutating func record(keyBytes: UnsafeRawBufferPointer, _ ref: RevisionRef, head: HeadMeta?) {
        record(into: keys.value(forKey: keyBytes, orInsert: { KeyEntry() }), ref, head: head, value: nil)
    }

    private mutating func record(into e: KeyEntry, _ ref: RevisionRef, head: HeadMeta?, value: Data?) {
        if let old = e.headRef {
            liveKeys -= 1
            values.remove(main: old.main, sub: old.sub)
        }
        // One key written twice in a revision (only a replayed log could do it): the last change wins.
        if let last = e.history.last, last.main == ref.main { e.history.removeLast() }
        e.history.append(ref)
        e.head = head
        if head != nil {
            liveKeys += 1
            if let value { e.valueSlot = values.insert(main: ref.main, sub: ref.sub, value) }
        }
    }

    /// The value of a row if memory has it: cached, or written since the last commit.
    @inline(__always)
    func value(_ ref: RevisionRef) -> Data? {
        if let value = values.value(main: ref.main, sub: ref.sub) { return value }
        if let rows = uncommitted[ref.main], Int(ref.sub) < rows.count { return rows[Int(ref.sub)].value }
        return nil
    }

    /// The value of `entry`'s head (at `ref`) if memory has it, through the entry's cache slot.
    @inline(__always)
    func headValue(_ entry: KeyEntry, _ ref: RevisionRef) -> Data? {
        if let value = values.value(slot: entry.valueSlot, main: ref.main, sub: ref.sub) { return value }
        if let rows = uncommitted[ref.main], Int(ref.sub) < rows.count { return rows[Int(ref.sub)].value }
        return nil
    }

    /// A row of the history that is still in memory (not yet committed), or the head when it is that version and
    /// its value is cached.
    func row(_ ref: RevisionRef, key: Data) -> Mvccpb_KeyValue? {
        if let rows = uncommitted[ref.main], Int(ref.sub) < rows.count { return rows[Int(ref.sub)] }
        guard let entry = keys[key], entry.headRef == ref, let value = values.value(main: ref.main, sub: ref.sub)
        else { return nil }
        return entry.headKV(key: key, value: value)
    }
}
