import EtcdProto
import Foundation
import Storage

/// Options of a range read, as etcd's mvcc layer takes them.
public struct RangeOptions: Sendable {
    /// Maximum number of key-values returned; 0 = no limit. `count` is unaffected.
    public var limit: Int = 0
    /// Revision to read at; <= 0 reads the newest.
    public var revision: Int64 = 0
    public var countOnly = false
    public var keysOnly = false

    public init(limit: Int = 0, revision: Int64 = 0, countOnly: Bool = false, keysOnly: Bool = false) {
        self.limit = limit
        self.revision = revision
        self.countOnly = countOnly
        self.keysOnly = keysOnly
    }
}

public struct RangeResult: Sendable {
    public var kvs: [Mvccpb_KeyValue]
    /// The store revision the read observed.
    public var revision: Int64
    /// Number of keys in the range at that revision, regardless of `limit`.
    public var count: Int
}

/// Store-wide revision bookkeeping, read inside a transaction so it matches the rows read with it.
public struct RevisionState: Sendable, Equatable {
    public var current: Int64
    /// Revisions below this are gone (etcd's compactMainRev): reads there fail with `compacted`.
    public var compacted: Int64
    /// Physical removal has progressed through this revision.
    public var compactionFinished: Int64
}

/// The revisioned key space on top of `Backend`.
///
/// Two tables: `kv` holds every version (key, revision) including tombstones (version 0), the history that
/// historical reads, watch replay and compaction use; `live` holds the newest version of each existing key, so
/// reads at the newest revision — the common case — are a single ordered index scan.
public final class KVStore: @unchecked Sendable {
    public let backend: Backend
    /// Writer-side view; the apply loop is its only mutator.
    public private(set) var revisions: RevisionState

    public init(backend: Backend) throws {
        self.backend = backend
        revisions = try KVStore.loadRevisions(backend)
    }

    private static func loadRevisions(_ backend: Backend) throws -> RevisionState {
        RevisionState(
            current: try backend.metaInt("current_rev") ?? 1,
            compacted: try backend.metaInt("compact_rev") ?? 0,
            compactionFinished: try backend.metaInt("compact_finished_rev") ?? 0)
    }

    /// Re-reads the revision bookkeeping after the backend was replaced by a snapshot.
    public func reload() throws {
        revisions = try KVStore.loadRevisions(backend)
    }

    // MARK: Reads (any thread)

    /// A linearizable-or-serializable read of committed state, on a pooled reader.
    public func range(_ range: KeyRange, options: RangeOptions) throws -> RangeResult {
        try backend.read { c in
            let state = try KVStore.revisionState(on: c, backend: backend)
            return try KVStore.rangeKeys(on: c, range: range, options: options, revisions: state)
        }
    }

    /// Runs several reads against one committed state.
    public func read<T>(_ body: (KVReadView) throws -> T) throws -> T {
        try backend.read { c in
            try body(KVReadView(connection: c, revisions: try KVStore.revisionState(on: c, backend: backend)))
        }
    }

    static func revisionState(on c: SQLiteConnection, backend: Backend) throws -> RevisionState {
        let s = try c.statement(
            "SELECT name, value FROM meta WHERE name IN ('current_rev', 'compact_rev', 'compact_finished_rev')")
        defer { s.reset() }
        var state = RevisionState(current: 1, compacted: 0, compactionFinished: 0)
        while try s.step() {
            switch s.string(0) {
            case "current_rev": state.current = s.int64(1)
            case "compact_rev": state.compacted = s.int64(1)
            default: state.compactionFinished = s.int64(1)
            }
        }
        return state
    }

    static func rangeKeys(
        on c: SQLiteConnection, range: KeyRange, options: RangeOptions, revisions: RevisionState
    ) throws -> RangeResult {
        var rev = options.revision
        if rev > revisions.current { throw MVCCError.futureRevision }
        if rev <= 0 { rev = revisions.current }
        if rev < revisions.compacted { throw MVCCError.compacted }
        if range.isEmpty { return RangeResult(kvs: [], revision: revisions.current, count: 0) }
        if rev == revisions.current {
            return try headRange(on: c, range: range, options: options, revision: rev)
        }
        return try historicalRange(on: c, range: range, options: options, revision: rev, head: revisions.current)
    }

    private static func whereClause(_ range: KeyRange) -> String {
        switch range {
        case .single: return "key = ?1"
        case .interval: return "key >= ?1 AND key < ?2"
        case .from: return "key >= ?1"
        }
    }

    private static func bindRange(_ s: SQLiteStatement, _ range: KeyRange) {
        switch range {
        case .single(let k): s.bind(1, k)
        case .interval(let from, let to): s.bind(1, from).bind(2, to)
        case .from(let k): s.bind(1, k)
        }
    }

    private static func headRange(on c: SQLiteConnection, range: KeyRange, options: RangeOptions, revision: Int64)
        throws -> RangeResult
    {
        let clause = whereClause(range)
        if options.countOnly {
            let s = try c.statement("SELECT COUNT(*) FROM live WHERE \(clause)")
            bindRange(s, range)
            defer { s.reset() }
            let count = try s.step() ? Int(s.int64(0)) : 0
            return RangeResult(kvs: [], revision: revision, count: count)
        }
        let columns = options.keysOnly ? "key, create_rev, mod_rev, version, lease" : "key, create_rev, mod_rev, version, lease, value"
        let limit = options.limit > 0 ? " LIMIT \(options.limit)" : ""
        let s = try c.statement("SELECT \(columns) FROM live WHERE \(clause) ORDER BY key\(limit)")
        bindRange(s, range)
        var kvs: [Mvccpb_KeyValue] = []
        while try s.step() {
            var kv = Mvccpb_KeyValue()
            kv.key = s.data(0)
            kv.createRevision = s.int64(1)
            kv.modRevision = s.int64(2)
            kv.version = s.int64(3)
            kv.lease = s.int64(4)
            if !options.keysOnly { kv.value = s.data(5) }
            kvs.append(kv)
        }
        s.reset()
        var count = kvs.count
        if options.limit > 0 && kvs.count >= options.limit {
            if case .single = range {
            } else {
                let counter = try c.statement("SELECT COUNT(*) FROM live WHERE \(clause)")
                bindRange(counter, range)
                defer { counter.reset() }
                count = try counter.step() ? Int(counter.int64(0)) : kvs.count
            }
        }
        return RangeResult(kvs: kvs, revision: revision, count: count)
    }

    private static func historicalRange(
        on c: SQLiteConnection, range: KeyRange, options: RangeOptions, revision: Int64, head: Int64
    ) throws -> RangeResult {
        // For each key, the newest version at or before `revision`; a tombstone there means "absent".
        let clause = whereClause(range)
        let s = try c.statement(
            """
            SELECT key, MAX(rev), create_rev, version, lease, value FROM kv
            WHERE \(clause) AND rev <= ?3 GROUP BY key ORDER BY key
            """)
        bindRange(s, range)
        s.bind(3, revision)
        defer { s.reset() }
        var kvs: [Mvccpb_KeyValue] = []
        var count = 0
        while try s.step() {
            let version = s.int64(3)
            if version == 0 { continue }
            count += 1
            if options.countOnly || (options.limit > 0 && kvs.count >= options.limit) { continue }
            var kv = Mvccpb_KeyValue()
            kv.key = s.data(0)
            kv.modRevision = s.int64(1)
            kv.createRevision = s.int64(2)
            kv.version = version
            kv.lease = s.int64(4)
            if !options.keysOnly { kv.value = s.data(5) }
            kvs.append(kv)
        }
        return RangeResult(kvs: kvs, revision: head, count: count)
    }

    // MARK: Writes (apply loop only)

    /// Starts the changes of one log entry; they all share the next revision, numbered by `sub`.
    public func beginWrite() -> KVWriteTxn {
        KVWriteTxn(store: self, baseRevision: revisions.current)
    }

    /// Ends a write; if it changed anything, the store revision advances by exactly one.
    public func end(_ txn: KVWriteTxn) throws {
        if txn.changeCount > 0 {
            revisions.current = txn.baseRevision + 1
            try backend.setMetaInt("current_rev", revisions.current)
        }
    }

    /// Records a compaction at `revision` (validated against etcd's rules); the physical removal follows in steps.
    public func scheduleCompaction(_ revision: Int64) throws {
        if revision <= revisions.compacted { throw MVCCError.compacted }
        if revision > revisions.current { throw MVCCError.futureRevision }
        revisions.compacted = revision
        try backend.setMetaInt("compact_rev", revision)
    }

    /// Whether physical compaction has work left.
    public var compactionPending: Bool { revisions.compactionFinished < revisions.compacted }

    /// Removes up to `budget` superseded versions at or below the compaction revision, oldest first, so that a
    /// concurrent historical read never sees an older version reappear. Returns true when done.
    @discardableResult
    public func compactStep(budget: Int = 10_000) throws -> Bool {
        guard compactionPending else { return true }
        let target = revisions.compacted
        let scan = try backend.writer.statement(
            "SELECT key, rev, version FROM kv WHERE rev > ?1 AND rev <= ?2 ORDER BY rev, sub LIMIT ?3")
        scan.bind(1, revisions.compactionFinished).bind(2, target).bind(3, Int64(budget))
        var rows: [(Data, Int64, Int64)] = []
        while try scan.step() { rows.append((scan.data(0), scan.int64(1), scan.int64(2))) }
        scan.reset()
        let newer = try backend.writer.statement(
            "SELECT 1 FROM kv WHERE key = ?1 AND rev > ?2 AND rev <= ?3 LIMIT 1")
        let delete = try backend.writer.statement("DELETE FROM kv WHERE key = ?1 AND rev = ?2")
        for (key, rev, version) in rows {
            newer.bind(1, key).bind(2, rev).bind(3, target)
            let superseded = try newer.step()
            newer.reset()
            if superseded || version == 0 {
                delete.bind(1, key).bind(2, rev)
                try delete.run()
            }
        }
        let done = rows.count < budget
        revisions.compactionFinished = done ? target : (rows.last?.1 ?? target) - 1
        // Rows of one revision may straddle the budget; resuming at rev-1 re-examines them, harmlessly.
        try backend.setMetaInt("compact_finished_rev", revisions.compactionFinished)
        return done
    }

    // MARK: Hashing (corruption checks)

    /// A checksum of the key space's history up to `revision`, as compaction at the current compaction revision
    /// defines it, independent of how far physical removal has got, so members can compare it.
    public func hashKV(revision: Int64) throws -> (hash: UInt32, compactRevision: Int64, revision: Int64) {
        try backend.read { c in
            let state = try KVStore.revisionState(on: c, backend: backend)
            var rev = revision
            if rev > state.current { throw MVCCError.futureRevision }
            if rev <= 0 { rev = state.current }
            if rev < state.compacted { throw MVCCError.compacted }
            let s = try c.statement(
                "SELECT key, rev, sub, create_rev, version, lease, value FROM kv WHERE rev <= ?1 ORDER BY rev, sub")
            s.bind(1, rev)
            defer { s.reset() }
            let newer = try c.statement("SELECT 1 FROM kv WHERE key = ?1 AND rev > ?2 AND rev <= ?3 LIMIT 1")
            var crc = CRC32C()
            while try s.step() {
                let key = s.data(0)
                let r = s.int64(1)
                let version = s.int64(4)
                if r <= state.compacted {
                    if version == 0 { continue }
                    newer.bind(1, key).bind(2, r).bind(3, state.compacted)
                    let superseded = try newer.step()
                    newer.reset()
                    if superseded { continue }
                }
                key.withUnsafeBytes { crc.update(buffer: $0) }
                for v in [r, s.int64(2), s.int64(3), version, s.int64(5)] {
                    withUnsafeBytes(of: v.littleEndian) { crc.update(buffer: $0) }
                }
                s.data(6).withUnsafeBytes { crc.update(buffer: $0) }
            }
            return (crc.value, state.compacted, rev)
        }
    }

    /// Number of live keys (etcd_debugging_mvcc_keys_total).
    public func keyCount() throws -> Int {
        try backend.read { c in Int(try c.scalar("SELECT COUNT(*) FROM live") ?? 0) }
    }
}

/// Reads at one committed state (see `KVStore.read`).
public struct KVReadView {
    let connection: SQLiteConnection
    public let revisions: RevisionState

    public func range(_ range: KeyRange, options: RangeOptions) throws -> RangeResult {
        try KVStore.rangeKeys(on: connection, range: range, options: options, revisions: revisions)
    }
}

extension KVStore {
    /// History events with revisions in `[from, through]`, in revision order, for watch catch-up.
    /// At most about `limit` events: a revision's events are never split. Returns the last revision covered.
    public func events(from: Int64, through: Int64, limit: Int, prevKV: Bool) throws -> (
        events: [Mvccpb_Event], covered: Int64, revisions: RevisionState
    ) {
        try backend.read { c in
            let state = try KVStore.revisionState(on: c, backend: backend)
            if from < state.compacted { throw MVCCError.compacted }
            let upper = min(through, state.current)
            if from > upper { return ([], upper, state) }
            let s = try c.statement(
                """
                SELECT key, rev, create_rev, version, lease, value FROM kv
                WHERE rev >= ?1 AND rev <= ?2 ORDER BY rev, sub LIMIT ?3
                """)
            s.bind(1, from).bind(2, upper).bind(3, Int64(limit + 1))
            var rows: [Mvccpb_Event] = []
            while try s.step() { rows.append(KVStore.event(from: s)) }
            s.reset()
            var covered = upper
            if rows.count > limit, let lastRev = rows.last?.kv.modRevision {
                let firstRev = rows[0].kv.modRevision
                if firstRev == lastRev {
                    // One revision larger than the limit: take it whole.
                    s.bind(1, firstRev).bind(2, firstRev).bind(3, Int64.max)
                    rows.removeAll()
                    while try s.step() { rows.append(KVStore.event(from: s)) }
                    s.reset()
                    covered = firstRev
                } else {
                    rows.removeAll { $0.kv.modRevision == lastRev }
                    covered = lastRev - 1
                }
            }
            if prevKV {
                let p = try c.statement(
                    """
                    SELECT rev, create_rev, version, lease, value FROM kv
                    WHERE key = ?1 AND rev < ?2 ORDER BY rev DESC LIMIT 1
                    """)
                for i in rows.indices {
                    p.bind(1, rows[i].kv.key).bind(2, rows[i].kv.modRevision)
                    if try p.step(), p.int64(2) > 0 {
                        var prev = Mvccpb_KeyValue()
                        prev.key = rows[i].kv.key
                        prev.modRevision = p.int64(0)
                        prev.createRevision = p.int64(1)
                        prev.version = p.int64(2)
                        prev.lease = p.int64(3)
                        prev.value = p.data(4)
                        rows[i].prevKv = prev
                    }
                    p.reset()
                }
            }
            return (rows, covered, state)
        }
    }

    private static func event(from s: SQLiteStatement) -> Mvccpb_Event {
        var kv = Mvccpb_KeyValue()
        kv.key = s.data(0)
        kv.modRevision = s.int64(1)
        var event = Mvccpb_Event()
        let version = s.int64(3)
        if version == 0 {
            event.type = .delete
        } else {
            event.type = .put
            kv.createRevision = s.int64(2)
            kv.version = version
            kv.lease = s.int64(4)
            kv.value = s.data(5)
        }
        event.kv = kv
        return event
    }
}
