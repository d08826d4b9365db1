import Raft

/// Encodes a configuration into a WAL snapshot marker (the log treats it as opaque bytes). Package-visible so
/// that the WAL fuzz target decodes recovered markers with the code recovery uses.
package enum ConfStateCodec {
    package static func encode(_ conf: ConfState) -> [UInt8] {
        var out: [UInt8] = [1]
        for list in [conf.voters, conf.learners] {
            append(UInt64(list.count), to: &out)
            for id in list { append(id, to: &out) }
        }
        return out
    }

    package static func decode(_ bytes: [UInt8]) -> ConfState? {
        guard bytes.first == 1 else { return nil }
        var offset = 1
        func next() -> UInt64? {
            guard offset + 8 <= bytes.count else { return nil }
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
            offset += 8
            return v
        }
        var lists: [[UInt64]] = []
        for _ in 0..<2 {
            guard let count = next(), count < 1 << 20 else { return nil }
            var list: [UInt64] = []
            for _ in 0..<count {
                guard let id = next() else { return nil }
                list.append(id)
            }
            lists.append(list)
        }
        return ConfState(voters: lists[0], learners: lists[1])
    }

    private static func append(_ v: UInt64, to out: inout [UInt8]) {
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
}
