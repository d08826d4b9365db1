#if canImport(Glibc)
    import Glibc
#endif

/// The durable, ordered log every write passes through before it is acknowledged.
///
/// A directory of segment files `SEQ-FIRSTINDEX.wal` (hex), each preallocated and filled with checksummed
/// records. Each segment opens with the metadata, the current hard state and the newest snapshot marker, so
/// that segments wholly behind a snapshot can be deleted without losing them. One `append` call is one
/// `pwrite` and at most one `fdatasync`: the caller batches (group commit).
///
/// Not thread-safe: one owner (the Raft loop) drives it.
///
/// Generic over the `Disk` so that the simulator runs this very code on a disk that loses unsynced writes and fails
/// fsync from a seed; a member uses `WriteAheadLog`, this log on `PosixDisk`.
///
/// Once a write or sync fails the log refuses all further work (`WALFailed`): after a failed fsync Linux drops the
/// dirty pages and a retried fsync succeeds without writing them, so nothing written since the last good sync can
/// be trusted again in this process. The member fails; the next start recovers what really reached the disk.
public final class WriteAheadLogOn<D: Disk> {
    public typealias Options = WALOptions
    public typealias Stats = WALStats

    public let directory: String
    public let options: Options
    public private(set) var stats = Stats()
    /// The error that stopped the log, if one did.
    public private(set) var failure: WALFailed?

    private let disk: D
    private let metadata: [UInt8]
    private var segment: D.Handle
    private var segmentSequence: UInt64
    private var writeOffset: Int
    private var lastIndex: UInt64
    private var hardState: WALHardState
    private var snapshot: WALSnapshot?
    private var scratch: [UInt8] = []

    private init(
        disk: D, directory: String, options: Options, metadata: [UInt8], segment: D.Handle, sequence: UInt64,
        writeOffset: Int, lastIndex: UInt64, hardState: WALHardState, snapshot: WALSnapshot?
    ) {
        self.disk = disk
        self.directory = directory
        self.options = options
        self.metadata = metadata
        self.segment = segment
        self.segmentSequence = sequence
        self.writeOffset = writeOffset
        self.lastIndex = lastIndex
        self.hardState = hardState
        self.snapshot = snapshot
    }

    /// Whether `directory` already holds a log.
    ///
    /// A directory that exists but cannot be listed (EIO, EMFILE) counts as holding one: the caller then opens it
    /// and reports the error. Answering "no" would make a member create a log over its own, whose first segment has
    /// the same name as the new one and is replaced by the rename. The simulated disk found it, with the power
    /// going out while a restarting member listed its log directory.
    public static func exists(in directory: String, disk: D) -> Bool {
        guard disk.exists(directory) else { return false }
        do {
            return try disk.list(directory).contains { $0.hasSuffix(".wal") }
        } catch {
            return true
        }
    }

    /// Creates a new log holding `entries` and `hardState` from the start. Fails if one already exists.
    ///
    /// The first segment is written whole (metadata, hard state, entries) under a temporary name, synced, then
    /// renamed into place: a log either does not exist or has its initial state, never one without the other.
    public static func create(
        in directory: String, disk: D, metadata: [UInt8], entries: [WALEntry] = [],
        hardState: WALHardState = WALHardState(term: 0, vote: 0, commit: 0), options: Options = Options()
    ) throws -> WriteAheadLogOn {
        try disk.makeDirectory(directory)
        // Listed with errors thrown, not through `exists`: a log is never created unless its absence is certain.
        if try disk.list(directory).contains(where: { $0.hasSuffix(".wal") }) {
            throw FileError(operation: "create wal", path: directory, errno: EEXIST)
        }
        let (file, offset) = try startSegment(
            in: directory, disk: disk, sequence: 0, firstIndex: 1, options: options, metadata: metadata,
            hardState: hardState, snapshot: nil, entries: entries)
        try disk.syncDirectory(directory)
        return WriteAheadLogOn(
            disk: disk, directory: directory, options: options, metadata: metadata, segment: file, sequence: 0,
            writeOffset: offset, lastIndex: entries.last?.index ?? 0, hardState: hardState, snapshot: nil)
    }

    /// Opens an existing log, replays it, and positions appends after the last intact record.
    /// An incomplete final write is cut off (reported in `repairedTail`); damage anywhere else throws `WALCorruption`.
    public static func open(in directory: String, disk: D, options: Options = Options()) throws -> (
        WriteAheadLogOn, WALRecovery
    ) {
        let segments = try segmentNames(in: directory, disk: disk)
        guard !segments.isEmpty else { throw FileError(operation: "open wal", path: directory, errno: ENOENT) }
        // Segments released before a crash and not yet removed.
        for file in try disk.list(directory) where file.hasSuffix(".wal" + releasedSuffix) {
            try disk.discard(directory + "/" + file)
        }
        // The segments' names are made durable before anything is appended: a `create` whose last step (the
        // directory sync) failed leaves a first segment whose name a power cut may still undo, and a member that
        // retried would append, fsync and acknowledge into a file that could vanish — its whole log with it. (The
        // member simulation found it: a member re-bootstrapped from nothing after such a power cut.)
        try disk.syncDirectory(directory)
        var state = ReplayState()
        var lastEnd = 0
        // Segments kept for `maxFiles` but wholly covered by the newest snapshot are not replayed: the last segment
        // knows that snapshot (each segment starts with the snapshot current when it was cut).
        var first = 0
        if segments.count > 1 {
            var newest = ReplayState()
            _ = try replay(
                segment: directory + "/" + segments[segments.count - 1].file, disk: disk, isLast: true, into: &newest)
            if let snapshot = newest.snapshot {
                while first < segments.count - 1 && segments[first + 1].firstIndex <= snapshot.index + 1 { first += 1 }
            }
        }
        for (position, name) in segments.enumerated() where position >= first {
            let isLast = position == segments.count - 1
            lastEnd = try replay(segment: directory + "/" + name.file, disk: disk, isLast: isLast, into: &state)
        }
        guard let metadata = state.metadata else {
            throw WALCorruption(file: directory + "/" + segments[0].file, offset: 0, reason: "no metadata record")
        }
        let last = segments[segments.count - 1]
        let path = directory + "/" + last.file
        let file = try disk.open(path, writable: true, create: false, truncate: false, mode: 0o600)
        var repaired: String? = nil
        if let torn = state.tornAt {
            repaired = "\(path) at offset \(torn)"
            // Zero what follows the intact records so the next recovery sees a clean end.
            try file.truncate(to: lastEnd)
            file.preallocate(length: options.segmentSize)
            try file.sync(dataOnly: false)
        }
        let lastIndex = state.entries.last?.index ?? state.snapshot?.index ?? 0
        let log = WriteAheadLogOn(
            disk: disk, directory: directory, options: options, metadata: metadata, segment: file,
            sequence: last.sequence,
            writeOffset: lastEnd, lastIndex: lastIndex, hardState: state.hardState, snapshot: state.snapshot)
        let snapIndex = state.snapshot?.index ?? 0
        let entries = state.entries.drop(while: { $0.index <= snapIndex })
        if let first = entries.first, first.index > snapIndex + 1 {
            throw WALCorruption(
                file: path, offset: 0,
                reason: "log starts at index \(first.index) but the newest snapshot is at \(snapIndex)")
        }
        return (
            log,
            WALRecovery(
                metadata: metadata, hardState: state.hardState, snapshot: state.snapshot, entries: Array(entries),
                repairedTail: repaired)
        )
    }

    /// Appends a batch built by `fill`; with `sync`, it is durable when this returns.
    public func append(sync: Bool, _ fill: (inout WALEncoder) -> Void) throws {
        if let failure { throw failure }
        var encoder = WALEncoder(reusing: scratch)
        fill(&encoder)
        if let index = encoder.lastIndex { lastIndex = index }
        if let state = encoder.hardState { hardState = state }
        let count = encoder.entryCount
        let bytes = encoder.buffer
        scratch = []
        try write(bytes, sync: sync)
        stats.entriesWritten += count
        scratch = bytes
        if writeOffset >= options.segmentSize { try cut() }
    }

    /// Records that the state machine durably holds everything through `snapshot.index`.
    ///
    /// `replacingLog` says the snapshot is a leader's, installed because this log diverged from the leader's (Raft
    /// installs one only then, and drops its whole log): recovery forgets every entry written before the marker.
    /// Without it, a follower that took a leader's snapshot over a suffix from an older term and crashed before the
    /// leader's next entries overwrote that suffix came back with it past the snapshot, a log whose terms go down,
    /// which Raft refuses to start from. The member simulation found it (seed 5003309 on simulated disks with faults).
    /// An explicit record rather than comparing terms at replay: the entry at the snapshot's index may sit in a
    /// segment the replay skips.
    public func saveSnapshot(_ snapshot: WALSnapshot, replacingLog: Bool = false) throws {
        if let failure { throw failure }
        var encoder = WALEncoder(reusing: [])
        encoder.appendSnapshot(snapshot, replacingLog: replacingLog)
        try write(encoder.buffer, sync: true)
        self.snapshot = snapshot
        if snapshot.index > lastIndex || replacingLog { lastIndex = snapshot.index }
    }

    /// Deletes segments whose entries all lie at or before `index` (a snapshot's index), oldest first, as long as
    /// more than `options.maxFiles` segments exist.
    ///
    /// Only ever a run of the oldest: the first segment that must stay ends the deletion. Segment names are not
    /// ordered by first index (a segment cut after a new leader overwrote an uncommitted suffix starts lower than
    /// the one before it), so a later segment can qualify while an earlier one does not; deleting it left a gap in
    /// the sequence that recovery refuses, and the member could not restart. The simulated disk found it (seed
    /// 6413759 of `WALPowerLossTests`).
    ///
    /// A released segment is renamed out of the log at once (`.wal.released`: a rename costs nothing) and discarded
    /// (`Disk.discard`), which on POSIX unlinks it off the caller's thread: the unlink of 64 MiB of cached pages held
    /// the Raft loop 50-120 ms. A crash may leave the renamed file (`open` discards it) or undo the rename (the
    /// segment is then released again).
    public func releaseSegments(through index: UInt64) throws {
        let segments = try Self.segmentNames(in: directory, disk: disk)
        guard segments.count > 1, options.maxFiles > 0 else { return }
        var excess = segments.count - options.maxFiles
        for i in 0..<(segments.count - 1) {
            guard excess > 0, segments[i + 1].firstIndex <= index + 1 else { break }
            let path = directory + "/" + segments[i].file
            try disk.rename(path, to: path + Self.releasedSuffix)
            try disk.discard(path + Self.releasedSuffix)
            excess -= 1
        }
    }

    /// What a released segment is renamed to before it is discarded: no longer a segment (`.wal`) for any listing.
    static var releasedSuffix: String { ".released" }

    /// Forces everything written so far to disk.
    public func sync() throws {
        if let failure { throw failure }
        let start = monotonicNanoseconds()
        if options.fsync { try failing { try segment.sync(dataOnly: true) } }
        recordSync(since: start)
    }

    private func write(_ bytes: [UInt8], sync: Bool) throws {
        try failing { try bytes.withUnsafeBytes { try segment.write($0, at: writeOffset) } }
        writeOffset += bytes.count
        stats.bytesWritten += bytes.count
        if sync { try self.sync() }
    }

    /// Runs a write or sync of the log; if it throws, the log stops for good (see the type's comment): a short or
    /// failed write leaves unknown bytes at `writeOffset`, a failed fsync leaves unknown pages undurable.
    private func failing<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            let stopped = WALFailed(directory: directory, cause: "\(error)")
            failure = stopped
            throw stopped
        }
    }

    private func recordSync(since start: UInt64) {
        let elapsed = monotonicNanoseconds() - start
        stats.syncs += 1
        stats.syncNanoseconds += elapsed
        stats.lastSyncNanoseconds = elapsed
    }

    private func cut() throws {
        let next = segmentSequence + 1
        let (file, offset) = try failing { () throws -> (D.Handle, Int) in
            try segment.sync(dataOnly: true)
            let started = try Self.startSegment(
                in: directory, disk: disk, sequence: next, firstIndex: lastIndex + 1, options: options,
                metadata: metadata, hardState: hardState, snapshot: snapshot)
            try disk.syncDirectory(directory)
            return started
        }
        segment = file
        segmentSequence = next
        writeOffset = offset
    }

    private static func startSegment(
        in directory: String, disk: D, sequence: UInt64, firstIndex: UInt64, options: Options, metadata: [UInt8],
        hardState: WALHardState, snapshot: WALSnapshot?, entries: [WALEntry] = []
    ) throws -> (D.Handle, Int) {
        let name = directory + "/" + segmentFileName(sequence: sequence, firstIndex: firstIndex)
        let temporary = name + ".tmp"
        let file = try disk.open(temporary, writable: true, create: true, truncate: true, mode: 0o600)
        file.preallocate(length: options.segmentSize)
        var encoder = WALEncoder(reusing: [])
        encoder.appendMetadata(metadata)
        for e in entries { encoder.appendEntry(index: e.index, term: e.term, kind: e.kind, data: e.data) }
        encoder.appendHardState(hardState)
        if let snapshot { encoder.appendSnapshot(snapshot) }
        try file.write(encoder.buffer, at: 0)
        try file.sync(dataOnly: false)
        try disk.rename(temporary, to: name)
        return (file, encoder.buffer.count)
    }

    // MARK: - Segment names

    struct SegmentName {
        var sequence: UInt64
        var firstIndex: UInt64
        var file: String
    }

    static func segmentFileName(sequence: UInt64, firstIndex: UInt64) -> String {
        hex16(sequence) + "-" + hex16(firstIndex) + ".wal"
    }

    static func segmentNames(in directory: String, disk: D) throws -> [SegmentName] {
        var result: [SegmentName] = []
        for file in try disk.list(directory) where file.hasSuffix(".wal") {
            let stem = file.dropLast(4).split(separator: "-")
            guard stem.count == 2, let seq = UInt64(stem[0], radix: 16), let first = UInt64(stem[1], radix: 16) else {
                continue
            }
            result.append(SegmentName(sequence: seq, firstIndex: first, file: file))
        }
        result.sort { $0.sequence < $1.sequence }
        for i in result.indices.dropFirst() where result[i].sequence != result[i - 1].sequence + 1 {
            throw WALCorruption(
                file: directory + "/" + result[i].file, offset: 0,
                reason: "segment sequence gap after \(result[i - 1].file)")
        }
        return result
    }

    // MARK: - Replay

    struct ReplayState {
        var metadata: [UInt8]?
        var hardState = WALHardState(term: 0, vote: 0, commit: 0)
        var snapshot: WALSnapshot?
        var entries: [WALEntry] = []
        var tornAt: Int?

        mutating func add(_ entry: WALEntry) {
            // A later record at an index at or below the current end replaces everything from that index on:
            // that is how a follower's conflicting suffix, truncated by the leader, disappears.
            if let last = entries.last, entry.index > last.index + 1 {
                // Only a snapshot installed in between can skip indexes; `open` checks one covers the gap.
                entries.removeAll()
            } else if let first = entries.first, entry.index <= entries[entries.count - 1].index {
                if entry.index < first.index {
                    entries.removeAll()
                } else {
                    entries.removeSubrange(Int(entry.index - first.index)...)
                }
            }
            entries.append(entry)
        }
    }

    /// Replays one segment; returns the offset after its last intact record.
    static func replay(segment path: String, disk: D, isLast: Bool, into state: inout ReplayState) throws -> Int {
        let bytes = try disk.open(path, writable: false, create: false, truncate: false, mode: 0).readAll()
        return try bytes.withUnsafeBytes { raw throws -> Int in
            var offset = 0
            while offset + WALFraming.headerSize <= raw.count {
                let length = Int(readUInt32(raw, offset))
                let crc = readUInt32(raw, offset + 4)
                if length == 0 && crc == 0 {
                    // Preallocated space: the end, provided nothing but zeros follows.
                    if let garbage = firstNonZero(raw, from: offset) {
                        if isLast {
                            state.tornAt = offset
                            return offset
                        }
                        throw WALCorruption(file: path, offset: garbage, reason: "unexpected data after end of log")
                    }
                    return offset
                }
                let bodyStart = offset + WALFraming.headerSize
                guard length <= WALFraming.maxBodySize, bodyStart + length <= raw.count else {
                    if isLast {
                        state.tornAt = offset
                        return offset
                    }
                    throw WALCorruption(file: path, offset: offset, reason: "record length \(length) runs past the end")
                }
                let body = UnsafeRawBufferPointer(rebasing: raw[bodyStart..<(bodyStart + length)])
                var checksum = CRC32C()
                checksum.update(buffer: body)
                if checksum.value != crc {
                    if isLast && isTorn(raw, recordStart: offset, recordEnd: bodyStart + length) {
                        state.tornAt = offset
                        return offset
                    }
                    throw WALCorruption(
                        file: path, offset: offset,
                        reason: "checksum mismatch (stored \(hex8(crc)), computed \(hex8(checksum.value)))")
                }
                try decode(body: body, path: path, offset: offset, into: &state)
                offset = bodyStart + length
            }
            if offset < raw.count, isLast, firstNonZero(raw, from: offset) != nil { state.tornAt = offset }
            return offset
        }
    }

    /// A write interrupted by a crash shows as a record whose bytes partly never reached disk: a zeroed
    /// 512-byte sector inside it, or nothing intact after it. A bad record followed by good ones is corruption.
    ///
    /// A sector that never reached the disk holds its old content: records synced before, then the zeros of
    /// preallocated space. Everything from the bad record on was written after the last sync, so in such a sector
    /// the record's part and all that follows it in the sector are zero. That is the test (besides the record's own
    /// part being 8 zero bytes or more), and it also catches a record that reaches only a few bytes into a lost
    /// sector: a header split 2 + 6 across a sector boundary whose first sector the disk lost while keeping later
    /// ones, the data after the record included. The simulated disk found that case (`WALPowerLossTests`, seed
    /// 3491090915): the log refused to open after a power cut that lost nothing it had synced.
    static func isTorn(_ raw: UnsafeRawBufferPointer, recordStart: Int, recordEnd: Int) -> Bool {
        let sector = 512
        var s = (recordStart / sector) * sector
        while s < recordEnd {
            let lo = max(s, recordStart)
            let hi = min(s + sector, recordEnd)
            if hi - lo >= 8 && (lo..<hi).allSatisfy({ raw[$0] == 0 }) { return true }
            if (lo..<min(s + sector, raw.count)).allSatisfy({ raw[$0] == 0 }) { return true }
            s += sector
        }
        // Nothing but zeros after it: it was the last write.
        return firstNonZero(raw, from: recordEnd) == nil
    }

    static func firstNonZero(_ raw: UnsafeRawBufferPointer, from: Int) -> Int? {
        var i = from
        while i < raw.count {
            if raw[i] != 0 { return i }
            i += 1
        }
        return nil
    }

    static func decode(body: UnsafeRawBufferPointer, path: String, offset: Int, into state: inout ReplayState) throws {
        var reader = WALBodyReader(bytes: body, offset: 0)
        guard let type = reader.uint8().flatMap(WALRecordType.init(rawValue:)) else {
            throw WALCorruption(file: path, offset: offset, reason: "unknown record type")
        }
        func fail() -> WALCorruption { WALCorruption(file: path, offset: offset, reason: "short \(type) record") }
        switch type {
        case .metadata:
            let metadata = reader.rest()
            if let existing = state.metadata, existing != metadata {
                throw WALCorruption(file: path, offset: offset, reason: "metadata differs from earlier segments")
            }
            state.metadata = metadata
        case .entry:
            guard let index = reader.uint64(), let term = reader.uint64(), let kind = reader.uint8() else {
                throw fail()
            }
            // Recovery and the log after it count on `index + 1` (the next entry, the next segment's first index):
            // no log written by a member comes near 2^64 - 1, so an index there is damage, refused as such rather
            // than left to overflow.
            if index == .max {
                throw WALCorruption(file: path, offset: offset, reason: "entry index \(index) out of range")
            }
            state.add(WALEntry(index: index, term: term, kind: kind, data: reader.rest()))
        case .hardState:
            guard let term = reader.uint64(), let vote = reader.uint64(), let commit = reader.uint64() else {
                throw fail()
            }
            state.hardState = WALHardState(term: term, vote: vote, commit: commit)
        case .snapshot, .logReplacedBySnapshot:
            guard let index = reader.uint64(), let term = reader.uint64() else { throw fail() }
            if index == .max {
                throw WALCorruption(file: path, offset: offset, reason: "snapshot index \(index) out of range")
            }
            if type == .logReplacedBySnapshot { state.entries.removeAll() }
            let snapshot = WALSnapshot(index: index, term: term, confState: reader.rest())
            if (state.snapshot?.index ?? 0) <= index { state.snapshot = snapshot }
        }
    }
}

/// The log on the real file system: what a member, the tools and the tests outside the simulator use.
public typealias WriteAheadLog = WriteAheadLogOn<PosixDisk>

/// What a member does with its open log, whatever disk it is on: the member holds it as `any RaftLog`, so one
/// member type runs on POSIX and on a simulated disk. A handful of calls per Raft cycle go through it; the per-record
/// work stays inside the concrete, specialised log.
public protocol RaftLog: AnyObject {
    func append(sync: Bool, _ fill: (inout WALEncoder) -> Void) throws
    func saveSnapshot(_ snapshot: WALSnapshot, replacingLog: Bool) throws
    func releaseSegments(through index: UInt64) throws
    var stats: WALStats { get }
}

extension WriteAheadLogOn: RaftLog {}

extension WriteAheadLogOn where D == PosixDisk {
    /// Whether `directory` already holds a log.
    public static func exists(in directory: String) -> Bool {
        exists(in: directory, disk: PosixDisk())
    }

    /// Creates a new log on the real file system (see `create(in:disk:metadata:entries:hardState:options:)`).
    public static func create(
        in directory: String, metadata: [UInt8], entries: [WALEntry] = [],
        hardState: WALHardState = WALHardState(term: 0, vote: 0, commit: 0), options: Options = Options()
    ) throws -> WriteAheadLog {
        try create(
            in: directory, disk: PosixDisk(), metadata: metadata, entries: entries, hardState: hardState,
            options: options)
    }

    /// Opens an existing log on the real file system (see `open(in:disk:options:)`).
    public static func open(in directory: String, options: Options = Options()) throws -> (
        WriteAheadLog, WALRecovery
    ) {
        try open(in: directory, disk: PosixDisk(), options: options)
    }
}

func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 16 - s.count)) + s
}

func hex8(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}

/// Nanoseconds on the monotonic clock, for measuring fsync latency only (never for logic).
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
