/// A Raft log entry as the write-ahead log stores it. `kind` and `data` are opaque to the log.
public struct WALEntry: Sendable, Equatable {
    public var index: UInt64
    public var term: UInt64
    public var kind: UInt8
    public var data: [UInt8]

    public init(index: UInt64, term: UInt64, kind: UInt8, data: [UInt8]) {
        self.index = index
        self.term = term
        self.kind = kind
        self.data = data
    }
}

/// Raft's durable vote state: it must reach disk before any message that depends on it leaves the member.
public struct WALHardState: Sendable, Equatable {
    public var term: UInt64
    public var vote: UInt64
    public var commit: UInt64

    public init(term: UInt64, vote: UInt64, commit: UInt64) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// Marks that the state machine holds everything up to `index`, so the log before it may be released.
/// `confState` is the membership at that index, opaque to the log.
public struct WALSnapshot: Sendable, Equatable {
    public var index: UInt64
    public var term: UInt64
    public var confState: [UInt8]

    public init(index: UInt64, term: UInt64, confState: [UInt8]) {
        self.index = index
        self.term = term
        self.confState = confState
    }
}

/// What a log held when it was opened.
public struct WALRecovery: Sendable {
    /// Identity written at creation (member and cluster ids), opaque to the log.
    public var metadata: [UInt8]
    public var hardState: WALHardState
    /// The newest snapshot marker, if any.
    public var snapshot: WALSnapshot?
    /// The logical log after the snapshot marker: later records overwrite earlier ones from their index on.
    public var entries: [WALEntry]
    /// Set when an incomplete last write was cut off: "file at offset".
    public var repairedTail: String?
}

/// How a log is laid out and synced.
public struct WALOptions: Sendable {
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
public struct WALStats: Sendable {
    public var syncs: Int = 0
    public var syncNanoseconds: UInt64 = 0
    public var bytesWritten: Int = 0
    public var entriesWritten: Int = 0
    public var lastSyncNanoseconds: UInt64 = 0
    public init() {}
}

/// Thrown by a log whose write or sync failed, then by every later call on it: what it wrote since its last good
/// sync may not be on disk, whatever a retried fsync would say. Only reopening (a restart's recovery) continues.
public struct WALFailed: Error, CustomStringConvertible, Sendable {
    public var directory: String
    /// The error of the write or sync that failed.
    public var cause: String

    public init(directory: String, cause: String) {
        self.directory = directory
        self.cause = cause
    }

    public var description: String { "wal: \(directory) stopped after a failed write or sync: \(cause)" }
}

/// Thrown when a record other than the last write is damaged: recovering past it could lose or reorder writes.
public struct WALCorruption: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var offset: Int
    public var reason: String

    public init(file: String, offset: Int, reason: String) {
        self.file = file
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "wal: corrupt record in \(file) at offset \(offset): \(reason)" }
}

enum WALRecordType: UInt8 {
    case metadata = 1
    case entry = 2
    case hardState = 3
    case snapshot = 4
    /// A leader's snapshot installed over this log: the marker, and every entry written before it is void.
    case logReplacedBySnapshot = 5
}

/// Record framing: `u32 length | u32 crc32c(body) | body`, body = `u8 type | payload`, little-endian.
/// A zero length marks the unwritten (preallocated) remainder of a segment.
enum WALFraming {
    static let headerSize = 8
    static let maxBodySize = 256 << 20
}

/// Appends records into a reusable buffer; one buffer becomes one `write` and at most one `fdatasync`.
public struct WALEncoder: ~Copyable {
    var buffer: [UInt8]
    var lastIndex: UInt64?
    var hardState: WALHardState?
    var entryCount = 0

    init(reusing buffer: consuming [UInt8]) {
        buffer.removeAll(keepingCapacity: true)
        self.buffer = buffer
    }

    public mutating func appendEntry(index: UInt64, term: UInt64, kind: UInt8, data: [UInt8]) {
        let start = beginRecord(.entry)
        putUInt64(index)
        putUInt64(term)
        buffer.append(kind)
        buffer.append(contentsOf: data)
        endRecord(start)
        lastIndex = index
        entryCount += 1
    }

    public mutating func appendHardState(_ state: WALHardState) {
        let start = beginRecord(.hardState)
        putUInt64(state.term)
        putUInt64(state.vote)
        putUInt64(state.commit)
        endRecord(start)
        hardState = state
    }

    mutating func appendSnapshot(_ snapshot: WALSnapshot, replacingLog: Bool = false) {
        let start = beginRecord(replacingLog ? .logReplacedBySnapshot : .snapshot)
        putUInt64(snapshot.index)
        putUInt64(snapshot.term)
        buffer.append(contentsOf: snapshot.confState)
        endRecord(start)
    }

    mutating func appendMetadata(_ metadata: [UInt8]) {
        let start = beginRecord(.metadata)
        buffer.append(contentsOf: metadata)
        endRecord(start)
    }

    private mutating func beginRecord(_ type: WALRecordType) -> Int {
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: WALFraming.headerSize))
        buffer.append(type.rawValue)
        return start
    }

    private mutating func endRecord(_ start: Int) {
        let bodyStart = start + WALFraming.headerSize
        let length = UInt32(buffer.count - bodyStart)
        let crc = buffer.withUnsafeBytes { raw in
            var c = CRC32C()
            c.update(buffer: UnsafeRawBufferPointer(rebasing: raw[bodyStart...]))
            return c.value
        }
        for i in 0..<4 {
            buffer[start + i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(i)))
            buffer[start + 4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i)))
        }
    }

    private mutating func putUInt64(_ v: UInt64) {
        for i in 0..<8 { buffer.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
}

/// Reads little-endian fields out of a record body.
struct WALBodyReader {
    let bytes: UnsafeRawBufferPointer
    var offset: Int

    mutating func uint64() -> UInt64? {
        guard offset + 8 <= bytes.count else { return nil }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        offset += 8
        return v
    }

    mutating func uint8() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
    }
}

func readUInt32(_ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
    UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
}
