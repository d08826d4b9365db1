import EtcdProto
import Foundation
import Storage
import Synchronization

/// Options of a range read, as etcd's mvcc layer takes them.
public struct RangeOptions: Sendable {
    /// Maximum number of key-values returned; 0 = no limit. `count` is unaffected.
    public var limit: Int = 0
    /// Revision to read at; <= 0 reads the newest.
    public var revision: Int64 = 0
    public var countOnly = false
    public var keysOnly = false
    /// Where the walk starts instead of the range's first key (a key inside the range): the rest of a range read in
    /// pages. Ignored for a single key.
    public var from: Data? = nil
    /// Page mode when > 0: the walk stops before a key that would follow `limit` keys, or follow keys and values of
    /// at least this many bytes (values whose length memory does not know count as empty), and the result says where
    /// to resume. `count` then counts only the keys returned, so that a page costs what it returns, not the range.
    public var pageBytes: Int = 0

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
    /// Number of keys in the range at that revision, regardless of `limit` (in page mode: of the page).
    public var count: Int
    /// Page mode: the first key of the next page (nil: the range ends with this page).
    public var resume: Data? = nil
}

/// Store-wide revision bookkeeping.
public struct RevisionState: Sendable, Equatable {
    public var current: Int64
    /// Revisions below this are gone (etcd's compactMainRev): reads there fail with `compacted`.
    public var compacted: Int64
    /// Physical removal has progressed through this revision.
    public var compactionFinished: Int64
}

/// The revisioned key space: etcd's MVCC store on memory and SQLite.
///
/// SQLite's `revs` table is the history, keyed by revision as etcd's bbolt bucket is: every write appends rows
/// in order, so a put costs a sequential insert rather than random B-tree pages (the old per-key tables wrote
/// about four random pages per put). Memory holds the index (`MemoryState`): each key's newest version without its
/// value (`HeadMeta`) and the revisions of its history since the last compaction, and a `ValueCache` of values within
/// a byte budget. Reads at the newest revision — nearly all of them — are answered from memory, fetching only the
/// values the cache misses by their rows; historical reads and watch catch-up fetch exactly the rows the index names.
///
/// The apply loop is the only writer and commits SQLite lazily (Raft's log makes the batches durable); rows not
/// yet committed stay in memory, so readers never wait for a commit. `Backend` tells the store when it commits.
public final class KVStore: Sendable {
    public let backend: Backend
    let state: Mutex<MemoryState>
    /// Bytes of key and value of every put applied (`etcd_debugging_mvcc_total_put_size_in_bytes`).
    public let putBytes = Atomic<Int>(0)
    /// History rows physical compaction removed (`etcd_debugging_mvcc_db_compaction_keys_total`).
    public let compactedRows = Atomic<Int>(0)

    /// The value cache's budget in bytes (`--value-cache-bytes`).
    public let valueCacheBytes: Int

    /// The value cache's default budget: the values of a few hundred thousand typical keys (Kubernetes objects are
    /// a few KiB), a small part of the 2 GiB a member should stay under whatever the size of its database.
    public static let defaultValueCacheBytes = 256 << 20

    public init(backend: Backend, valueCacheBytes: Int = KVStore.defaultValueCacheBytes) throws {
        self.backend = backend
        self.valueCacheBytes = valueCacheBytes
        state = Mutex(try KVStore.load(backend, valueCacheBytes: valueCacheBytes))
        backend.onCommit = { [weak self] in self?.committed() }
    }

    /// What start-up reads: the history, without its values, in revision order (a scan of `Backend.historyIndex`).
    static let indexSource =
        "SELECT rev, sub, key, create_rev, version, lease, vlen FROM revs INDEXED BY revs_meta ORDER BY rev, sub"

    /// Rebuilds the index from the database (startup: the history since the last compaction).
    private static func load(_ backend: Backend, valueCacheBytes: Int) throws -> MemoryState {
        let c = backend.writer
        var state = MemoryState(
            revisions: RevisionState(
                current: try backend.metaInt("current_rev", on: c) ?? 1,
                compacted: try backend.metaInt("compact_rev", on: c) ?? 0,
                compactionFinished: try backend.metaInt("compact_finished_rev", on: c) ?? 0),
            valueCacheBytes: valueCacheBytes)
        // One pass in revision order over the history's index (`Backend.historyIndex`), which holds everything but
        // the values: each row becomes its key's newest version until a later row replaces it. Rows written before
        // the index had value lengths have none there; the live ones among them are asked of the table after.
        // The rows are read on a thread of their own while this one inserts them (`HistoryIndexScan`).
        var lengthsUnknown: [Data] = []
        let scan = try HistoryIndexScan(connection: c, sql: indexSource, readAhead: backend.vfs == nil)
        defer { scan.close() }
        while let batch = try scan.next() {
            batch.forEach { row, key in
                let ref = RevisionRef(main: row.main, sub: row.sub, tombstone: row.version == 0)
                var head: HeadMeta?
                if !ref.tombstone {
                    head = HeadMeta(
                        createRevision: row.createRevision, version: row.version, lease: row.lease,
                        valueLength: row.valueLength.map { Int($0) } ?? Int(HeadMeta.unknownLength))
                    if row.valueLength == nil { lengthsUnknown.append(Data(key)) }
                }
                state.record(keyBytes: key, ref, head: head)
            }
        }
        scan.close()  // the connection is this thread's again, for the lengths below
        if !lengthsUnknown.isEmpty {
            let length = try c.statement("SELECT length(value) FROM revs WHERE rev = ?1 AND sub = ?2")
            for key in lengthsUnknown {
                guard let entry = state.keys[key], var head = entry.head, head.valueLength == HeadMeta.unknownLength,
                    let ref = entry.headRef
                else { continue }
                length.bind(1, ref.main).bind(2, ref.sub)
                guard try length.step() else { throw MVCCError.storage("no row for revision \(ref.main).\(ref.sub)") }
                head.valueLength = UInt32(clamping: length.int64(0))
                entry.head = head
                length.reset()
            }
        }
        // Rows a compaction superseded may still be on disk (it removes them in steps, and may have been cut short
        // by a stop, or the database came from a snapshot taken mid-compaction): the index forgets them as the
        // compaction defined it, and `compactStep` then removes them.
        let compacted = state.revisions.compacted
        if compacted > 0 && state.revisions.compactionFinished < compacted {
            state.keys.mutateAll { entry in
                guard let e = entry else { return }
                e.compact(at: compacted)
                if e.history.isEmpty && e.head == nil { entry = nil }
            }
        }
        return state
    }

    /// Re-reads everything after the backend was replaced by a snapshot.
    public func reload() throws {
        var fresh = try KVStore.load(backend, valueCacheBytes: valueCacheBytes)
        state.withLock { s in
            fresh.earlierCacheLookups = (
                s.earlierCacheLookups.hits + s.values.hits, s.earlierCacheLookups.misses + s.values.misses
            )
            s = fresh
        }
    }

    /// The value cache's lookups since start (hits and misses, across snapshot installs) and the bytes it holds
    /// now, for `/metrics`.
    public var valueCacheStats: (hits: Int, misses: Int, bytes: Int) {
        state.withLock { s in
            (
                s.earlierCacheLookups.hits + s.values.hits, s.earlierCacheLookups.misses + s.values.misses,
                s.values.bytes
            )
        }
    }

    /// The backend committed: everything written so far is in SQLite.
    private func committed() {
        state.withLock { s in
            s.committedThrough = s.revisions.current
            s.uncommitted.removeAll(keepingCapacity: true)
        }
    }

    public var revisions: RevisionState { state.withLock { $0.revisions } }

    /// Number of live keys (etcd_debugging_mvcc_keys_total).
    public func keyCount() -> Int { state.withLock { $0.liveKeys } }

    /// Every live key with a lease, for rebuilding the lessor.
    public func leasedKeys() -> [(key: Data, lease: Int64)] {
        state.withLock { s in
            var out: [(Data, Int64)] = []
            s.keys.scan(from: Data()) { key, entry in
                if let lease = entry.head?.lease, lease != 0 { out.append((Data(key), lease)) }
                return true
            }
            return out
        }
    }

    // MARK: Reads (any thread)

    /// A range read at `options.revision` (the newest when <= 0).
    public func range(_ range: KeyRange, options: RangeOptions) throws -> RangeResult {
        while true {
            if let result = try rangeOnce(range, options: options) { return result }
        }
    }

    /// A row a range read could not answer from memory: its whole row (a version older than the head) or only its
    /// value (the head: the index has the rest).
    struct MissingRow {
        var index: Int
        var ref: RevisionRef
        var valueOnly: Bool
    }

    /// One attempt of `range`; nil when a head value the cache missed was gone from SQLite by the time it was read
    /// (the key was written again and compacted meanwhile): a read at the newest revision then starts over.
    private func rangeOnce(_ range: KeyRange, options: RangeOptions) throws -> RangeResult? {
        var missing: [MissingRow] = []
        var result = try state.withLock { s throws(MVCCError) -> RangeResult in
            var rev = options.revision
            if rev > s.revisions.current { throw .futureRevision }
            if rev <= 0 { rev = s.revisions.current }
            if rev < s.revisions.compacted { throw .compacted }
            if range.isEmpty { return RangeResult(kvs: [], revision: s.revisions.current, count: 0) }
            return KVStore.rangeFromIndex(s, range, options, at: rev, missing: &missing)
        }
        if missing.isEmpty { return result }
        // Rows only the database holds: fetched after the lock, by their exact rows (all committed).
        var fetched: [(ref: RevisionRef, key: Data, value: Data)] = []
        fetched.reserveCapacity(missing.count)
        let complete = try backend.read { c in
            let values = try c.statement("SELECT value FROM revs WHERE rev = ?1 AND sub = ?2")
            // A keys-only read leaves the value column alone (its overflow pages are never loaded).
            let rows = try c.statement(
                options.keysOnly
                    ? "SELECT create_rev, version, lease FROM revs WHERE rev = ?1 AND sub = ?2"
                    : "SELECT create_rev, version, lease, value FROM revs WHERE rev = ?1 AND sub = ?2")
            for row in missing {
                let s = row.valueOnly ? values : rows
                s.bind(1, row.ref.main).bind(2, row.ref.sub)
                guard try s.step() else { return false }
                if !row.valueOnly {
                    result.kvs[row.index].createRevision = s.int64(0)
                    result.kvs[row.index].version = s.int64(1)
                    result.kvs[row.index].lease = s.int64(2)
                }
                if !options.keysOnly {
                    result.kvs[row.index].value = s.data(row.valueOnly ? 0 : 3)
                    fetched.append((row.ref, result.kvs[row.index].key, result.kvs[row.index].value))
                }
                s.reset()
            }
            return true
        }
        guard complete else {
            // A row gone meanwhile was compacted under the reader: an error for a read at a given revision, a retry
            // for a read of the newest (which the compaction cannot have passed).
            if options.revision > 0 { throw MVCCError.compacted }
            return nil
        }
        if !fetched.isEmpty {
            state.withLock { s in
                for (ref, key, value) in fetched {
                    let slot = s.values.insert(main: ref.main, sub: ref.sub, value)
                    // A head's value: its entry remembers the slot, so the next read finds it without hashing.
                    if slot >= 0, let entry = s.keys[key], entry.headRef == ref { entry.valueSlot = slot }
                }
            }
        }
        return result
    }

    /// Runs a read against the store (one consistent view per `range` call).
    public func read<T>(_ body: (KVReadView) throws -> T) throws -> T {
        try body(KVReadView(store: self, revisions: revisions))
    }

    /// The versions at `revision`, from the index. The newest version of a key has its metadata there and its
    /// value in the cache or the pending rows (a value neither has is listed in `missing`); older versions come
    /// from the pending rows, or are listed in `missing` whole. Keys-only and count-only reads of newest versions
    /// never look at values.
    static func rangeFromIndex(
        _ s: MemoryState, _ range: KeyRange, _ options: RangeOptions, at revision: Int64,
        missing: inout [MissingRow]
    ) -> RangeResult {
        var kvs: [Mvccpb_KeyValue] = []
        var count = 0
        let atHead = revision == s.revisions.current
        let paged = options.pageBytes > 0
        var pageBytes = 0
        var resume: Data? = nil
        // The answer's keys, copied out of the index back to back, and which answer each belongs to: after the walk
        // they become one `Data` that every answer's key is a slice of (a `Data` per key would be two allocations).
        var keyBytes: [UInt8] = []
        var keySpans: [(index: Int, bytes: Range<Int>)] = []
        /// Whether the walk goes on: false once a page is full (`resume` is then the key it stopped before). The key
        /// is the index's bytes, or the request's own `Data` (`given`) for one key.
        func take(_ key: UnsafeRawBufferPointer, given: Data?, _ entry: KeyEntry) -> Bool {
            let ref: RevisionRef
            let head: HeadMeta?
            if atHead {
                // A count-only read at the head looks at nothing but whether the key exists.
                guard let h = entry.head else { return true }
                if paged && ((options.limit > 0 && kvs.count >= options.limit) || pageBytes >= options.pageBytes) {
                    resume = given ?? Data(key)
                    return false
                }
                count += 1
                guard !options.countOnly, options.limit <= 0 || kvs.count < options.limit else { return true }
                head = h
                ref = entry.history[entry.history.count - 1]
            } else {
                guard let r = entry.version(atOrBefore: revision), !r.tombstone else { return true }
                if paged && ((options.limit > 0 && kvs.count >= options.limit) || pageBytes >= options.pageBytes) {
                    resume = given ?? Data(key)
                    return false
                }
                count += 1
                guard !options.countOnly, options.limit <= 0 || kvs.count < options.limit else { return true }
                ref = r
                head = entry.history.last == r ? entry.head : nil
            }
            var kv = Mvccpb_KeyValue()
            if let given {
                kv.key = given
            } else {
                keySpans.append((kvs.count, keyBytes.count..<keyBytes.count + key.count))
                keyBytes.append(contentsOf: key)
            }
            kv.modRevision = ref.main
            if let head {
                kv.createRevision = head.createRevision
                kv.version = head.version
                kv.lease = head.lease
                if !options.keysOnly && head.valueLength > 0 {
                    if let value = s.headValue(entry, ref) {
                        kv.value = value
                    } else {
                        missing.append(MissingRow(index: kvs.count, ref: ref, valueOnly: true))
                    }
                }
            } else if let rows = s.uncommitted[ref.main], Int(ref.sub) < rows.count {
                kv = rows[Int(ref.sub)]
                if options.keysOnly { kv.value = Data() }
            } else {
                missing.append(MissingRow(index: kvs.count, ref: ref, valueOnly: false))
            }
            if paged { pageBytes += key.count + (options.keysOnly ? 0 : Int(head?.valueLength ?? 0)) + 16 }
            kvs.append(kv)
            return true
        }
        if case .single(let key) = range {
            if let entry = s.keys[key] { _ = key.withUnsafeBytes { take($0, given: key, entry) } }
        } else {
            let (low, high) = range.bounds
            var start = low
            if let from = options.from, KeyRange.compare(from, low) > 0 { start = from }
            s.keys.scan(from: start) { key, entry in
                if let high, high.withUnsafeBytes({ KeyRange.compare(key, $0) }) >= 0 { return false }
                return take(key, given: nil, entry)
            }
        }
        if !keySpans.isEmpty {
            let keys = Data(keyBytes)
            for (index, bytes) in keySpans where kvs[index].key.isEmpty { kvs[index].key = keys[bytes] }
        }
        return RangeResult(kvs: kvs, revision: s.revisions.current, count: count, resume: resume)
    }

    // MARK: Writes (apply loop only)

    /// Starts the changes of one log entry; they all share the next revision, numbered by `sub`.
    public func beginWrite() -> KVWriteTxn {
        KVWriteTxn(store: self, baseRevision: revisions.current)
    }

    /// Ends a write; if it changed anything, the store revision advances by exactly one and readers see every
    /// change of the revision at once.
    public func end(_ txn: KVWriteTxn) throws {
        guard txn.changeCount > 0 else { return }
        let revision = txn.baseRevision + 1
        try backend.setMetaInt("current_rev", revision)
        state.withLock { s in
            for change in txn.changes {
                s.record(
                    change.row.key, RevisionRef(main: revision, sub: change.sub, tombstone: change.head == nil),
                    head: change.head.map(HeadMeta.init), value: change.head?.value,
                    entry: txn.entries[change.row.key] ?? nil)
            }
            s.uncommitted[revision] = txn.changes.map(\.row)
            s.revisions.current = revision
        }
    }

    /// The entry of `key` and its newest version, as of the last ended write, its value included when it is in memory
    /// (cached, or not yet committed); otherwise the value is left empty and the row it is in returned, for
    /// `headValue(at:)` to read through the writer's connection (apply loop only), which sees every row written.
    func entryWithoutReading(_ key: Data) -> (KeyEntry?, Mvccpb_KeyValue?, RevisionRef?) {
        state.withLock { s -> (KeyEntry?, Mvccpb_KeyValue?, RevisionRef?) in
            guard let entry = s.keys[key] else { return (nil, nil, nil) }
            guard let ref = entry.headRef, let head = entry.head else { return (entry, nil, nil) }
            if head.valueLength == 0 { return (entry, entry.headKV(key: key, value: Data()), nil) }
            if let value = s.headValue(entry, ref) { return (entry, entry.headKV(key: key, value: value), nil) }
            return (entry, entry.headKV(key: key, value: Data()), ref)
        }
    }

    /// The value of a history row, read through the writer's connection (apply loop only: it sees the batch that is
    /// not committed yet).
    func headValue(at ref: RevisionRef) throws -> Data {
        let s = try backend.writer.statement("SELECT value FROM revs WHERE rev = ?1 AND sub = ?2")
        s.bind(1, ref.main).bind(2, ref.sub)
        defer { s.reset() }
        guard try s.step() else { throw MVCCError.compacted }
        return s.data(0)
    }

    /// Reads the values a write transaction left out of its events' previous versions (`PendingPrevValues`):
    /// called when a watcher that wants them is there to receive the events. Apply loop only. A row that is gone
    /// (a compaction in the same batch removed it) leaves its value empty, as etcd sends an event whose previous
    /// version it can no longer read.
    public func fill(_ pending: PendingPrevValues, into events: inout [Mvccpb_Event]) {
        for (index, ref) in pending.rows where events.indices.contains(index) {
            if let value = try? headValue(at: ref) { events[index].prevKv.value = value }
        }
    }

    /// Records a compaction at `revision` (validated against etcd's rules); the index forgets the superseded
    /// versions at once, the rows go in steps (`compactStep`). Returns how long the index was held, in nanoseconds
    /// (reads and writes of the key space wait that long: etcd's index compaction pause).
    @discardableResult
    public func scheduleCompaction(_ revision: Int64) throws -> UInt64 {
        let current = revisions
        if revision <= current.compacted { throw MVCCError.compacted }
        if revision > current.current { throw MVCCError.futureRevision }
        try backend.setMetaInt("compact_rev", revision)
        // Physical removal resumes after `compactionFinished`; the rows at or below it are the versions earlier
        // compactions kept (at most one per key). One this compaction drops (its key was written or deleted since)
        // would never be scanned, and would bring the key back at the next start: such rows go now, in this batch.
        let finished = current.compactionFinished
        var orphans: [RevisionRef] = []
        let start = monotonicNanoseconds()
        state.withLock { s in
            s.revisions.compacted = revision
            s.keys.mutateAll { entry in
                guard let e = entry else { return }
                let kept = e.history.first.flatMap { $0.main <= finished ? $0 : nil }
                e.compact(at: revision)
                if let kept, e.history.first != kept { orphans.append(kept) }
                if e.history.isEmpty && e.head == nil { entry = nil }
            }
        }
        let took = monotonicNanoseconds() - start
        if !orphans.isEmpty {
            let delete = try backend.writer.statement("DELETE FROM revs WHERE rev = ?1 AND sub = ?2")
            for ref in orphans {
                delete.bind(1, ref.main).bind(2, ref.sub)
                try delete.run()
            }
            compactedRows.add(orphans.count, ordering: .relaxed)
        }
        return took
    }

    /// Whether physical compaction has work left.
    public var compactionPending: Bool { state.withLock { $0.revisions.compactionFinished < $0.revisions.compacted } }

    /// Removes superseded rows at or below the compaction revision, oldest first (the index already forgot them, so
    /// no reader asks for them): up to about `budget` history rows, and fewer when `nanoseconds` have passed by
    /// `clock` (a row with a large value frees many pages: a thousand 64 KiB values took 400 ms). Rows are read and
    /// removed in small chunks, so that a step cut short by time has not read rows it leaves (reading a thousand rows'
    /// leaf pages alone took 20 ms). A step always ends on a whole revision. Returns true when done.
    @discardableResult
    public func compactStep(
        budget: Int = 10_000, nanoseconds: UInt64 = .max, clock: () -> UInt64 = monotonicNanoseconds
    ) throws -> Bool {
        var (from, target) = state.withLock { ($0.revisions.compactionFinished, $0.revisions.compacted) }
        guard from < target else { return true }
        let start = clock()
        var scanned = 0
        var done = false
        while true {
            let limit = max(1, min(Self.compactionChunk, budget - scanned))
            let rows = try compactionRows(after: from, through: target, limit: limit)
            let superseded = state.withLock { s in
                rows.filter { row in !(s.keys[row.key]?.retains(main: row.rev, sub: row.sub) ?? false) }
            }
            let delete = try backend.writer.statement("DELETE FROM revs WHERE rev = ?1 AND sub = ?2")
            for row in superseded {
                delete.bind(1, row.rev).bind(2, row.sub)
                try delete.run()
            }
            compactedRows.add(superseded.count, ordering: .relaxed)
            scanned += rows.count
            guard rows.count >= limit, let last = rows.last else {
                done = true
                from = target
                break
            }
            from = last.rev
            if scanned >= budget || clock() &- start >= nanoseconds { break }
        }
        try backend.setMetaInt("compact_finished_rev", from)
        state.withLock { $0.revisions.compactionFinished = from }
        return done
    }

    /// History rows a compaction step reads at a time.
    static let compactionChunk = 16

    /// Up to `limit` history rows after revision `after` and at most `through`, oldest first, and then the rest of the
    /// last one's revision: resuming inside a revision would scan the same rows again, and when they are all kept (a
    /// transaction's many puts, a limit smaller than its rows) compaction would never get past them.
    private func compactionRows(after: Int64, through: Int64, limit: Int) throws -> [(
        rev: Int64, sub: Int64, key: Data
    )] {
        let scan = try backend.writer.statement(
            "SELECT rev, sub, key FROM revs WHERE rev > ?1 AND rev <= ?2 ORDER BY rev, sub LIMIT ?3")
        scan.bind(1, after).bind(2, through).bind(3, Int64(limit))
        var rows: [(rev: Int64, sub: Int64, key: Data)] = []
        while try scan.step() { rows.append((scan.int64(0), scan.int64(1), scan.data(2))) }
        scan.reset()
        if rows.count >= limit, let last = rows.last {
            let rest = try backend.writer.statement(
                "SELECT rev, sub, key FROM revs WHERE rev = ?1 AND sub > ?2 ORDER BY sub")
            rest.bind(1, last.rev).bind(2, last.sub)
            while try rest.step() { rows.append((rest.int64(0), rest.int64(1), rest.data(2))) }
            rest.reset()
        }
        return rows
    }

    // MARK: History (any thread)

    /// A checksum of the key space's history up to `revision`, as compaction at the current compaction revision
    /// defines it (independent of how far physical removal has got), so members can compare it.
    public func hashKV(revision: Int64) throws -> (hash: UInt32, compactRevision: Int64, revision: Int64) {
        let (revisions, committed, pending) = state.withLock { s in
            (s.revisions, s.committedThrough, s.uncommitted.sorted { $0.key < $1.key })
        }
        var rev = revision
        if rev > revisions.current { throw MVCCError.futureRevision }
        if rev <= 0 { rev = revisions.current }
        if rev < revisions.compacted { throw MVCCError.compacted }
        let compacted = revisions.compacted
        let sqliteUpper = min(rev, committed)
        typealias Row = (key: Data, rev: Int64, sub: Int64, create: Int64, version: Int64, lease: Int64, value: Data)
        let memoryRows: [Row] = pending.filter { $0.key <= rev && $0.key > committed }.flatMap { main, rows in
            rows.enumerated().map { sub, kv in
                (kv.key, main, Int64(sub), kv.createRevision, kv.version, kv.lease, kv.value)
            }
        }
        return try backend.read { c in
            // Pass 1: which version of each key the compaction keeps (the newest at or below it, unless deleted
            // before it).
            var kept: [Data: (Int64, Int64, Bool)] = [:]
            let newest = try c.statement(
                "SELECT key, rev, sub, version FROM revs WHERE rev <= ?1 AND rev <= ?2 ORDER BY rev, sub")
            newest.bind(1, compacted).bind(2, sqliteUpper)
            while try newest.step() { kept[newest.data(0)] = (newest.int64(1), newest.int64(2), newest.int64(3) == 0) }
            newest.reset()
            for row in memoryRows where row.rev <= compacted { kept[row.key] = (row.rev, row.sub, row.version == 0) }
            // Pass 2: every row up to `rev` that the compaction keeps, in revision order.
            var crc = CRC32C()
            func add(_ row: Row) {
                if row.rev <= compacted {
                    guard let k = kept[row.key], k.0 == row.rev, k.1 == row.sub,
                        KeyEntry.compactionKeeps(k.0, tombstone: k.2, at: compacted)
                    else { return }
                }
                row.key.withUnsafeBytes { crc.update(buffer: $0) }
                for v in [row.rev, row.sub, row.create, row.version, row.lease] {
                    withUnsafeBytes(of: v.littleEndian) { crc.update(buffer: $0) }
                }
                row.value.withUnsafeBytes { crc.update(buffer: $0) }
            }
            let all = try c.statement(
                "SELECT key, rev, sub, create_rev, version, lease, value FROM revs WHERE rev <= ?1 ORDER BY rev, sub")
            all.bind(1, sqliteUpper)
            while try all.step() {
                add((all.data(0), all.int64(1), all.int64(2), all.int64(3), all.int64(4), all.int64(5), all.data(6)))
            }
            all.reset()
            for row in memoryRows { add(row) }
            return (crc.value, compacted, rev)
        }
    }
}

/// Reads at one state of the store (see `KVStore.read`).
public struct KVReadView {
    let store: KVStore
    public let revisions: RevisionState

    public func range(_ range: KeyRange, options: RangeOptions) throws -> RangeResult {
        try store.range(range, options: options)
    }
}

extension KVStore {
    /// History events with revisions in `[from, through]`, in revision order, for watch catch-up.
    /// At most about `limit` events: a revision's events are never split. Returns the last revision covered.
    public func events(from: Int64, through: Int64, limit: Int, prevKV: Bool) throws -> (
        events: [Mvccpb_Event], covered: Int64, revisions: RevisionState
    ) {
        let (revisions, committed, pending) = state.withLock { s in
            let upper = min(through, s.revisions.current)
            let rows = s.uncommitted.filter { $0.key >= from && $0.key <= upper }.sorted { $0.key < $1.key }
            return (s.revisions, s.committedThrough, rows)
        }
        if from < revisions.compacted { throw MVCCError.compacted }
        let upper = min(through, revisions.current)
        if from > upper { return ([], upper, revisions) }
        var rows: [Mvccpb_Event] = []
        if from <= committed {
            try backend.read { c in
                let s = try c.statement(
                    """
                    SELECT key, rev, create_rev, version, lease, value FROM revs
                    WHERE rev >= ?1 AND rev <= ?2 ORDER BY rev, sub LIMIT ?3
                    """)
                s.bind(1, from).bind(2, min(upper, committed)).bind(3, Int64(limit + 1))
                while try s.step() { rows.append(KVStore.event(from: s)) }
                s.reset()
            }
        }
        for (_, revisionRows) in pending where rows.count <= limit {
            for kv in revisionRows { rows.append(KVStore.event(kv)) }
        }
        var covered = upper
        if rows.count > limit, let lastRev = rows.last?.kv.modRevision {
            let firstRev = rows[0].kv.modRevision
            if firstRev == lastRev {
                // One revision larger than the limit: take it whole.
                rows = try events(from: firstRev, through: firstRev, limit: Int.max - 1, prevKV: false).events
                covered = firstRev
            } else {
                rows.removeAll { $0.kv.modRevision == lastRev }
                covered = lastRev - 1
            }
        }
        if prevKV { try fillPrevious(&rows) }
        return (rows, covered, revisions)
    }

    /// Sets each event's previous version of its key (none after a deletion or when it was compacted away).
    private func fillPrevious(_ events: inout [Mvccpb_Event]) throws {
        var missing: [(index: Int, ref: RevisionRef)] = []
        state.withLock { s in
            for i in events.indices {
                let key = events[i].kv.key
                guard let ref = s.keys[key]?.version(before: events[i].kv.modRevision), !ref.tombstone else {
                    continue
                }
                if let kv = s.row(ref, key: key) { events[i].prevKv = kv } else { missing.append((i, ref)) }
            }
        }
        guard !missing.isEmpty else { return }
        try backend.read { c in
            let s = try c.statement(
                "SELECT key, create_rev, version, lease, value FROM revs WHERE rev = ?1 AND sub = ?2")
            for (index, ref) in missing {
                s.bind(1, ref.main).bind(2, ref.sub)
                if try s.step() {
                    var kv = Mvccpb_KeyValue()
                    kv.key = s.data(0)
                    kv.modRevision = ref.main
                    kv.createRevision = s.int64(1)
                    kv.version = s.int64(2)
                    kv.lease = s.int64(3)
                    kv.value = s.data(4)
                    events[index].prevKv = kv
                }
                s.reset()
            }
        }
    }

    private static func event(from s: SQLiteStatement) -> Mvccpb_Event {
        var kv = Mvccpb_KeyValue()
        kv.key = s.data(0)
        kv.modRevision = s.int64(1)
        kv.createRevision = s.int64(2)
        kv.version = s.int64(3)
        kv.lease = s.int64(4)
        kv.value = s.data(5)
        return event(kv)
    }

    /// A history row as a watch event (a row of version 0 is a deletion).
    static func event(_ row: Mvccpb_KeyValue) -> Mvccpb_Event {
        var event = Mvccpb_Event()
        if row.version == 0 {
            event.type = .delete
            var kv = Mvccpb_KeyValue()
            kv.key = row.key
            kv.modRevision = row.modRevision
            event.kv = kv
        } else {
            event.type = .put
            event.kv = row
        }
        return event
    }
}
