/// Hand-written binary codec for messages and conf changes.
///
/// Format: one version byte, then fields as LEB128 varints and length-prefixed byte strings. It is meant to be
/// read from untrusted peers: every length is checked against the bytes actually remaining *before* anything
/// is allocated, varints are limited to ten bytes, unknown enum values and trailing bytes are rejected, and
/// nothing traps — malformed input always throws `RaftError.malformed`.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func blob(_ data: [UInt8]) {
        varint(UInt64(data.count))
        bytes.append(contentsOf: data)
    }
}

struct ByteReader {
    let bytes: [UInt8]
    var position: Int = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }
    var isAtEnd: Bool { position == bytes.count }

    mutating func u8() throws(RaftError) -> UInt8 {
        guard position < bytes.count else { throw .malformed("truncated") }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func varint() throws(RaftError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try u8()
            if shift == 63 && byte > 1 { throw .malformed("varint overflow") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw .malformed("varint too long") }
        }
    }

    /// A count of items that each take at least `minimumItemSize` bytes; rejected if the input cannot hold
    /// them, so a forged count can never make the decoder reserve gigabytes.
    mutating func count(minimumItemSize: Int) throws(RaftError) -> Int {
        let n = try varint()
        guard n <= UInt64(remaining / max(minimumItemSize, 1)) else { throw .malformed("count exceeds input") }
        return Int(n)
    }

    mutating func blob() throws(RaftError) -> [UInt8] {
        let n = try count(minimumItemSize: 1)
        defer { position += n }
        return Array(bytes[position..<position + n])
    }
}

extension Message {
    static let codecVersion: UInt8 = 1

    /// Encodes the message; see `ByteWriter` for the format.
    public func serialized() -> [UInt8] {
        var payload = 16 + context.count
        for e in entries { payload += e.data.count + 8 }
        if let s = snapshot { payload += s.data.count + 16 + 8 * (s.metadata.confState.voters.count + 4) }
        var w = ByteWriter(capacity: payload)
        w.u8(Self.codecVersion)
        w.u8(kind.rawValue)
        w.varint(from)
        w.varint(to)
        w.varint(term)
        w.varint(logTerm)
        w.varint(index)
        w.varint(commit)
        w.varint(rejectHint)
        w.u8((reject ? 1 : 0) | (snapshot != nil ? 2 : 0))
        w.blob(context)
        w.varint(UInt64(entries.count))
        for e in entries {
            w.varint(e.term)
            w.varint(e.index)
            w.u8(e.kind.rawValue)
            w.blob(e.data)
        }
        if let s = snapshot {
            w.varint(s.metadata.index)
            w.varint(s.metadata.term)
            w.varint(UInt64(s.metadata.confState.voters.count))
            for v in s.metadata.confState.voters { w.varint(v) }
            w.varint(UInt64(s.metadata.confState.learners.count))
            for l in s.metadata.confState.learners { w.varint(l) }
            w.blob(s.data)
        }
        return w.bytes
    }

    /// Decodes a message produced by `serialized()`; throws `RaftError.malformed` on anything else.
    public init(serialized: some Collection<UInt8>) throws(RaftError) {
        var r = ByteReader(Array(serialized))
        guard try r.u8() == Self.codecVersion else { throw .malformed("unsupported message version") }
        guard let kind = MessageKind(rawValue: try r.u8()) else { throw .malformed("unknown message kind") }
        self.init(kind: kind)
        from = try r.varint()
        to = try r.varint()
        term = try r.varint()
        logTerm = try r.varint()
        index = try r.varint()
        commit = try r.varint()
        rejectHint = try r.varint()
        let flags = try r.u8()
        guard flags & ~3 == 0 else { throw .malformed("unknown flags") }
        reject = flags & 1 != 0
        context = try r.blob()
        let n = try r.count(minimumItemSize: 4)
        entries.reserveCapacity(n)
        for _ in 0..<n {
            let term = try r.varint()
            let index = try r.varint()
            guard let kind = EntryKind(rawValue: try r.u8()) else { throw .malformed("unknown entry kind") }
            entries.append(Entry(term: term, index: index, kind: kind, data: try r.blob()))
        }
        if flags & 2 != 0 {
            var meta = SnapshotMetadata()
            meta.index = try r.varint()
            meta.term = try r.varint()
            var voters: [NodeID] = []
            for _ in 0..<(try r.count(minimumItemSize: 1)) { voters.append(try r.varint()) }
            var learners: [NodeID] = []
            for _ in 0..<(try r.count(minimumItemSize: 1)) { learners.append(try r.varint()) }
            meta.confState = ConfState(voters: voters, learners: learners)
            snapshot = Snapshot(metadata: meta, data: try r.blob())
        }
        guard r.isAtEnd else { throw .malformed("trailing bytes") }
    }
}

extension ConfChange {
    static let codecVersion: UInt8 = 1

    /// Encodes the change as the data of a `.confChange` entry.
    public func serialized() -> [UInt8] {
        var w = ByteWriter(capacity: 12 + context.count)
        w.u8(Self.codecVersion)
        w.u8(kind.rawValue)
        w.varint(node)
        w.blob(context)
        return w.bytes
    }

    /// Decodes the data of a `.confChange` entry; throws `RaftError.malformed` on anything else.
    public init(serialized: some Collection<UInt8>) throws(RaftError) {
        var r = ByteReader(Array(serialized))
        guard try r.u8() == Self.codecVersion else { throw .malformed("unsupported conf change version") }
        guard let kind = ConfChangeKind(rawValue: try r.u8()) else { throw .malformed("unknown conf change kind") }
        let node = try r.varint()
        let context = try r.blob()
        guard r.isAtEnd else { throw .malformed("trailing bytes") }
        self.init(kind: kind, node: node, context: context)
    }
}
