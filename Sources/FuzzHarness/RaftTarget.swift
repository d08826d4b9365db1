import Raft

/// Peer messages stepped into a real Raft member: what a buggy, stale or hostile (but authenticated) member can
/// make another one do. The `peer` target decodes such messages; this one acts on them, through `RaftNode.step`,
/// ticks and Readies worked through as `MemberNode` works through them (`RaftMember`).
///
/// The bytes: one byte choosing the scenario (`RaftScenario`: the member's role, log and options), then records of
/// one operation byte, a two-byte big-endian length and that many bytes of a Raft message in the member's codec
/// (`Message(serialized:)`, as each message of a `RaftBatch` is decoded; a record that does not decode steps
/// nothing). The operation byte (`Operation`) says what else happens around the message: ticks, a client's write,
/// a leader transfer, the snapshot restore held back, a compaction.
///
/// What must hold: nothing traps, and the invariants of `RaftInvariants` and `DurableState` hold after every step,
/// ending with a restart from the durable state.
enum RaftTarget {
    static func run(_ bytes: [UInt8]) {
        guard let selector = bytes.first else { return }
        var member = RaftMember(RaftScenario(selector: selector))
        var records = Records(bytes.dropFirst())
        while let (operation, payload) = records.next() {
            member.perform(operation, message: try? Message(serialized: payload))
        }
        member.drain(holdingSnapshot: false)
        member.restart()
    }

    /// What happens around one message, bit by bit.
    struct Operation {
        let byte: UInt8

        /// Ticks before the message (0 to 7): elections, heartbeats, check-quorum, lease expiry.
        var ticks: Int { Int(byte & 7) }
        /// A client writes (the operation byte is the data) and reads before the message.
        var proposes: Bool { byte & 0x08 != 0 }
        /// The apply loop is slow: a leader's snapshot stays in restore, and its Ready waits, until an operation
        /// without this bit.
        var holdsSnapshot: Bool { byte & 0x10 != 0 }
        /// The application compacts its log at the applied index after the message.
        var compacts: Bool { byte & 0x20 != 0 }
        /// Snapshots sent since the last report failed to reach their peer (else they arrived).
        var snapshotsFail: Bool { byte & 0x40 != 0 }
        /// An operator moves leadership to member 2 before the message.
        var transfers: Bool { byte & 0x80 != 0 }
    }

    /// The records after the scenario byte; a truncated last record keeps the bytes it has.
    struct Records {
        private var bytes: ArraySlice<UInt8>

        init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

        mutating func next() -> (Operation, ArraySlice<UInt8>)? {
            guard let operation = bytes.popFirst() else { return nil }
            let high = Int(bytes.popFirst() ?? 0)
            let low = Int(bytes.popFirst() ?? 0)
            let payload = bytes.prefix(high << 8 | low)
            bytes = bytes.dropFirst(payload.count)
            return (Operation(byte: operation), payload)
        }
    }
}

extension RaftMember {
    mutating func perform(_ operation: RaftTarget.Operation, message: Message?) {
        for _ in 0..<operation.ticks { tick() }
        if operation.proposes { propose([operation.byte]) }
        if operation.transfers { transferLeadership(to: 2) }
        drain(holdingSnapshot: operation.holdsSnapshot)
        if let message { step(message) }
        drain(holdingSnapshot: operation.holdsSnapshot)
        reportSnapshots(succeeded: !operation.snapshotsFail)
        if operation.compacts { compact() }
        drain(holdingSnapshot: operation.holdsSnapshot)
    }
}
