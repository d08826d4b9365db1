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
public final class WriteAheadLog {
    public struct Options: Sendable {
        /// A segment is cut once it grows past this size.
        public var segmentSize: Int = 64 << 20
        /// Off only with etcd's `--unsafe-no-fsync` (and in tests and benchmarks of the no-disk case).
        public var fsync: Bool = true
        /// etcd's `--max-wals`: how many segment files `releaseSegments` leaves, counting those a snapshot made
        /// obsolete (removed oldest first beyond this number); 0 keeps them all. Segments still needed stay whatever
        /// the number.
        public var maxFiles: Int = 1
        public init() {}
    }

    /// Counters for metrics and benchmarks.
    public struct Stats: Sendable {
        public var syncs: Int = 0
        public var syncNanoseconds: UInt64 = 0
        public var bytesWritten: Int = 0
        public var entriesWritten: Int = 0
        public var lastSyncNanoseconds: UInt64 = 0
        public init() {}
    }

    public let directory: String
    public let options: Options
    public private(set) var stats = Stats()

    private let metadata: [UInt8]
    private var segment: File
    private var segmentSequence: UInt64
    private var writeOffset: Int
    private var lastIndex: UInt64
    private var hardState: WALHardState
    private var snapshot: WALSnapshot?
    private var scratch: [UInt8] = []

    private init(
        directory: String, options: Options, metadata: [UInt8], segment: File, sequence: UInt64, writeOffset: Int,
        lastIndex: UInt64, hardState: WALHardState, snapshot: WALSnapshot?
    ) {
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
    public static func exists(in directory: String) -> Bool {
        ((try? FileSystem.list(directory)) ?? []).contains { $0.hasSuffix(".wal") }
    }

    /// Creates a new log holding `entries` and `hardState` from the start. Fails if one already exists.
    ///
    /// The first segment is written whole (metadata, hard state, entries) under a temporary name, synced, then
    /// renamed into place: a log either does not exist or has its initial state, never one without the other.
    public static func create(
        in directory: String, metadata: [UInt8], entries: [WALEntry] = [],
        hardState: WALHardState = WALHardState(term: 0, vote: 0, commit: 0), options: Options = Options()
    ) throws -> WriteAheadLog {
        try FileSystem.makeDirectory(directory)
        if exists(in: directory) { throw FileError(operation: "create wal", path: directory, errno: EEXIST) }
        let (file, offset) = try startSegment(
            in: directory, sequence: 0, firstIndex: 1, options: options, metadata: metadata, hardState: hardState,
            snapshot: nil, entries: entries)
        try FileSystem.syncDirectory(directory)
        return WriteAheadLog(
            directory: directory, options: options, metadata: metadata, segment: file, sequence: 0,
            writeOffset: offset, lastIndex: entries.last?.index ?? 0, hardState: hardState, snapshot: nil)
    }

    /// Opens an existing log, replays it, and positions appends after the last intact record.
    /// An incomplete final write is cut off (reported in `repairedTail`); damage anywhere else throws `WALCorruption`.
    public static func open(in directory: String, options: Options = Options()) throws -> (
        WriteAheadLog, WALRecovery
    ) {
        let segments = try segmentNames(in: directory)
        guard !segments.isEmpty else { throw FileError(operation: "open wal", path: directory, errno: ENOENT) }
        var state = ReplayState()
        var lastEnd = 0
        // Segments kept for `maxFiles` but wholly covered by the newest snapshot are not replayed: the last segment
        // knows that snapshot (each segment starts with the snapshot current when it was cut).
        var first = 0
        if segments.count > 1 {
            var newest = ReplayState()
            _ = try replay(segment: directory + "/" + segments[segments.count - 1].file, isLast: true, into: &newest)
            if let snapshot = newest.snapshot {
                while first < segments.count - 1 && segments[first + 1].firstIndex <= snapshot.index + 1 { first += 1 }
            }
        }
        for (position, name) in segments.enumerated() where position >= first {
            let isLast = position == segments.count - 1
            lastEnd = try replay(segment: directory + "/" + name.file, isLast: isLast, into: &state)
        }
        guard let metadata = state.metadata else {
            throw WALCorruption(file: directory + "/" + segments[0].file, offset: 0, reason: "no metadata record")
        }
        let last = segments[segments.count - 1]
        let path = directory + "/" + last.file
        let file = try File(path: path, writable: true)
        var repaired: String? = nil
        if let torn = state.tornAt {
            repaired = "\(path) at offset \(torn)"
            // Zero what follows the intact records so the next recovery sees a clean end.
            try file.truncate(to: lastEnd)
            file.preallocate(length: options.segmentSize)
            try file.sync(dataOnly: false)
        }
        let lastIndex = state.entries.last?.index ?? state.snapshot?.index ?? 0
        let log = WriteAheadLog(
            directory: directory, options: options, metadata: metadata, segment: file, sequence: last.sequence,
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
    public func saveSnapshot(_ snapshot: WALSnapshot) throws {
        var encoder = WALEncoder(reusing: [])
        encoder.appendSnapshot(snapshot)
        try write(encoder.buffer, sync: true)
        self.snapshot = snapshot
        if snapshot.index > lastIndex { lastIndex = snapshot.index }
    }

    /// Deletes segments whose entries all lie at or before `index` (a snapshot's index), oldest first, as long as
    /// more than `options.maxFiles` segments exist.
    public func releaseSegments(through index: UInt64) throws {
        let segments = try Self.segmentNames(in: directory)
        guard segments.count > 1, options.maxFiles > 0 else { return }
        var excess = segments.count - options.maxFiles
        for i in 0..<(segments.count - 1) where excess > 0 && segments[i + 1].firstIndex <= index + 1 {
            try FileSystem.remove(directory + "/" + segments[i].file)
            excess -= 1
        }
    }

    /// Forces everything written so far to disk.
    public func sync() throws {
        let start = monotonicNanoseconds()
        if options.fsync { try segment.sync() }
        recordSync(since: start)
    }

    private func write(_ bytes: [UInt8], sync: Bool) throws {
        try bytes.withUnsafeBytes { try segment.write($0, at: writeOffset) }
        writeOffset += bytes.count
        stats.bytesWritten += bytes.count
        if sync { try self.sync() }
    }

    private func recordSync(since start: UInt64) {
        let elapsed = monotonicNanoseconds() - start
        stats.syncs += 1
        stats.syncNanoseconds += elapsed
        stats.lastSyncNanoseconds = elapsed
    }

    private func cut() throws {
        try segment.sync()
        let next = segmentSequence + 1
        let (file, offset) = try Self.startSegment(
            in: directory, sequence: next, firstIndex: lastIndex + 1, options: options, metadata: metadata,
            hardState: hardState, snapshot: snapshot)
        try FileSystem.syncDirectory(directory)
        segment = file
        segmentSequence = next
        writeOffset = offset
    }

    private static func startSegment(
        in directory: String, sequence: UInt64, firstIndex: UInt64, options: Options, metadata: [UInt8],
        hardState: WALHardState, snapshot: WALSnapshot?, entries: [WALEntry] = []
    ) throws -> (File, Int) {
        let name = directory + "/" + segmentFileName(sequence: sequence, firstIndex: firstIndex)
        let temporary = name + ".tmp"
        let file = try File(path: temporary, writable: true, create: true, truncate: true, mode: 0o600)
        file.preallocate(length: options.segmentSize)
        var encoder = WALEncoder(reusing: [])
        encoder.appendMetadata(metadata)
        for e in entries { encoder.appendEntry(index: e.index, term: e.term, kind: e.kind, data: e.data) }
        encoder.appendHardState(hardState)
        if let snapshot { encoder.appendSnapshot(snapshot) }
        try file.write(encoder.buffer, at: 0)
        try file.sync(dataOnly: false)
        try FileSystem.rename(temporary, to: name)
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

    static func segmentNames(in directory: String) throws -> [SegmentName] {
        var result: [SegmentName] = []
        for file in try FileSystem.list(directory) where file.hasSuffix(".wal") {
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
    static func replay(segment path: String, isLast: Bool, into state: inout ReplayState) throws -> Int {
        let bytes = try File(path: path, writable: false).readAll()
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
    static func isTorn(_ raw: UnsafeRawBufferPointer, recordStart: Int, recordEnd: Int) -> Bool {
        let sector = 512
        var s = (recordStart / sector) * sector
        while s < recordEnd {
            let lo = max(s, recordStart)
            let hi = min(s + sector, recordEnd)
            if hi - lo >= 8 && (lo..<hi).allSatisfy({ raw[$0] == 0 }) { return true }
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
        case .snapshot:
            guard let index = reader.uint64(), let term = reader.uint64() else { throw fail() }
            if index == .max {
                throw WALCorruption(file: path, offset: offset, reason: "snapshot index \(index) out of range")
            }
            let snapshot = WALSnapshot(index: index, term: term, confState: reader.rest())
            if (state.snapshot?.index ?? 0) <= index { state.snapshot = snapshot }
        }
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
