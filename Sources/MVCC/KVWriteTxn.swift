import EtcdProto
import Foundation
import Storage

/// The changes of one log entry. Every change gets the entry's revision (`baseRevision + 1`) and the next
/// `sub` number; reads through the transaction see its own earlier writes, as etcd's do.
public final class KVWriteTxn {
    public unowned let store: KVStore
    public let baseRevision: Int64
    public private(set) var changeCount: Int64 = 0
    /// Events in the order they happened, for watchers.
    public private(set) var events: [Mvccpb_Event] = []

    init(store: KVStore, baseRevision: Int64) {
        self.store = store
        self.baseRevision = baseRevision
    }

    /// The revision a reader of this transaction observes.
    public var revision: Int64 { changeCount > 0 ? baseRevision + 1 : baseRevision }

    private var writer: SQLiteConnection { store.backend.writer }

    public func range(_ range: KeyRange, options: RangeOptions) throws -> RangeResult {
        var state = store.revisions
        state.current = revision
        return try KVStore.rangeKeys(on: writer, range: range, options: options, revisions: state)
    }

    /// The newest version of `key`, if it exists.
    public func get(_ key: Data) throws -> Mvccpb_KeyValue? {
        let s = try writer.statement(
            "SELECT create_rev, mod_rev, version, lease, value FROM live WHERE key = ?1")
        s.bind(1, key)
        defer { s.reset() }
        guard try s.step() else { return nil }
        var kv = Mvccpb_KeyValue()
        kv.key = key
        kv.createRevision = s.int64(0)
        kv.modRevision = s.int64(1)
        kv.version = s.int64(2)
        kv.lease = s.int64(3)
        kv.value = s.data(4)
        return kv
    }

    /// Writes a new version of `key`; returns the previous one. The API refuses a txn that writes one key twice,
    /// but the history table still tolerates it (the last change of a revision wins) so that applying any
    /// committed entry can never fail halfway.
    @discardableResult
    public func put(key: Data, value: Data, lease: Int64) throws -> Mvccpb_KeyValue? {
        let prev = try get(key)
        let rev = baseRevision + 1
        var kv = Mvccpb_KeyValue()
        kv.key = key
        kv.value = value
        kv.lease = lease
        kv.modRevision = rev
        kv.createRevision = prev?.createRevision ?? rev
        kv.version = (prev?.version ?? 0) + 1

        let history = try writer.statement(
            "INSERT OR REPLACE INTO kv(key, rev, sub, create_rev, version, lease, value) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        history.bind(1, key).bind(2, rev).bind(3, changeCount).bind(4, kv.createRevision).bind(5, kv.version)
            .bind(6, lease).bind(7, value)
        try history.run()
        let live = try writer.statement(
            """
            INSERT INTO live(key, create_rev, mod_rev, version, lease, value) VALUES(?1, ?2, ?3, ?4, ?5, ?6)
            ON CONFLICT(key) DO UPDATE SET create_rev = excluded.create_rev, mod_rev = excluded.mod_rev,
                version = excluded.version, lease = excluded.lease, value = excluded.value
            """)
        live.bind(1, key).bind(2, kv.createRevision).bind(3, rev).bind(4, kv.version).bind(5, lease).bind(6, value)
        try live.run()

        changeCount += 1
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
        guard !existing.isEmpty else { return [] }
        let rev = baseRevision + 1
        let tombstone = try writer.statement(
            "INSERT OR REPLACE INTO kv(key, rev, sub, create_rev, version, lease, value) VALUES(?1, ?2, ?3, 0, 0, 0, x'')")
        let remove = try writer.statement("DELETE FROM live WHERE key = ?1")
        for prev in existing {
            tombstone.bind(1, prev.key).bind(2, rev).bind(3, changeCount)
            try tombstone.run()
            remove.bind(1, prev.key)
            try remove.run()
            changeCount += 1
            var kv = Mvccpb_KeyValue()
            kv.key = prev.key
            kv.modRevision = rev
            var event = Mvccpb_Event()
            event.type = .delete
            event.kv = kv
            event.prevKv = prev
            events.append(event)
        }
        return existing
    }
}
