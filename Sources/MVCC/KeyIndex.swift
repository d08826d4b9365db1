import EtcdProto
import Foundation

/// Where one version of a key lives in the history table (`revs`, keyed by revision).
struct RevisionRef: Equatable, Sendable {
    var main: Int64
    var sub: Int64
    var tombstone: Bool
}

/// What memory holds for one key: its newest version while it exists, and every version since the last
/// compaction (as etcd's tree index does), so that reads at the head never touch the database and historical
/// reads know exactly which rows to fetch.
///
/// A class: the ordered map then moves pointers, not 100-byte values, when keys are inserted, and a write that
/// looked a key up updates its entry without a second search. Only the apply loop mutates entries, under the
/// store's lock.
final class KeyEntry {
    var head: Mvccpb_KeyValue?
    /// Ascending by revision; a deletion is a tombstone entry.
    var history: [RevisionRef]

    init(head: Mvccpb_KeyValue? = nil, history: [RevisionRef] = []) {
        self.head = head
        self.history = history
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
    /// before it unless that is a deletion.
    func compact(at revision: Int64) {
        guard let first = history.first, first.main <= revision else { return }
        let above = history.firstIndex { $0.main > revision } ?? history.count
        let newest = history[above - 1]
        if above == 1 && !newest.tombstone { return }
        history = (newest.tombstone ? [] : [newest]) + history[above...]
    }
}

/// The store's memory: the key index, the revision bookkeeping and the rows not yet committed to SQLite.
struct MemoryState {
    var keys = SortedKeyMap<KeyEntry>()
    var liveKeys = 0
    var revisions: RevisionState
    /// Rows written since the last SQLite commit, by revision (array index = sub); readers of the history merge
    /// them with what SQLite has, so the apply loop may commit lazily.
    var uncommitted: [Int64: [Mvccpb_KeyValue]] = [:]
    /// SQLite holds every row at or below this revision.
    var committedThrough: Int64

    init(revisions: RevisionState) {
        self.revisions = revisions
        committedThrough = revisions.current
    }

    /// Records a version of `key` (a deletion when `head` is nil) at `ref`; `entry` is the key's entry when the
    /// caller already found it.
    mutating func record(_ key: Data, _ ref: RevisionRef, head: Mvccpb_KeyValue?, entry known: KeyEntry? = nil) {
        let e = known ?? keys.value(for: key, orInsert: { KeyEntry() })
        if e.head != nil { liveKeys -= 1 }
        // One key written twice in a revision (only a replayed log could do it): the last change wins.
        if let last = e.history.last, last.main == ref.main { e.history.removeLast() }
        e.history.append(ref)
        e.head = head
        if head != nil { liveKeys += 1 }
    }

    /// A row of the history that is still in memory (not yet committed), or the head when it is that version.
    func row(_ ref: RevisionRef, key: Data) -> Mvccpb_KeyValue? {
        if let rows = uncommitted[ref.main], Int(ref.sub) < rows.count { return rows[Int(ref.sub)] }
        if let head = keys[key]?.head, head.modRevision == ref.main { return head }
        return nil
    }
}
