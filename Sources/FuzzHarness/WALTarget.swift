import EtcdProto
import Node
import Raft
import Storage

/// A member's write-ahead log as recovery finds it on disk after a crash, a power cut or tampering: the bytes are
/// a segment file (after one mode byte), opened by `WriteAheadLog.open` as at start-up, its metadata and snapshot
/// marker decoded as `MemberNode` decodes them, its entries as the apply loop does.
///
/// Mode byte: bit 0 recomputes every record's CRC-32C before writing the file, so that the fuzzer reaches the
/// record bodies past the checksums; bit 1 cuts the file in two segments (at the offset in the next two bytes).
///
/// What must hold: a log that opens reopens to the same recovery with nothing left to repair, and takes an
/// append that the next recovery returns last.
enum WALTarget {
    static func run(_ input: [UInt8]) {
        guard let mode = input.first else { return }
        var bytes = Array(input.dropFirst())
        var cut: Int? = nil
        if mode & 2 != 0, bytes.count >= 2 {
            cut = min(Int(bytes[0]) << 8 | Int(bytes[1]), bytes.count - 2)
            bytes.removeFirst(2)
        }
        if mode & 1 != 0 { fixChecksums(&bytes, from: 0, to: cut ?? bytes.count) }
        if mode & 1 != 0, let cut { fixChecksums(&bytes, from: cut, to: bytes.count) }
        let directory = Scratch.path("wal")
        try? FileSystem.makeDirectory(directory)
        if let cut {
            Scratch.write(Array(bytes[..<cut]), to: directory + "/0000000000000000-0000000000000001.wal")
            let first = bytes.count > cut ? UInt64(bytes[cut]) + 1 : 1
            Scratch.write(Array(bytes[cut...]), to: directory + "/0000000000000001-" + hex16(first) + ".wal")
        } else {
            Scratch.write(bytes, to: directory + "/0000000000000000-0000000000000001.wal")
        }
        var options = WriteAheadLog.Options()
        options.segmentSize = 1 << 16
        options.fsync = false
        guard let (log, recovery) = try? WriteAheadLog.open(in: directory, options: options) else { return }
        interpret(recovery)
        var last = recovery.entries.last?.index ?? recovery.snapshot?.index ?? 0
        // The repaired log reopens as it was, with nothing more to repair.
        _ = log
        guard let (_, again) = try? WriteAheadLog.open(in: directory, options: options) else {
            fatalError("a log that opened does not reopen")
        }
        precondition(again.repairedTail == nil, "a repaired log needed repair again: \(again.repairedTail ?? "")")
        precondition(again.entries == recovery.entries, "a reopened log has other entries")
        precondition(again.hardState == recovery.hardState, "a reopened log has another hard state")
        precondition(again.snapshot == recovery.snapshot, "a reopened log has another snapshot marker")
        guard last < UInt64.max else { return }
        // An append lands after what was recovered.
        last += 1
        do {
            let (appending, _) = try WriteAheadLog.open(in: directory, options: options)
            try appending.append(sync: false) { $0.appendEntry(index: last, term: 1, kind: 0, data: [1, 2, 3]) }
        } catch {
            fatalError("a log that opened does not take an append: \(error)")
        }
        guard let (_, appended) = try? WriteAheadLog.open(in: directory, options: options) else {
            fatalError("a log does not reopen after an append")
        }
        precondition(appended.entries.last?.index == last, "an appended entry is not the last one recovered")
    }

    /// What `MemberNode` does with a recovered log: the node metadata, the snapshot marker's configuration, the
    /// entries' requests and configuration changes.
    static func interpret(_ recovery: WALRecovery) {
        _ = try? Quorumpb_NodeMetadata(serializedBytes: recovery.metadata)
        if let snapshot = recovery.snapshot { _ = ConfStateCodec.decode(snapshot.confState) }
        for entry in recovery.entries {
            guard let kind = EntryKind(rawValue: entry.kind) else { continue }
            PeerTarget.entry(Entry(term: entry.term, index: entry.index, kind: kind, data: entry.data))
        }
    }

    /// A segment name's 16-digit hexadecimal field.
    static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// Rewrites each record's checksum (framing: `u32 length | u32 crc32c(body) | body`, little-endian) so that
    /// records whose length fits are accepted as intact.
    static func fixChecksums(_ bytes: inout [UInt8], from start: Int, to end: Int) {
        var offset = start
        while offset + 8 <= end {
            let length =
                Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16
                | Int(bytes[offset + 3]) << 24
            if length == 0 { return }
            let bodyStart = offset + 8
            guard bodyStart + length <= end else { return }
            let crc = CRC32C.checksum(bytes[bodyStart..<(bodyStart + length)])
            for i in 0..<4 { bytes[offset + 4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
            offset = bodyStart + length
        }
    }
}
