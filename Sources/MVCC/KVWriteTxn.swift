import EtcdProto
import Foundation
import Storage

/// The changes of one log entry. Every change gets the entry's revision (`baseRevision + 1`) and the next
/// `sub` number; reads through the transaction see its own earlier writes, as etcd's do. Readers elsewhere
/// see none of them until `KVStore.end(_:)` publishes the whole revision at once.
public final class KVWriteTxn {
    public unowned let store: KVStore
    public let baseRevision: Int64
    /// Events in the order they happened, for watchers.
    public private(set) var events: [Mvccpb_Event] = []
    /// The events whose previous version's value was not read (`put(previousValue: false)`).
    public private(set) var pendingPrevValues = PendingPrevValues()

    struct Change {
        /// The history row (a deletion is a row of version 0).
        var row: Mvccpb_KeyValue
        var sub: Int64
        /// The key's version after the change; nil when deleted.
        var head: Mvccpb_KeyValue?
    }

    private(set) var changes: [Change] = []
    /// This transaction's latest change per key, for its own reads.
    private var overlay: [Data: Int] = [:]
    /// Index entries this transaction looked up (nil: the key has none), so `end` need not search again.
    private(set) var entries: [Data: KeyEntry?] = [:]

    init(store: KVStore, baseRevision: Int64) {
        self.store = store
        self.baseRevision = baseRevision
    }

    public var changeCount: Int64 { Int64(changes.count) }

    /// The revision a reader of this transaction observes.
    public var revision: Int64 { changes.isEmpty ? baseRevision : baseRevision + 1 }

    public func range(_ range: KeyRange, options: RangeOptions) throws -> RangeResult {
        guard !overlay.isEmpty, options.revision <= 0 || options.revision >= revision else {
            return try store.range(range, options: options)
        }
        // Merge this transaction's writes over the store's newest state, then apply limit and count.
        var merged: [Data: Mvccpb_KeyValue] = [:]
        for kv in try store.range(range, options: RangeOptions()).kvs { merged[kv.key] = kv }
        for (key, index) in overlay where range.contains(key) { merged[key] = changes[index].head }
        var kvs = merged.values.sorted { KeyRange.less($0.key, $1.key) }
        let count = kvs.count
        if options.countOnly { kvs = [] }
        if options.limit > 0 && kvs.count > options.limit { kvs.removeLast(kvs.count - options.limit) }
        if options.keysOnly { for i in kvs.indices { kvs[i].value = Data() } }
        return RangeResult(kvs: kvs, revision: revision, count: count)
    }

    /// The newest version of `key`, if it exists.
    public func get(_ key: Data) throws -> Mvccpb_KeyValue? {
        let (head, unread) = head(of: key)
        guard var kv = head, let unread else { return head }
        kv.value = try store.headValue(at: unread)
        return kv
    }

    /// The newest version of `key`, its value left empty when memory does not hold it, and then the row to read it
    /// from (`KVStore.headValue(at:)`).
    private func head(of key: Data) -> (Mvccpb_KeyValue?, unread: RevisionRef?) {
        if let index = overlay[key] { return (changes[index].head, nil) }
        let (entry, head, unread) = store.entryWithoutReading(key)
        entries[key] = entry
        return (head, unread)
    }

    /// Writes a new version of `key`; returns the previous one. Its value is read only if `previousValue` (the
    /// request asked for `prev_kv`) or it is in memory: otherwise the event's `prevKv` has it empty and the row is
    /// recorded in `pendingPrevValues`, read only if a watcher wants it when the events are published (etcd reads
    /// only its index on a put). At 8 GiB, reading it for every put was six page reads per put.
    @discardableResult
    public func put(key: Data, value: Data, lease: Int64, previousValue: Bool = true) throws -> Mvccpb_KeyValue? {
        var (prev, unread) = head(of: key)
        if let unread {
            if previousValue {
                prev?.value = try store.headValue(at: unread)
            } else {
                pendingPrevValues.rows.append((events.count, unread))
            }
        }
        let rev = baseRevision + 1
        var kv = Mvccpb_KeyValue()
        kv.key = key
        kv.value = value
        kv.lease = lease
        kv.modRevision = rev
        kv.createRevision = prev?.createRevision ?? rev
        kv.version = (prev?.version ?? 0) + 1
        try record(kv, head: kv)
        store.putBytes.add(key.count + value.count, ordering: .relaxed)
        var event = Mvccpb_Event()
        event.type = .put
        event.kv = kv
        if let prev { event.prevKv = prev }
        events.append(event)
        return prev
    }

    /// Deletes every existing key in `range`; returns the deleted versions in key order.
    @discardableResult
    public func deleteRange(_ range: KeyRange) throws -> [Mvccpb_KeyValue] {
        if range.isEmpty { return [] }
        let existing = try self.range(range, options: RangeOptions(revision: 0)).kvs
        let rev = baseRevision + 1
        for prev in existing {
            var tombstone = Mvccpb_KeyValue()
            tombstone.key = prev.key
            tombstone.modRevision = rev
            try record(tombstone, head: nil)
            var event = Mvccpb_Event()
            event.type = .delete
            event.kv = tombstone
            event.prevKv = prev
            events.append(event)
        }
        return existing
    }

    /// Appends the row to the history table (inside the apply loop's open SQLite transaction) and remembers it.
    private func record(_ row: Mvccpb_KeyValue, head: Mvccpb_KeyValue?) throws {
        let sub = Int64(changes.count)
        let insert = try store.backend.writer.statement(
            """
            INSERT OR REPLACE INTO revs(rev, sub, key, create_rev, version, lease, value, vlen)
                VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
            """
        )
        insert.bind(1, row.modRevision).bind(2, sub).bind(3, row.key).bind(4, row.createRevision).bind(5, row.version)
            .bind(6, row.lease).bind(7, row.value).bind(8, Int64(row.value.count))
        try insert.run()
        overlay[row.key] = changes.count
        changes.append(Change(row: row, sub: sub, head: head))
    }
}

/// Events whose previous version (`prevKv`) was recorded without its value, by index into their list of events, and
/// the row holding each value: `KVStore.fill(_:into:)` reads them when a watcher wants them.
public struct PendingPrevValues: Sendable {
    var rows: [(index: Int, row: RevisionRef)] = []

    public init() {}

    public var isEmpty: Bool { rows.isEmpty }

    /// Appends another transaction's, whose events follow `offset` earlier ones.
    public mutating func append(_ other: PendingPrevValues, offset: Int) {
        for (index, row) in other.rows { rows.append((index + offset, row)) }
    }
}
