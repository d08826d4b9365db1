import Foundation
import Simulation
import Storage
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real write-ahead log (`WriteAheadLogOn`) on `SimFileSystem`: seeded cycles of appends (conflicting suffixes
/// included), hard states, snapshot markers and segment releases, cut short by power cuts at any disk call (inside a
/// segment cut, inside recovery's repair) and by injected EIO and ENOSPC, each followed by recovery.
///
/// What recovery must return, checked against a model of the log: the state the last successful sync made durable
/// plus some prefix of the records written after it, in order (nothing synced missing or altered, nothing unsynced
/// out of order, no torn record read as data), with the same metadata; and the recovered log must take appends.
/// The seed is printed; `QUORUM_TEST_SEED` replays it.
@Suite("WAL on the simulated disk", .ownThread)
struct WALPowerLossTests {
    static let directory = "/data/member/wal"
    static let metadata: [UInt8] = [0x51, 0x55, 0x4F, 0x52]

    @Test func recoversWhatWasSyncedAfterEveryPowerCut() {
        let seed = SeededRandom.seed(for: "WAL power loss")
        var rng = SimRandom(seed: seed)
        var totals = SimFileSystemStats()
        var cycles = 0
        // `QUORUM_WAL_SIM_RUNS` runs more than the suite's 40 (75 cycles each), to hunt rather than to check.
        let runs = ProcessInfo.processInfo.environment["QUORUM_WAL_SIM_RUNS"].flatMap { Int($0) } ?? 40
        for run in 0..<runs {
            var faults = SimDiskFaults()
            if run % 3 == 2 { faults = SimDiskFaults(writeError: 0.01, syncError: 0.02, directorySyncError: 0.02) }
            var harness = Harness(seed: rng.next(), faults: faults)
            for cycle in 0..<75 {
                if let failure = harness.cycle() {
                    Issue.record(
                        Comment(
                            rawValue:
                                "seed \(seed) run \(run) cycle \(cycle): \(failure) (replay with QUORUM_TEST_SEED=\(seed))"
                        ))
                    return
                }
                cycles += 1
            }
            if let failure = harness.recover() {
                Issue.record(Comment(rawValue: "seed \(seed) run \(run), last recovery: \(failure)"))
                return
            }
            totals.add(harness.fileSystem.stats)
        }
        print(
            "WAL power loss: \(cycles) cycles, \(totals.crashes) crashes, pages kept \(totals.pagesKept) lost "
                + "\(totals.pagesLost) torn \(totals.pagesTorn), names lost \(totals.namesLost), write errors "
                + "\(totals.writeErrors), sync errors \(totals.syncErrors)")
        // The faults the suite exists for did happen.
        #expect(totals.pagesTorn > 0 && totals.pagesLost > 0 && totals.namesLost > 0)
        #expect(totals.writeErrors > 0 && totals.syncErrors > 0)
    }

    /// An fsync that fails is the caller's error, and stays one: the log refuses to sync or append again (a retried
    /// fsync would succeed on Linux without writing the dropped pages), and recovery returns what was synced before.
    @Test func aFailedFsyncIsReportedAndNeverTreatedAsDurable() throws {
        for seed: UInt64 in 1...20 {
            let fs = SimFileSystem(seed: seed)
            var options = WALOptions()
            options.segmentSize = 8192
            let log = try WriteAheadLogOn.create(
                in: Self.directory, disk: fs, metadata: Self.metadata, options: options)
            let synced = (1...3).map {
                WALEntry(index: $0, term: 1, kind: 0, data: [UInt8](repeating: UInt8($0), count: 900))
            }
            try log.append(sync: true) { e in
                for entry in synced {
                    e.appendEntry(index: entry.index, term: entry.term, kind: entry.kind, data: entry.data)
                }
            }
            fs.faults.syncError = 1
            #expect(throws: WALFailed.self) {
                try log.append(sync: true) { $0.appendEntry(index: 4, term: 1, kind: 0, data: [4, 4, 4]) }
            }
            fs.faults.syncError = 0
            #expect(log.failure != nil)
            // The disk would now report success; the log must not.
            #expect(throws: WALFailed.self) { try log.sync() }
            #expect(throws: WALFailed.self) {
                try log.append(sync: true) { $0.appendEntry(index: 5, term: 1, kind: 0, data: [5]) }
            }
            #expect(throws: WALFailed.self) { try log.saveSnapshot(WALSnapshot(index: 3, term: 1, confState: [])) }
            var crashRNG = SimRandom(seed: seed)
            fs.crash(rng: &crashRNG)
            let (_, recovery) = try WriteAheadLogOn.open(in: Self.directory, disk: fs, options: options)
            #expect(Array(recovery.entries.prefix(3)) == synced, "seed \(seed)")
            #expect(recovery.entries.count <= 4, "seed \(seed)")
        }
    }

    /// A `create` whose final directory sync failed leaves a first segment whose name a power cut may undo. A member
    /// that retries opens that log: the open must make the names durable before anything is appended, or entries the
    /// log synced and acknowledged vanish with the name. Found by the member simulation (seed 1025502444 with
    /// `--simulated-disks --disk-fault-rate 0.0003`: a leader's whole log gone after a power cut, its member
    /// re-bootstrapped empty, and the cluster committed two different entries at one index).
    @Test func aLogOpenedAfterAFailedCreateKeepsWhatItSynced() throws {
        for seed: UInt64 in 1...40 {
            let fs = SimFileSystem(seed: seed)
            fs.faults.directorySyncError = 1
            #expect(throws: (any Error).self) {
                _ = try WriteAheadLogOn.create(in: Self.directory, disk: fs, metadata: Self.metadata)
            }
            fs.faults.directorySyncError = 0
            // The retry finds the segment (its rename is in the page cache) and opens it.
            let (log, _) = try WriteAheadLogOn.open(in: Self.directory, disk: fs)
            try log.append(sync: true) { $0.appendEntry(index: 1, term: 1, kind: 0, data: [1, 2, 3]) }
            var rng = SimRandom(seed: seed)
            fs.crash(rng: &rng)
            let (_, recovery) = try WriteAheadLogOn.open(in: Self.directory, disk: fs)
            #expect(
                recovery.entries.map(\.index) == [1], "seed \(seed): a synced entry was lost with its segment's name")
        }
    }

    /// The disk itself behaves as Linux does after a failed fsync: the next fsync succeeds, yet the data written
    /// before the failure may be gone after a power cut. This is what makes retrying fsync wrong.
    @Test func theSimulatedDiskDropsPagesOfAFailedFsync() throws {
        var lostAfterRetry = 0
        for seed: UInt64 in 1...40 {
            let fs = SimFileSystem(seed: seed)
            try fs.makeDirectory("/d")
            let file = try fs.open("/d/f", writable: true, create: true, truncate: false, mode: 0o600)
            try fs.syncDirectory("/d")
            let bytes = [UInt8](repeating: 7, count: 3 * SimFileSystem.pageSize)
            try file.write(bytes, at: 0)
            fs.faults.syncError = 1
            #expect(throws: FileError.self) { try file.sync(dataOnly: true) }
            fs.faults.syncError = 0
            try file.sync(dataOnly: true)
            #expect(try file.readAll() == bytes, "the page cache still shows the data")
            var rng = SimRandom(seed: seed)
            fs.crash(rng: &rng)
            let after = try fs.open("/d/f", writable: false, create: false, truncate: false, mode: 0).readAll()
            if after != bytes { lostAfterRetry += 1 }
        }
        #expect(lostAfterRetry > 0)
    }

    @Test func anUnsyncedRenameMayBeLostASyncedOneIsNot() throws {
        var lost = 0
        for seed: UInt64 in 1...40 {
            let fs = SimFileSystem(seed: seed)
            try fs.makeDirectory("/d")
            let file = try fs.open("/d/a.tmp", writable: true, create: true, truncate: false, mode: 0o600)
            try file.write([1, 2, 3], at: 0)
            try file.sync(dataOnly: false)
            try fs.rename("/d/a.tmp", to: "/d/a")
            var rng = SimRandom(seed: seed)
            fs.crash(rng: &rng)
            if !fs.exists("/d/a") { lost += 1 }
            let again = try fs.open("/d/b.tmp", writable: true, create: true, truncate: false, mode: 0o600)
            try again.write([4], at: 0)
            try again.sync(dataOnly: false)
            try fs.rename("/d/b.tmp", to: "/d/b")
            try fs.syncDirectory("/d")
            fs.crash(rng: &rng)
            #expect(fs.exists("/d/b"))
            #expect(try fs.open("/d/b", writable: false, create: false, truncate: false, mode: 0).readAll() == [4])
        }
        #expect(lost > 0)
    }
}

extension WALPowerLossTests {
    /// A log directory that cannot be listed is not an absent log: a member that took it for one would create a log
    /// there, renaming a new first segment over its own. Found with the power going out during the listing.
    @Test func aLogThatCannotBeListedIsNotAbsent() throws {
        let fs = SimFileSystem(seed: 1)
        var options = WALOptions()
        options.segmentSize = 8192
        _ = try WriteAheadLogOn.create(in: Self.directory, disk: fs, metadata: Self.metadata, options: options)
        #expect(!WriteAheadLogOn.exists(in: "/data/other", disk: fs))
        fs.cutPower(afterOperations: 0)
        #expect(WriteAheadLogOn.exists(in: Self.directory, disk: fs))
        #expect(throws: FileError.self) {
            try WriteAheadLogOn.create(in: Self.directory, disk: fs, metadata: [1])
        }
    }
}

extension SimFileSystemStats {
    mutating func add(_ other: SimFileSystemStats) {
        crashes += other.crashes
        pagesKept += other.pagesKept
        pagesLost += other.pagesLost
        pagesTorn += other.pagesTorn
        namesLost += other.namesLost
        writeErrors += other.writeErrors
        syncErrors += other.syncErrors
    }
}

/// One record the log was asked to write, as the model applies it.
enum Record {
    case entry(WALEntry)
    case hardState(WALHardState)
    case snapshot(WALSnapshot, replacingLog: Bool)
}

/// What the log holds, by the same rules recovery applies (a later entry replaces the suffix from its index; a gap
/// is only possible after a snapshot marker beyond the log; the newest marker by index wins).
struct LogModel {
    var entries: [WALEntry] = []
    var hardState = WALHardState(term: 0, vote: 0, commit: 0)
    var snapshot: WALSnapshot?

    mutating func apply(_ record: Record) {
        switch record {
        case .entry(let entry):
            if let last = entries.last, entry.index > last.index + 1 {
                entries.removeAll()
            } else if let first = entries.first, entry.index <= entries[entries.count - 1].index {
                entries.removeSubrange(max(0, Int(entry.index) - Int(first.index))...)
            }
            entries.append(entry)
        case .hardState(let state):
            hardState = state
        case .snapshot(let marker, let replacingLog):
            if (snapshot?.index ?? 0) <= marker.index { snapshot = marker }
            // A leader's snapshot over a diverged log: Raft dropped the whole log, the suffix included.
            if replacingLog { entries.removeAll() }
            // Nothing is ever written at or below a snapshot again: keep the model small.
            entries.removeAll { $0.index <= marker.index }
        }
    }

    var lastIndex: UInt64 { max(entries.last?.index ?? 0, snapshot?.index ?? 0) }

    func matches(_ recovery: WALRecovery) -> Bool {
        let snapIndex = snapshot?.index ?? 0
        return recovery.hardState == hardState && recovery.snapshot == snapshot
            && recovery.entries == entries.filter { $0.index > snapIndex }
    }
}

/// One simulated member's log: drives the real WAL like the Raft loop does, cuts the power, recovers, checks.
struct Harness {
    typealias Log = WriteAheadLogOn<SimFileSystem>

    let fileSystem: SimFileSystem
    var rng: SimRandom
    var options = WALOptions()
    var log: Log?
    /// What the last successful sync made durable, and what was written after it.
    var durable = LogModel()
    var pending: [Record] = []
    var term: UInt64 = 1

    init(seed: UInt64, faults: SimDiskFaults) {
        rng = SimRandom(seed: seed)
        fileSystem = SimFileSystem(seed: rng.next(), faults: faults)
        options.segmentSize = [2048, 4096, 8192, 16384][rng.int(0..<4)]
        options.maxFiles = [0, 1, 3][rng.int(0..<3)]
    }

    var written: LogModel {
        var model = durable
        for record in pending { model.apply(record) }
        return model
    }

    /// Recovers (or creates) the log, runs some operations, cuts the power. Returns a failure, if any.
    mutating func cycle() -> String? {
        if let failure = recover() { return failure }
        guard let log else { return nil }
        if rng.chance(0.5) { fileSystem.cutPower(afterOperations: rng.int(0..<40)) }
        for _ in 0..<rng.int(1..<14) {
            do {
                try step(log)
            } catch {
                if !(error is WALFailed) && !fileSystem.isPowerOut {
                    return "the log threw \(error) with the power on"
                }
                if error is WALFailed {
                    guard log.failure != nil else { return "the log threw \(error) but did not stop" }
                    do {
                        try log.append(sync: true) { $0.appendHardState(durable.hardState) }
                        return "a stopped log took an append"
                    } catch {}
                }
                break
            }
        }
        fileSystem.crash(rng: &rng)
        self.log = nil
        return nil
    }

    /// Opens the log after a crash (creating it the first time), with power cuts during recovery too, and checks
    /// what it returns against the model.
    mutating func recover() -> String? {
        if log != nil { return nil }
        for _ in 0..<50 {
            if rng.chance(0.2) { fileSystem.cutPower(afterOperations: rng.int(0..<6)) }
            do {
                if !Log.exists(in: WALPowerLossTests.directory, disk: fileSystem) {
                    guard durable.lastIndex == 0 && pending.isEmpty && durable.hardState.term == 0 else {
                        return "the log vanished (durable through index \(durable.lastIndex))"
                    }
                    log = try Log.create(
                        in: WALPowerLossTests.directory, disk: fileSystem, metadata: WALPowerLossTests.metadata,
                        options: options)
                    return nil
                }
                let (opened, recovery) = try Log.open(
                    in: WALPowerLossTests.directory, disk: fileSystem, options: options)
                if let failure = check(recovery) { return failure }
                log = opened
                return nil
            } catch let error as FileError where error.errno == EIO || error.errno == ENOSPC {
                // The power went out during recovery, or an injected fault failed its repair: the member fails
                // to start, and the machine loses power before the next attempt.
                fileSystem.crash(rng: &rng)
            } catch {
                return "recovery failed: \(error)"
            }
        }
        return "recovery never completed"
    }

    /// Recovery must return the durable state plus a prefix of what followed it.
    mutating func check(_ recovery: WALRecovery) -> String? {
        guard recovery.metadata == WALPowerLossTests.metadata else { return "metadata changed" }
        var model = durable
        var candidates = [model]
        for record in pending {
            model.apply(record)
            candidates.append(model)
        }
        // Longest first: a state that is also reachable with fewer records is the same state.
        guard let match = candidates.reversed().first(where: { $0.matches(recovery) }) else {
            return
                "recovered \(describe(recovery)); durable was \(describe(durable)), \(pending.count) records after it"
        }
        durable = match
        pending = []
        term = max(term, durable.hardState.term, durable.entries.last?.term ?? 0)
        return nil
    }

    func describe(_ recovery: WALRecovery) -> String {
        "entries \(recovery.entries.first?.index ?? 0)...\(recovery.entries.last?.index ?? 0) "
            + "hard state \(recovery.hardState) snapshot \(recovery.snapshot?.index ?? 0) "
            + "repaired \(recovery.repairedTail ?? "-")"
    }

    func describe(_ model: LogModel) -> String {
        "entries \(model.entries.first?.index ?? 0)...\(model.entries.last?.index ?? 0) "
            + "hard state \(model.hardState) snapshot \(model.snapshot?.index ?? 0)"
    }

    /// One thing the Raft loop does with its log.
    mutating func step(_ log: Log) throws {
        let current = written
        // Raft never writes at or below its commit index, which a snapshot marker never passes.
        let commit = max(current.hardState.commit, current.snapshot?.index ?? 0)
        let last = current.lastIndex
        let snapIndex = current.snapshot?.index ?? 0
        let roll = rng.int(0..<100)
        if roll < 65 {
            var first = last + 1
            if last > commit && rng.chance(0.15) {
                // A new leader overwrites the uncommitted suffix.
                first = commit + 1 + UInt64(rng.int(0..<Int(last - commit)))
                term += 1
            }
            var records: [Record] = []
            for index in first..<(first + UInt64(rng.int(0..<7))) {
                let size = rng.chance(0.1) ? rng.int(0..<5000) : rng.int(0..<300)
                var data = [UInt8](repeating: 0, count: size)
                for i in data.indices { data[i] = UInt8(truncatingIfNeeded: rng.next()) }
                if rng.chance(0.2) { data = [UInt8](repeating: 0, count: size) }  // zeros are data too
                records.append(.entry(WALEntry(index: index, term: term, kind: UInt8(rng.int(0..<4)), data: data)))
            }
            let newLast = records.isEmpty ? last : first + UInt64(records.count) - 1
            if records.isEmpty || rng.chance(0.6) {
                let newCommit = max(commit, min(newLast, commit + UInt64(rng.int(0..<8))))
                records.append(.hardState(WALHardState(term: term, vote: UInt64(rng.int(0..<4)), commit: newCommit)))
            }
            let sync = rng.chance(0.7)
            pending += records
            try log.append(sync: sync) { encoder in
                for record in records {
                    switch record {
                    case .entry(let e): encoder.appendEntry(index: e.index, term: e.term, kind: e.kind, data: e.data)
                    case .hardState(let h): encoder.appendHardState(h)
                    case .snapshot: break
                    }
                }
            }
            if sync { synced() }
        } else if roll < 78 {
            try log.sync()
            synced()
        } else if roll < 95 {
            guard commit > snapIndex else { return }
            let index = snapIndex + 1 + UInt64(rng.int(0..<Int(commit - snapIndex)))
            // A local snapshot carries the term of the entry it ends at, as the member records it.
            let entryTerm = current.entries.first(where: { $0.index == index })?.term ?? term
            try saveSnapshot(log, WALSnapshot(index: index, term: entryTerm, confState: [UInt8(index & 0xFF), 1, 2]))
            if rng.chance(0.6) { try log.releaseSegments(through: index) }
        } else {
            // A snapshot received from the leader: beyond the log, or (a new leader's) inside an uncommitted suffix
            // this log holds from an older term, which Raft then drops whole. The hard state commits it.
            var index = last + 1 + UInt64(rng.int(0..<5))
            if last > commit && rng.chance(0.5) {
                index = commit + 1 + UInt64(rng.int(0..<Int(last - commit)))
                term += 1
            }
            try saveSnapshot(log, WALSnapshot(index: index, term: term, confState: [9]), replacingLog: true)
            let state = WALHardState(term: term, vote: 0, commit: index)
            pending.append(.hardState(state))
            try log.append(sync: true) { $0.appendHardState(state) }
            synced()
        }
    }

    mutating func saveSnapshot(_ log: Log, _ marker: WALSnapshot, replacingLog: Bool = false) throws {
        pending.append(.snapshot(marker, replacingLog: replacingLog))
        try log.saveSnapshot(marker, replacingLog: replacingLog)
        synced()
    }

    mutating func synced() {
        durable = written
        pending = []
    }
}
