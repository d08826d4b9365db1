import Foundation

/// Values of history rows, by row (revision, sub), within a byte budget: the key index holds no values, so that a
/// member's memory does not grow with its data (a 32 GiB database in well under 2 GiB), and the values read most
/// stay here instead of being fetched from SQLite on every read.
///
/// Keyed by row, not by key: a row's value never changes, so an entry can never be stale and nothing has to be
/// invalidated when a key is written; the apply loop removes the superseded head's value only to give its bytes back
/// to live values.
///
/// The policy is CLOCK (second chance), not strict LRU: reads run under the store's lock, and with LRU every hit
/// would relink list nodes (writes to three entries, and a node object or index bookkeeping per value); with CLOCK a
/// hit sets one flag in place, and eviction sweeps a hand over the slots, sparing once each value read since the
/// hand last passed. Values enter unreferenced, so a one-off scan over cold keys is evicted before values that were
/// read again. A final class so that a read path holding the store's `MemoryState` can mark hits while it walks the
/// key map (no overlapping access to the state struct); only ever touched under the store's lock, which is why it
/// is `@unchecked Sendable`, as `SortedKeyMap` is.
final class ValueCache: @unchecked Sendable {
    /// Bytes charged per cached value on top of its length: the slot (40), the index entry with the dictionary's
    /// spare capacity (~32) and, for values longer than `Data`'s 14 inline bytes, the storage object and the
    /// allocator's headers (~56). An estimate, so that a budget of many tiny values still bounds real memory.
    static let entryOverhead = 128

    struct RowID: Hashable {
        var main: Int64
        var sub: Int64
    }

    private struct Slot {
        var row: RowID
        var value: Data
        var referenced: Bool
        var occupied: Bool
    }

    /// Bytes the cache may hold (values plus `entryOverhead` each); 0 caches nothing.
    let budget: Int
    /// Bytes held now (never above `budget`).
    private(set) var bytes = 0
    private(set) var hits = 0
    private(set) var misses = 0
    private var slots: [Slot] = []
    private var freeSlots: [Int] = []
    private var index: [RowID: Int] = [:]
    private var hand = 0

    init(budget: Int) {
        self.budget = max(0, budget)
    }

    var count: Int { index.count }

    /// The value of row (main, sub), marking it recently used.
    @inline(__always)
    func value(main: Int64, sub: Int64) -> Data? {
        guard let slot = index[RowID(main: main, sub: sub)] else {
            misses &+= 1
            return nil
        }
        hits &+= 1
        slots[slot].referenced = true
        return slots[slot].value
    }

    /// The value of row (main, sub) if it is still in `slot` (where `insert` put it): a head read's hit costs an
    /// array access instead of hashing the row. A slot since reused for another row, or emptied, is a miss.
    @inline(__always)
    func value(slot: Int32, main: Int64, sub: Int64) -> Data? {
        let i = Int(slot)
        guard i >= 0, i < slots.count, slots[i].occupied, slots[i].row.main == main, slots[i].row.sub == sub else {
            return value(main: main, sub: sub)
        }
        hits &+= 1
        slots[i].referenced = true
        return slots[i].value
    }

    /// Caches a row's value, evicting others as the budget requires, and returns its slot (-1 when not cached: a
    /// value larger than the whole budget).
    @discardableResult
    func insert(main: Int64, sub: Int64, _ value: Data) -> Int32 {
        let cost = value.count + Self.entryOverhead
        guard cost <= budget else { return -1 }
        let row = RowID(main: main, sub: sub)
        if let existing = index[row] { return Int32(existing) }
        while bytes + cost > budget { evictOne() }
        let slot = Slot(row: row, value: value, referenced: false, occupied: true)
        let i: Int
        if let free = freeSlots.popLast() {
            slots[free] = slot
            i = free
        } else {
            i = slots.count
            slots.append(slot)
        }
        index[row] = i
        bytes += cost
        return Int32(i)
    }

    func remove(main: Int64, sub: Int64) {
        guard let slot = index.removeValue(forKey: RowID(main: main, sub: sub)) else { return }
        free(slot)
    }

    func removeAll() {
        slots = []
        freeSlots = []
        index = [:]
        bytes = 0
        hand = 0
    }

    private func free(_ slot: Int) {
        bytes -= slots[slot].value.count + Self.entryOverhead
        slots[slot] = Slot(row: RowID(main: 0, sub: 0), value: Data(), referenced: false, occupied: false)
        freeSlots.append(slot)
    }

    /// Advances the hand to the first unreferenced value, clearing the flags it passes, and evicts it. Called only
    /// while something is cached, so at most two sweeps.
    private func evictOne() {
        while true {
            if hand >= slots.count { hand = 0 }
            let i = hand
            hand += 1
            guard slots[i].occupied else { continue }
            if slots[i].referenced {
                slots[i].referenced = false
            } else {
                index.removeValue(forKey: slots[i].row)
                free(i)
                return
            }
        }
    }
}
