import EtcdProto
import Foundation
import MVCC
import Simulation
import Storage
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real key space (`KVStore` on `Backend`: its schema, pragmas, writer and reader pool, SQLite itself) on
/// `SimFileSystem` through `DiskVFS`, driven as the apply loop drives it, cut short by power cuts and injected EIO and
/// ENOSPC, and reopened after each.
///
/// The guarantee checked, exactly: SQLite runs with `synchronous=NORMAL`, so a COMMIT is not durable by itself; the
/// member relies on `Backend.makeDurable()` before Raft releases its log (anything newer is applied again from the
/// log, after `consistent_index`). After a power cut the reopened store must hold exactly the state that a COMMIT
/// left at its `consistent_index` (never a mix of two), no older than the last `makeDurable()` that returned, and
/// SQLite's `integrity_check` must say "ok". A COMMIT or `makeDurable()` that threw may or may not have happened.
///
/// Entry `i` is the same in every incarnation, as a committed Raft entry is, so the state at an index does not
/// depend on the incarnation that applied it. That matters: the reopened state can be one an *earlier* incarnation
/// committed past the point the previous reopen found (counted as "revived"). WAL recovery accepts frames by their
/// checksum chain, and frames left past the recovered end can rejoin it when the frames written after the reopen hold
/// the same pages of the same state (the likely way; not traced frame by frame). Harmless for Quorum (the same
/// entries, the same state); with entries that differed between incarnations the suite saw it as a lost commit
/// coming back over a newer one.
///
/// Every failed disk call must surface as an error (the member then stops); the harness cuts the power there, as a
/// stopped member's machine may lose it. The seed is printed; `QUORUM_TEST_SEED` replays it; `QUORUM_SQLITE_SIM_RUNS`
/// runs more than the default 60 stores (30 cycles each), `QUORUM_SQLITE_SIM_TRACE` prints the last steps of a failure.
@Suite("SQLite key space on the simulated disk", .ownThread)
struct SQLitePowerLossTests {
    static let directory = "/data/member/snap"
    static let path = directory + "/db"

    @Test func theKeySpaceSurvivesEveryPowerCut() {
        let seed = SeededRandom.seed(for: "SQLite power loss")
        // SQLite's own PRNG (WAL salts) is process-wide and seeded from the default VFS: seed it for a replayable run.
        DiskVFS.seedSQLiteRandomness(UInt32(truncatingIfNeeded: seed) | 1)
        defer { DiskVFS.seedSQLiteRandomness(0) }
        var rng = SimRandom(seed: seed)
        var totals = SimFileSystemStats()
        var outcomes = Outcomes()
        let runs = ProcessInfo.processInfo.environment["QUORUM_SQLITE_SIM_RUNS"].flatMap { Int($0) } ?? 60
        for run in 0..<runs {
            var faults = SimDiskFaults()
            if run % 3 == 2 { faults = SimDiskFaults(writeError: 0.005, syncError: 0.05, directorySyncError: 0.1) }
            var harness = StoreHarness(seed: rng.next(), faults: faults, smallCheckpoints: run % 2 == 1)
            for cycle in 0..<30 {
                if let failure = harness.cycle() {
                    if ProcessInfo.processInfo.environment["QUORUM_SQLITE_SIM_TRACE"] != nil {
                        print(harness.trace.joined(separator: "\n"))
                    }
                    Issue.record(
                        Comment(
                            rawValue:
                                "seed \(seed) run \(run) cycle \(cycle): \(failure) (replay with QUORUM_TEST_SEED=\(seed))"
                        ))
                    return
                }
            }
            if let failure = harness.reopen() {
                Issue.record(Comment(rawValue: "seed \(seed) run \(run), last reopen: \(failure)"))
                return
            }
            totals.add(harness.fileSystem.stats)
            outcomes.add(harness.outcomes)
        }
        print(
            "SQLite power loss: \(totals.crashes) crashes, \(outcomes.commits) commits, \(outcomes.durable) made durable, "
                + "reopened at the newest commit \(outcomes.newest), at an older one \(outcomes.older) (of which at "
                + "the last durable one \(outcomes.atDurable)), at a newer one of an earlier incarnation "
                + "\(outcomes.revived); errors reported \(outcomes.errors), "
                + "absorbed by SQLite \(outcomes.absorbed); pages kept "
                + "\(totals.pagesKept) lost \(totals.pagesLost) torn \(totals.pagesTorn), names lost "
                + "\(totals.namesLost), write errors \(totals.writeErrors), sync errors \(totals.syncErrors)")
        // The losses the suite exists for did happen: cuts that kept every commit, cuts that lost some.
        #expect(totals.pagesTorn > 0 && totals.pagesLost > 0)
        #expect(outcomes.newest > 0 && outcomes.older > 0)
        #expect(totals.writeErrors > 0 && totals.syncErrors > 0 && outcomes.errors > 0)
        // Every failed disk call surfaced as an error: no step succeeded across one.
        #expect(outcomes.absorbed == 0)
    }
}

extension SQLitePowerLossTests {
    /// Regression: a read transaction that began while the WAL was wholly checkpointed (a snapshot stream, a backup)
    /// holds SQLite's read lock 0, so `PRAGMA wal_checkpoint(FULL)` can copy nothing: it gave up after the busy
    /// timeout *without syncing the WAL* and still returned SQLITE_OK (its "busy" column set), so `makeDurable()`
    /// returned with the newest commits in unsynced pages, and Raft would then release the log entries they came from.
    @Test func makeDurableIsDurableWhileAReadIsOpen() throws {
        func put(_ store: KVStore, _ value: String, index: Int64) throws {
            try store.backend.beginBatch()
            let txn = store.beginWrite()
            try txn.put(key: Data("k".utf8), value: Data(value.utf8), lease: 0)
            try store.end(txn)
            try store.backend.setMetaInt("consistent_index", index)
        }
        for seed: UInt64 in 1...20 {
            let fs = SimFileSystem(seed: seed)
            try fs.makeDirectory(Self.directory)
            let vfs = DiskVFS(disk: fs, temporaryDirectory: Self.directory, seed: seed)
            var store: KVStore? = try KVStore(backend: Backend(path: Self.path, vfs: vfs))
            try put(store!, "one", index: 1)
            try store!.backend.makeDurable()
            try store!.backend.read { reader in
                _ = try reader.scalar("SELECT COUNT(*) FROM revs")
                try put(store!, "two", index: 2)
                try store!.backend.makeDurable()
            }
            var rng = SimRandom(seed: seed)
            fs.crash(rng: &rng)
            vfs.restart()
            store = nil
            let reopened = try KVStore(backend: Backend(path: Self.path, vfs: vfs))
            #expect(try reopened.backend.metaInt("consistent_index") == 2, "seed \(seed)")
            let value = try reopened.range(.single(Data("k".utf8)), options: RangeOptions()).kvs.first?.value
            #expect(value == Data("two".utf8), "seed \(seed)")
        }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
}

extension SQLitePowerLossTests {
    /// Regression: SQLite's automatic checkpoint (`wal_autocheckpoint`) ignores its errors. After its WAL fsync
    /// failed, Linux had dropped the dirty pages and the COMMIT still succeeded; the next checkpoint's fsync then
    /// succeeded without them and copied the WAL into the database, and a power cut during that copy corrupted the
    /// database (found by `theKeySpaceSurvivesEveryPowerCut`: "2nd reference to page"). The COMMIT now fails.
    @Test func aFailedFsyncInAnAutomaticCheckpointFailsTheCommit() throws {
        let fs = SimFileSystem(seed: 1)
        try fs.makeDirectory(Self.directory)
        let vfs = DiskVFS(disk: fs, temporaryDirectory: Self.directory, seed: 1)
        let store = try KVStore(backend: Backend(path: Self.path, vfs: vfs))
        func put(_ key: String, bytes: Int) throws {
            try store.backend.beginBatch()
            let txn = store.beginWrite()
            try txn.put(key: Data(key.utf8), value: Data(repeating: 7, count: bytes), lease: 0)
            try store.end(txn)
        }
        try put("a", bytes: 10)
        try store.backend.makeDurable()
        // The next write restarts the WAL, which syncs its header: done before the disk starts failing.
        try put("b", bytes: 10)
        try store.backend.commitBatch()
        fs.faults.syncError = 1
        // More than 4096 pages: the COMMIT leaves more frames than the production threshold.
        try put("c", bytes: 17 << 20)
        #expect(throws: BackendFailed.self) { try store.backend.commitBatch() }
        #expect(fs.stats.syncErrors > 0)
    }

    /// Regression (member simulation, seed 8002345): a COMMIT that fails on a full disk rolls the batch back, so the
    /// key space in memory is ahead of SQLite. The leader went on: its next batch recorded a `consistent_index`
    /// past the lost rows, and the image it wrote for a follower claimed an applied index whose rows were gone, so
    /// the follower diverged. After a failed COMMIT the backend refuses every batch and image; a reopen finds the
    /// state of the last good COMMIT.
    @Test func aFailedCommitStopsTheBackend() throws {
        let fs = SimFileSystem(seed: 2)
        try fs.makeDirectory(Self.directory)
        let vfs = DiskVFS(disk: fs, temporaryDirectory: Self.directory, seed: 2)
        let store = try KVStore(backend: Backend(path: Self.path, vfs: vfs))
        func put(_ key: String) throws {
            try store.backend.beginBatch()
            let txn = store.beginWrite()
            try txn.put(key: Data(key.utf8), value: Data(repeating: 7, count: 100), lease: 0)
            try store.end(txn)
        }
        try put("a")
        try store.backend.commitBatch()
        try put("b")
        fs.faults.writeError = 1
        #expect(throws: BackendFailed.self) { try store.backend.commitBatch() }
        fs.faults.writeError = 0
        #expect(store.backend.failure != nil)
        #expect(throws: BackendFailed.self) { try store.backend.beginBatch() }
        #expect(throws: BackendFailed.self) { try store.backend.writeImage(to: Self.directory + "/image.db") }
        let reopened = try KVStore(backend: Backend(path: Self.path, vfs: vfs))
        #expect(reopened.revisions.current == 2, "the last good COMMIT: a at revision 2, without b")
        #expect(try reopened.range(.single(Data("b".utf8)), options: RangeOptions()).kvs.isEmpty)
    }
}

/// How the reopened stores compared with the commit history.
struct Outcomes {
    var commits = 0
    var durable = 0
    var newest = 0
    var older = 0
    var atDurable = 0
    var errors = 0
    /// Steps that succeeded although a disk call failed in them (automatic checkpoints).
    var absorbed = 0
    /// Reopens at a commit of an earlier incarnation newer than every commit of the last one (see the suite).
    var revived = 0

    mutating func add(_ other: Outcomes) {
        revived += other.revived
        absorbed += other.absorbed
        commits += other.commits
        durable += other.durable
        newest += other.newest
        older += other.older
        atDurable += other.atDurable
        errors += other.errors
    }
}

/// One key's newest version as the store reports it.
struct ModelKV: Equatable, CustomStringConvertible {
    var value: Data
    var create: Int64
    var mod: Int64
    var version: Int64
    var lease: Int64

    var description: String { "(\(value.count)B c\(create) m\(mod) v\(version) l\(lease))" }
}

/// The key space as etcd's rules make it, applied alongside the store: its history, leases and `consistent_index`.
struct StoreModel {
    var index: Int64 = 0
    var current: Int64 = 1
    var compacted: Int64 = 0
    /// Every change in revision order (nil: a deletion).
    var history: [(rev: Int64, key: Data, kv: ModelKV?)] = []
    var heads: [Data: ModelKV] = [:]
    var leases: [Int64: Int64] = [:]

    mutating func put(_ key: Data, _ value: Data, lease: Int64, at rev: Int64) {
        let prev = heads[key]
        let kv = ModelKV(
            value: value, create: prev?.create ?? rev, mod: rev, version: (prev?.version ?? 0) + 1, lease: lease)
        heads[key] = kv
        history.append((rev, key, kv))
    }

    mutating func delete(_ range: KeyRange, at rev: Int64) {
        for key in heads.keys.filter(range.contains).sorted(by: KeyRange.less) {
            heads[key] = nil
            history.append((rev, key, nil))
        }
    }

    /// Whether two models hold the same key space (the same entries applied, whatever the batches).
    func isSameState(as other: StoreModel) -> Bool {
        index == other.index && current == other.current && compacted == other.compacted && heads == other.heads
            && leases == other.leases && history.count == other.history.count
    }

    /// The live keys at each of `revisions` (sorted), in one pass over the history.
    func states(at revisions: [Int64]) -> [Int64: [Data: ModelKV]] {
        var result: [Int64: [Data: ModelKV]] = [:]
        var state: [Data: ModelKV] = [:]
        var next = 0
        for change in history {
            while next < revisions.count && revisions[next] < change.rev {
                result[revisions[next]] = state
                next += 1
            }
            state[change.key] = change.kv
        }
        while next < revisions.count {
            result[revisions[next]] = state
            next += 1
        }
        return result
    }
}

/// One simulated member's state machine: drives the real `KVStore` like the apply loop, cuts the power, reopens,
/// checks.
struct StoreHarness {
    let fileSystem: SimFileSystem
    let vfs: DiskVFS
    var rng: SimRandom
    /// Runs that make SQLite checkpoint by itself every 32 frames instead of 4096, so that automatic checkpoints happen
    /// in a short run.
    let smallCheckpoints: Bool
    var store: KVStore?
    /// What the apply loop applied (committed or not), the state at the last `makeDurable()` that returned, and the
    /// states every COMMIT since then left (or may have left, if it threw).
    var applied = StoreModel()
    var durable = StoreModel()
    var commits: [StoreModel] = []
    /// Seeds each entry's generator.
    let entrySeed: UInt64
    /// Every state a COMMIT left (or may have left), in any incarnation, by `consistent_index`.
    var committed: [Int64: StoreModel] = [0: StoreModel()]
    var outcomes = Outcomes()
    /// What happened, newest last (for a failure's message).
    var trace: [String] = []

    mutating func note(_ line: String) {
        trace.append(line)
        if trace.count > 400 { trace.removeFirst(100) }
    }

    init(seed: UInt64, faults: SimDiskFaults, smallCheckpoints: Bool) {
        rng = SimRandom(seed: seed)
        fileSystem = SimFileSystem(seed: rng.next(), faults: faults)
        vfs = DiskVFS(disk: fileSystem, temporaryDirectory: SQLitePowerLossTests.directory, seed: rng.next())
        entrySeed = rng.next()
        self.smallCheckpoints = smallCheckpoints
    }

    static let keys = (0..<16).map { Data("k\(String(format: "%02d", $0))".utf8) }

    /// Reopens (or creates) the store, applies batches until the power goes or an error stops the apply loop, cuts
    /// the power. Returns a failure, if any.
    mutating func cycle() -> String? {
        if let failure = reopen() { return failure }
        guard let store else { return nil }
        if rng.chance(0.5) { fileSystem.cutPower(afterOperations: rng.int(0..<60)) }
        let faultsBefore = fileSystem.stats.writeErrors + fileSystem.stats.syncErrors
        for _ in 0..<rng.int(1..<12) {
            let faultsBeforeStep = fileSystem.stats.writeErrors + fileSystem.stats.syncErrors
            do {
                if rng.chance(0.15) {
                    // A long read (a snapshot stream, a backup) open across the step: it pins the WAL while the
                    // writer commits and checkpoints.
                    try store.backend.read { reader in
                        _ = try reader.scalar("SELECT COUNT(*) FROM meta")
                        try step(store)
                    }
                } else {
                    try step(store)
                }
                if rng.chance(0.2), let mismatch = try compare(store, applied) {
                    throw HarnessError(description: "the running store differs from what it applied: \(mismatch)")
                }
                // A disk call that failed in a step that succeeded: SQLite absorbed it (none is expected to matter).
                if fileSystem.stats.writeErrors + fileSystem.stats.syncErrors > faultsBeforeStep {
                    outcomes.absorbed += 1
                    note("a disk call failed and the step succeeded")
                }
            } catch {
                let faulted = fileSystem.stats.writeErrors + fileSystem.stats.syncErrors > faultsBefore
                if error is HarnessError { return "\(error)" }
                note("error: \(error)")
                if !fileSystem.isPowerOut && !faulted { return "the store threw \(error) with the disk healthy" }
                outcomes.errors += 1
                break
            }
        }
        crash()
        return nil
    }

    mutating func crash() {
        note("crash")
        fileSystem.crash(rng: &rng)
        // The process died with the power: its locks and WAL index are gone, its connections close against nothing.
        vfs.restart()
        store = nil
    }

    /// Opens the store after a crash, with power cuts and faults during the reopen too, and checks what it holds.
    mutating func reopen() -> String? {
        if store != nil { return nil }
        for _ in 0..<50 {
            if rng.chance(0.2) { fileSystem.cutPower(afterOperations: rng.int(0..<10)) }
            let faultsBefore = fileSystem.stats.writeErrors + fileSystem.stats.syncErrors
            do {
                if !fileSystem.exists(SQLitePowerLossTests.directory) {
                    try fileSystem.makeDirectory(SQLitePowerLossTests.directory)
                }
                let backend = try Backend(path: SQLitePowerLossTests.path, maxIdleReaders: 2, vfs: vfs)
                if smallCheckpoints { backend.writer.checkpointAutomatically(everyFrames: 32) }
                // A small value cache, so that reads go to SQLite through the reader pool.
                let opened = try KVStore(backend: backend, valueCacheBytes: 2048)
                if let failure = try check(opened) { return failure }
                store = opened
                return nil
            } catch {
                let faulted = fileSystem.stats.writeErrors + fileSystem.stats.syncErrors > faultsBefore
                if !fileSystem.isPowerOut && !faulted { return "reopening failed with the disk healthy: \(error)" }
                crash()
            }
        }
        return "the store never reopened"
    }

    /// The reopened store must be the state of one commit since the last durable point (or that point itself).
    mutating func check(_ store: KVStore) throws -> String? {
        let backend = store.backend
        let integrity = try backend.writer.statement("PRAGMA integrity_check")
        var lines: [String] = []
        while try integrity.step() { lines.append(integrity.string(0)) }
        integrity.reset()
        let verdict = lines.joined(separator: "; ")
        guard verdict == "ok" else { return "integrity_check: \(verdict)" }
        let index = try backend.metaInt("consistent_index") ?? 0
        guard index >= durable.index, let match = committed[index] else {
            return "reopened at consistent_index \(index); durable through \(durable.index), commits since: "
                + "\(commits.map(\.index))"
        }
        if let mismatch = try compare(store, match) {
            return "reopened at consistent_index \(index), which does not hold that commit's state: \(mismatch)"
        }
        let newest = commits.last?.index ?? durable.index
        if index == newest {
            outcomes.newest += 1
        } else if index < newest {
            outcomes.older += 1
            if index == durable.index { outcomes.atDurable += 1 }
        } else {
            outcomes.revived += 1
        }
        note("reopened at index \(match.index) rev \(match.current); durable was \(durable.index)")
        // What a power cut left is all on the disk now.
        durable = match
        applied = match
        commits = []
        return nil
    }

    /// Differences between the store and the model: revisions, the live keys at the newest revision, at the
    /// compaction revision and at a few in between, reads below the compaction, leases and leased keys.
    mutating func compare(_ store: KVStore, _ model: StoreModel) throws -> String? {
        let revisions = store.revisions
        guard revisions.current == model.current, revisions.compacted == model.compacted else {
            return "revisions \(revisions), expected current \(model.current) compacted \(model.compacted)"
        }
        let oldest = max(model.compacted, 1)
        var sample: Set<Int64> = [model.current, oldest]
        for _ in 0..<4 where model.current > oldest { sample.insert(rng.int(in: oldest...model.current)) }
        let checked = sample.sorted()
        let expected = model.states(at: checked)
        for revision in checked {
            let kvs = try store.range(.from(Data()), options: RangeOptions(revision: revision)).kvs
            let got = kvs.map {
                (
                    $0.key,
                    ModelKV(
                        value: $0.value, create: $0.createRevision, mod: $0.modRevision, version: $0.version,
                        lease: $0.lease)
                )
            }
            let want = expected[revision]!.sorted { KeyRange.less($0.key, $1.key) }
            guard got.map(\.0) == want.map(\.key) && got.map(\.1) == want.map(\.value) else {
                // The model's history of the keys that differ, to tell a store bug from a model bug.
                let differing = Set(got.map(\.0)).symmetricDifference(want.map(\.key))
                    .union(got.filter { expected[revision]![$0.0] != $0.1 }.map(\.0))
                let story = model.history.filter { differing.contains($0.key) }.map {
                    "\(String(decoding: $0.key, as: UTF8.self))@\($0.rev)\($0.kv.map { "\($0)" } ?? " deleted")"
                }
                var stored: [String] = []
                let rows = try store.backend.writer.statement(
                    "SELECT key, rev, sub, version FROM revs ORDER BY rev, sub")
                while try rows.step() {
                    guard differing.contains(rows.data(0)) else { continue }
                    stored.append(
                        "\(String(decoding: rows.data(0), as: UTF8.self))@\(rows.int64(1)).\(rows.int64(2))v\(rows.int64(3))"
                    )
                }
                rows.reset()
                return "at revision \(revision): \(got.map { "\(String(decoding: $0.0, as: UTF8.self))\($0.1)" }) "
                    + "expected \(want.map { "\(String(decoding: $0.key, as: UTF8.self))\($0.value)" }); "
                    + "history \(story); SQLite holds \(stored) with revisions \(revisions)"
            }
        }
        if model.compacted > 1 {
            do {
                _ = try store.range(.from(Data()), options: RangeOptions(revision: model.compacted - 1))
                return "a read below the compaction revision \(model.compacted) succeeded"
            } catch MVCCError.compacted {}
        }
        var leases: [Int64: Int64] = [:]
        let rows = try store.backend.writer.statement("SELECT id, ttl FROM leases")
        while try rows.step() { leases[rows.int64(0)] = rows.int64(1) }
        rows.reset()
        guard leases == model.leases else { return "leases \(leases), expected \(model.leases)" }
        let leased = Set(store.leasedKeys().map { "\($0.key.base64EncodedString())/\($0.lease)" })
        let wantLeased = Set(
            model.heads.filter { $0.value.lease != 0 }.map { "\($0.key.base64EncodedString())/\($0.value.lease)" })
        guard leased == wantLeased else { return "leased keys \(leased), expected \(wantLeased)" }
        return nil
    }

    /// One pass of the apply loop: a batch of entries into the open SQLite transaction, then a COMMIT, a
    /// `makeDurable()`, a physical compaction step (which commits too), or nothing (the next batch joins it).
    mutating func step(_ store: KVStore) throws {
        let backend = store.backend
        try backend.beginBatch()
        for _ in 0..<rng.int(1..<4) {
            applied.index += 1
            try applyEntry(store)
        }
        try backend.setMetaInt("consistent_index", applied.index)
        let roll = rng.int(0..<100)
        note("applied through index \(applied.index) rev \(applied.current), roll \(roll)")
        if roll < 45 {
            try committing()
            outcomes.commits += 1
            try backend.commitBatch()
        } else if roll < 60 {
            try committing()
            try backend.makeDurable()
            outcomes.durable += 1
            durable = applied
            commits = []
        } else if roll < 70 && store.compactionPending {
            try committing()
            try backend.beginBatch()
            try store.compactStep(budget: rng.int(1..<20))
            try backend.commitBatch()
        }
    }

    /// Records the state the COMMIT about to run leaves if it happens.
    mutating func committing() throws {
        if let earlier = committed[applied.index], !earlier.isSameState(as: applied) {
            throw HarnessError(description: "entry \(applied.index) applied differently in two incarnations")
        }
        committed[applied.index] = applied
        commits.append(applied)
    }

    /// One Raft entry, as the applier applies it: a put (with a lease or not), a range deletion, a transaction of
    /// several changes in one revision, a lease grant or revocation, a compaction, or an entry that changes nothing.
    mutating func applyEntry(_ store: KVStore) throws {
        // Entry `index` is the same entry in every incarnation, as a committed Raft entry is: drawn from its own
        // generator and the state before it.
        var r = SimRandom(seed: entrySeed ^ (UInt64(applied.index) &* 0x9E37_79B9_7F4A_7C15))
        let roll = r.int(0..<100)
        let rev = applied.current + 1
        if roll < 55 {
            let txn = store.beginWrite()
            let changes = roll < 40 ? 1 : r.int(2..<5)
            var model = applied
            for _ in 0..<changes {
                if r.chance(0.75) {
                    let key = r.pick(Self.keys)
                    let size = r.chance(0.1) ? r.int(1000..<6000) : r.int(0..<200)
                    var value = Data(count: size)
                    for i in 0..<size { value[i] = UInt8(truncatingIfNeeded: r.next()) }
                    let lease = !model.leases.isEmpty && r.chance(0.3) ? r.pick(model.leases.keys.sorted()) : 0
                    try txn.put(key: key, value: value, lease: lease)
                    model.put(key, value, lease: lease, at: rev)
                } else {
                    let range = Self.randomRange(&r)
                    try txn.deleteRange(range)
                    model.delete(range, at: rev)
                }
            }
            try store.end(txn)
            if txn.changeCount > 0 { model.current = rev }
            note(
                "txn \(changes) at \(rev): \(model.history.filter { $0.rev == rev }.map { "\(String(decoding: $0.key, as: UTF8.self))\($0.kv == nil ? "-" : "+")" })"
            )
            applied = model
        } else if roll < 70 {
            let range = Self.randomRange(&r)
            let txn = store.beginWrite()
            try txn.deleteRange(range)
            try store.end(txn)
            note("delete \(range) at \(rev): \(txn.changeCount)")
            applied.delete(range, at: rev)
            if txn.changeCount > 0 { applied.current = rev }
        } else if roll < 78 {
            let id = applied.index
            let ttl = Int64(r.int(5..<600))
            let s = try store.backend.writer.statement(
                "INSERT OR REPLACE INTO leases(id, ttl, remaining_ttl) VALUES(?1, ?2, 0)")
            s.bind(1, id).bind(2, ttl)
            try s.run()
            applied.leases[id] = ttl
        } else if roll < 85 {
            guard !applied.leases.isEmpty else { return }
            let id = r.pick(applied.leases.keys.sorted())
            // etcd's revocation: the lease's keys go in one revision, then the lease.
            let attached = applied.heads.filter { $0.value.lease == id }.keys.sorted(by: KeyRange.less)
            let txn = store.beginWrite()
            for key in attached {
                try txn.deleteRange(.single(key))
                applied.delete(.single(key), at: rev)
            }
            try store.end(txn)
            if txn.changeCount > 0 { applied.current = rev }
            let s = try store.backend.writer.statement("DELETE FROM leases WHERE id = ?1")
            s.bind(1, id)
            try s.run()
            applied.leases[id] = nil
        } else if roll < 93 {
            guard applied.current > applied.compacted else { return }
            let revision = r.int(in: (applied.compacted + 1)...applied.current)
            try store.scheduleCompaction(revision)
            applied.compacted = revision
        }
    }

    static func randomRange(_ r: inout SimRandom) -> KeyRange {
        let a = r.pick(keys)
        if r.chance(0.5) { return .single(a) }
        let bounds = [a, r.pick(keys)].sorted(by: KeyRange.less)
        return .interval(from: bounds[0], to: bounds[1])
    }
}
