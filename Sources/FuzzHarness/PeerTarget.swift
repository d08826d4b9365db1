import EtcdProto
import Node
import Raft
import SwiftProtobuf

/// What another member sends on the peer port, as the peer services decode it: the bytes are one gRPC message of
/// `quorumpb.Raft/Messages` (a `RaftBatch` of encoded Raft messages), of `Snapshot` (a `SnapshotChunk` whose first
/// one carries the snapshot's Raft message) or of `LeaseRenew`. Each Raft message is decoded with the member's
/// codec and must encode back to a message that decodes to itself; what its entries carry is decoded as the apply
/// loop decodes it (a `RaftRequest`, or a `ConfChange` with its context).
enum PeerTarget {
    static func run(_ bytes: [UInt8]) {
        if let batch = try? Quorumpb_RaftBatch(serializedBytes: bytes) {
            for encoded in batch.messages { raftMessage(Array(encoded)) }
        }
        if let chunk = try? Quorumpb_SnapshotChunk(serializedBytes: bytes) {
            raftMessage(Array(chunk.message))
        }
        _ = try? Quorumpb_LeaseRenewRequest(serializedBytes: bytes)
        // The bytes may also be a Raft message on their own (the codec below the protobuf envelope).
        raftMessage(bytes)
    }

    static func raftMessage(_ encoded: [UInt8]) {
        guard let message = try? Raft.Message(serialized: encoded) else { return }
        let again: Raft.Message
        do {
            again = try Raft.Message(serialized: message.serialized())
        } catch {
            fatalError("a decoded Raft message does not decode after encoding: \(error)")
        }
        precondition(again == message, "a Raft message changed through encode and decode")
        for entry in message.entries { self.entry(entry) }
        if let snapshot = message.snapshot {
            _ = snapshot.metadata.confState
        }
    }

    static func entry(_ entry: Entry) {
        switch entry.kind {
        case .normal:
            guard !entry.data.isEmpty, let request = try? Quorumpb_RaftRequest(serializedBytes: entry.data) else {
                return
            }
            _ = try? request.serializedBytes() as [UInt8]
        case .confChange:
            guard let change = try? ConfChange(serialized: entry.data) else { return }
            precondition(
                (try? ConfChange(serialized: change.serialized())) == change,
                "a conf change changed through encode and decode")
            if !change.context.isEmpty { _ = try? Quorumpb_ConfChangeContext(serializedBytes: change.context) }
        }
    }
}
