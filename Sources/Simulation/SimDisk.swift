import Raft

/// One write to a member's write-ahead log.
public enum DiskRecord: Sendable {
    case hardState(HardState)
    /// Entries to store; the stored log is truncated from the first entry's index first.
    case entries([Entry])
    /// A snapshot received from the leader: replaces the whole stored log.
    case installSnapshot(Snapshot)
    /// A snapshot taken locally: entries it covers may be dropped, later ones stay.
    case localSnapshot(Snapshot)
}

/// Durable storage as the cluster simulation sees it (records, not bytes: the Raft core's persistence, not the real
/// write-ahead log; that one runs on `SimFileSystem` in its own suite, `WALPowerLossTests`): records are appended, `sync` makes everything written so far
/// durable, and a crash keeps only what was synced plus, possibly, a prefix of what was not (the OS may have
/// flushed some pages), with the last record possibly torn — a torn record fails its checksum and recovery
/// stops there, like a real WAL reader.
public protocol SimDisk {
    mutating func write(_ record: DiskRecord)
    mutating func sync()
    mutating func crash(rng: inout SimRandom)
    /// What a restarting member reads back; `applied` is set to the snapshot's index (the state machine is
    /// restored from the snapshot and replays the log after it).
    func load() -> PersistentState
}

public struct SimulatedDisk: SimDisk, Sendable {
    /// Everything folded from old synced records (kept compact so long runs stay cheap).
    private var base = PersistentState()
    private var synced: [DiskRecord] = []
    private var unsynced: [DiskRecord] = []
    public private(set) var syncs = 0
    public private(set) var tornRecords = 0
    public private(set) var lostRecords = 0

    public init() {}

    public mutating func write(_ record: DiskRecord) { unsynced.append(record) }

    public mutating func sync() {
        syncs += 1
        synced += unsynced
        unsynced.removeAll()
        if synced.count > 64 {
            for r in synced { Self.apply(r, to: &base) }
            synced.removeAll()
        }
    }

    public mutating func crash(rng: inout SimRandom) {
        var kept = rng.int(0..<(unsynced.count + 1))
        if kept > 0 && rng.chance(0.3) {
            // The last record that reached the platter is torn: recovery discards it.
            kept -= 1
            tornRecords += 1
        }
        lostRecords += unsynced.count - kept
        synced += unsynced.prefix(kept)
        unsynced.removeAll()
    }

    public func load() -> PersistentState {
        var state = base
        for r in synced { Self.apply(r, to: &state) }
        state.applied = state.snapshot?.metadata.index ?? 0
        return state
    }

    static func apply(_ record: DiskRecord, to state: inout PersistentState) {
        switch record {
        case .hardState(let hs):
            state.hardState = hs
        case .entries(let entries):
            guard let first = entries.first else { return }
            if let last = state.entries.last, first.index <= last.index {
                state.entries.removeLast(Int(last.index - first.index + 1))
            }
            state.entries += entries
        case .installSnapshot(let snap):
            state.snapshot = snap
            state.entries.removeAll()
        case .localSnapshot(let snap):
            if (state.snapshot?.metadata.index ?? 0) < snap.metadata.index { state.snapshot = snap }
            state.entries.removeAll { $0.index <= snap.metadata.index }
        }
    }
}
