import Raft

/// A client operation against the replicated key-value store.
public enum KVOperation: Sendable, Equatable {
    case put(key: UInt64, value: Int64)
    case get(key: UInt64)
    case cas(key: UInt64, expected: Int64, new: Int64)
    /// Deletes the key; answers how many keys it deleted (0 or 1).
    case delete(key: UInt64)

    public var key: UInt64 {
        switch self {
        case .put(let k, _), .get(let k), .cas(let k, _, _), .delete(let k): k
        }
    }
}

/// What an operation returned, as the client saw it.
public enum KVOutput: Sendable, Equatable {
    case ok
    case casFailed
    /// A read's result; `nil` when the key is absent.
    case value(Int64?)
    /// A delete's result: how many keys it removed.
    case deleted(Int64)
    /// The client gave up waiting: the operation may or may not have taken effect.
    case unknown
}

/// A write command as stored in log entries: the client's identity and sequence number make re-delivered
/// proposals (duplicated messages, retries) idempotent.
struct KVCommand: Equatable {
    var client: UInt64
    var seq: UInt64
    var op: KVOperation

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                out.append(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            out.append(UInt8(v))
        }
        switch op {
        case .put(let k, let v):
            out.append(1)
            varint(client)
            varint(seq)
            varint(k)
            varint(UInt64(bitPattern: v))
        case .cas(let k, let e, let n):
            out.append(2)
            varint(client)
            varint(seq)
            varint(k)
            varint(UInt64(bitPattern: e))
            varint(UInt64(bitPattern: n))
        case .delete(let k):
            out.append(3)
            varint(client)
            varint(seq)
            varint(k)
            varint(0)
        case .get:
            preconditionFailure("reads do not go through the log")
        }
        return out
    }

    init(client: UInt64, seq: UInt64, op: KVOperation) {
        self.client = client
        self.seq = seq
        self.op = op
    }

    init?(decoding bytes: [UInt8]) {
        var i = 0
        func varint() -> UInt64? {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.count && shift < 64 {
                let b = bytes[i]
                i += 1
                result |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return result }
                shift += 7
            }
            return nil
        }
        guard let tag = bytes.first else { return nil }
        i = 1
        guard let c = varint(), let s = varint(), let k = varint(), let a = varint() else { return nil }
        client = c
        seq = s
        switch tag {
        case 1: op = .put(key: k, value: Int64(bitPattern: a))
        case 2:
            guard let b = varint() else { return nil }
            op = .cas(key: k, expected: Int64(bitPattern: a), new: Int64(bitPattern: b))
        case 3: op = .delete(key: k)
        default: return nil
        }
    }
}

/// The replicated state machine: a map plus a session table (last sequence applied per client) for
/// exactly-once application of writes.
struct KVStore: Equatable {
    var values: [UInt64: Int64] = [:]
    var sessions: [UInt64: UInt64] = [:]
    var applied: UInt64 = 0

    /// Applies a write; returns its output, or nil when it is a duplicate (already applied or superseded).
    mutating func apply(_ cmd: KVCommand) -> KVOutput? {
        if let last = sessions[cmd.client], cmd.seq <= last { return nil }
        sessions[cmd.client] = cmd.seq
        switch cmd.op {
        case .put(let k, let v):
            values[k] = v
            return .ok
        case .cas(let k, let e, let n):
            if values[k] == e {
                values[k] = n
                return .ok
            }
            return .casFailed
        case .delete(let k):
            return .deleted(values.removeValue(forKey: k) == nil ? 0 : 1)
        case .get:
            return nil
        }
    }

    /// Snapshot image (sorted, so equal stores produce equal bytes).
    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        func u64(_ v: UInt64) {
            for s in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
        }
        u64(applied)
        u64(UInt64(values.count))
        for k in values.keys.sorted() {
            u64(k)
            u64(UInt64(bitPattern: values[k]!))
        }
        u64(UInt64(sessions.count))
        for c in sessions.keys.sorted() {
            u64(c)
            u64(sessions[c]!)
        }
        return out
    }

    init() {}

    init?(decoding bytes: [UInt8]) {
        var i = 0
        func u64() -> UInt64? {
            guard i + 8 <= bytes.count else { return nil }
            var v: UInt64 = 0
            for s in 0..<8 { v |= UInt64(bytes[i + s]) << UInt64(8 * s) }
            i += 8
            return v
        }
        guard let a = u64(), let n = u64() else { return nil }
        applied = a
        for _ in 0..<n {
            guard let k = u64(), let v = u64() else { return nil }
            values[k] = Int64(bitPattern: v)
        }
        guard let m = u64() else { return nil }
        for _ in 0..<m {
            guard let c = u64(), let s = u64() else { return nil }
            sessions[c] = s
        }
    }
}
