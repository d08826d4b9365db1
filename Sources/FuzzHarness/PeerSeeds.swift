import EtcdProto
import Foundation
import Node
import Raft
import Storage

/// Seed inputs for the peer target made from a real member's WAL (`quorum-fuzz seeds-peer WALDIR OUTDIR`, run by
/// scripts/fuzz-seeds.sh): the member's own entries, configuration and hard state, wrapped in the Raft messages
/// and peer envelopes members exchange (appends, heartbeats, votes and their answers, a snapshot).
public enum PeerSeeds {
    public static func write(fromWAL walDirectory: String, to directory: String) throws {
        var options = WriteAheadLog.Options()
        options.fsync = false
        let (_, recovery) = try WriteAheadLog.open(in: walDirectory, options: options)
        let entries = recovery.entries.compactMap { e in
            EntryKind(rawValue: e.kind).map { Entry(term: e.term, index: e.index, kind: $0, data: e.data) }
        }
        let term = recovery.hardState.term
        let last = entries.last?.index ?? 0
        let voters = entries.compactMap { e in
            e.kind == .confChange ? (try? ConfChange(serialized: e.data)).map(\.node) : nil
        }
        var messages: [Raft.Message] = []
        for start in stride(from: 0, to: entries.count, by: 3) {
            let chunk = Array(entries[start..<min(start + 3, entries.count)])
            messages.append(
                Raft.Message(
                    kind: .append, from: 1, to: 2, term: term, logTerm: term, index: chunk[0].index - 1,
                    entries: chunk, commit: recovery.hardState.commit))
        }
        messages += [
            Raft.Message(kind: .appendResponse, from: 2, to: 1, term: term, index: last),
            Raft.Message(kind: .appendResponse, from: 2, to: 1, term: term, index: last, reject: true, rejectHint: 1),
            Raft.Message(kind: .heartbeat, from: 1, to: 2, term: term, commit: last),
            Raft.Message(kind: .heartbeatResponse, from: 2, to: 1, term: term),
            Raft.Message(kind: .requestPreVote, from: 2, to: 1, term: term + 1, logTerm: term, index: last),
            Raft.Message(kind: .requestVote, from: 2, to: 1, term: term + 1, logTerm: term, index: last),
            Raft.Message(kind: .requestVoteResponse, from: 1, to: 2, term: term + 1, reject: true),
            Raft.Message(kind: .readIndex, from: 2, to: 1, term: term, context: Array("read-1".utf8)),
            Raft.Message(kind: .timeoutNow, from: 1, to: 2, term: term, context: Raft.Message.transferContext),
            Raft.Message(
                kind: .snapshot, from: 1, to: 2, term: term,
                snapshot: Snapshot(
                    metadata: SnapshotMetadata(index: last, term: term, confState: ConfState(voters: voters)),
                    data: [])),
        ]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (n, message) in messages.enumerated() {
            var batch = Quorumpb_RaftBatch()
            batch.clusterID = 0x1234_5678_9abc_def0
            batch.from = message.from
            batch.messages = [Data(message.serialized())]
            let bytes: [UInt8] = try batch.serializedBytes()
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/batch-\(n)"))
        }
        var chunk = Quorumpb_SnapshotChunk()
        chunk.clusterID = 0x1234_5678_9abc_def0
        chunk.from = 1
        chunk.message = Data(messages[messages.count - 1].serialized())
        chunk.data = Data("snapshot bytes".utf8)
        try Data(try chunk.serializedBytes() as [UInt8]).write(to: URL(fileURLWithPath: directory + "/snapshot-chunk"))
        var renew = Quorumpb_LeaseRenewRequest()
        renew.clusterID = 0x1234_5678_9abc_def0
        renew.ids = [0x694d_7f3c_1a2b_0001, 7]
        try Data(try renew.serializedBytes() as [UInt8]).write(to: URL(fileURLWithPath: directory + "/lease-renew"))
    }
}
