/// One completed (or abandoned) client operation.
public struct HistoryEntry: Sendable, Equatable {
    public var client: UInt64
    public var op: KVOperation
    public var output: KVOutput
    public var call: SimTime
    /// `SimTime.max` when the client gave up (`output == .unknown`).
    public var ret: SimTime

    public init(client: UInt64, op: KVOperation, output: KVOutput, call: SimTime, ret: SimTime) {
        self.client = client
        self.op = op
        self.output = output
        self.call = call
        self.ret = ret
    }
}

/// Outcome of a linearizability check.
public enum LinearizabilityResult: Sendable, Equatable {
    case linearizable
    /// The history of `key` admits no linearization.
    case violation(key: UInt64)
    /// The search exceeded its budget (never happens with the simulator's history sizes in practice).
    case inconclusive(key: UInt64)
}

/// Wing & Gong's linearizability search with Lowe's memoization, as popularized by porcupine.
///
/// The history is partitioned per key (a KV history is linearizable iff each key's is, P-compositionality),
/// then each partition is checked by depth-first search over a linked list of call/return events: an
/// operation may be linearized when its call is reached, if the sequential model accepts it; reaching a
/// return whose operation was not linearized backtracks. States already explored — the set of linearized
/// operations plus the register's value — are cached, which keeps the search polynomial on realistic histories.
/// Abandoned operations (`.unknown`) return at infinity, so they may take effect anywhere after their call,
/// or never (linearized last, where nothing observes them).
public struct LinearizabilityChecker: Sendable {
    public var maxSteps: Int

    public init(maxSteps: Int = 2_000_000) { self.maxSteps = maxSteps }

    public func check(_ history: [HistoryEntry]) -> LinearizabilityResult {
        var byKey: [UInt64: [HistoryEntry]] = [:]
        for h in history { byKey[h.op.key, default: []].append(h) }
        for key in byKey.keys.sorted() {
            switch checkRegister(byKey[key]!) {
            case .some(true): continue
            case .some(false): return .violation(key: key)
            case .none: return .inconclusive(key: key)
            }
        }
        return .linearizable
    }

    /// Sequential specification of one register. Returns the new value, or nil if the output is impossible.
    static func step(_ state: Int64?, _ op: KVOperation, _ output: KVOutput) -> Int64?? {
        switch op {
        case .put(_, let v):
            return .some(v)
        case .get:
            if case .value(let v) = output { return v == state ? .some(state) : nil }
            return .some(state)
        case .cas(_, let e, let n):
            switch output {
            case .ok: return state == e ? .some(n) : nil
            case .casFailed: return state != e ? .some(state) : nil
            default: return .some(state == e ? n : state)
            }
        case .delete:
            if case .deleted(let count) = output { return (count == 1) == (state != nil) ? .some(nil) : nil }
            return .some(nil)
        }
    }

    struct Node {
        var isCall: Bool
        var op: Int
        var prev: Int
        var next: Int
        var match: Int
    }

    struct CacheKey: Hashable {
        var bits: [UInt64]
        var state: Int64?
    }

    /// true = linearizable, false = not, nil = budget exhausted.
    func checkRegister(_ ops: [HistoryEntry]) -> Bool? {
        let n = ops.count
        if n == 0 { return true }
        // Events sorted by time; at equal times calls come first (treating touching intervals as concurrent,
        // which can only make the check more permissive, never report a false violation).
        var events: [(time: SimTime, isCall: Bool, op: Int)] = []
        events.reserveCapacity(2 * n)
        for (i, o) in ops.enumerated() {
            events.append((o.call, true, i))
            events.append((o.ret, false, i))
        }
        events.sort { a, b in
            if a.time != b.time { return a.time < b.time }
            if a.isCall != b.isCall { return a.isCall }
            return a.op < b.op
        }
        // Doubly linked list with a sentinel head at index 0.
        var list: [Node] = [Node(isCall: false, op: -1, prev: -1, next: 1, match: -1)]
        var callNode = [Int](repeating: 0, count: n)
        var retNode = [Int](repeating: 0, count: n)
        for (k, e) in events.enumerated() {
            let idx = k + 1
            list.append(
                Node(isCall: e.isCall, op: e.op, prev: idx - 1, next: idx + 1 <= events.count ? idx + 1 : -1, match: -1)
            )
            if e.isCall { callNode[e.op] = idx } else { retNode[e.op] = idx }
        }
        list[list.count - 1].next = -1
        for i in 0..<n {
            list[callNode[i]].match = retNode[i]
        }

        func lift(_ c: Int) {
            let r = list[c].match
            list[list[c].prev].next = list[c].next
            if list[c].next >= 0 { list[list[c].next].prev = list[c].prev }
            list[list[r].prev].next = list[r].next
            if list[r].next >= 0 { list[list[r].next].prev = list[r].prev }
        }
        func unlift(_ c: Int) {
            let r = list[c].match
            list[list[r].prev].next = r
            if list[r].next >= 0 { list[list[r].next].prev = r }
            list[list[c].prev].next = c
            if list[c].next >= 0 { list[list[c].next].prev = c }
        }

        var bits = [UInt64](repeating: 0, count: (n + 63) / 64)
        var cache: Set<CacheKey> = []
        var stack: [(node: Int, state: Int64?)] = []
        var state: Int64? = nil
        var entry = list[0].next
        var steps = 0
        while list[0].next >= 0 {
            steps += 1
            if steps > maxSteps { return nil }
            guard entry >= 0 else { return false }
            let node = list[entry]
            if node.isCall {
                let o = ops[node.op]
                if let newState = Self.step(state, o.op, o.output) {
                    var newBits = bits
                    newBits[node.op / 64] |= 1 << UInt64(node.op % 64)
                    let key = CacheKey(bits: newBits, state: newState)
                    if cache.insert(key).inserted {
                        stack.append((entry, state))
                        state = newState
                        bits = newBits
                        lift(entry)
                        entry = list[0].next
                        continue
                    }
                }
                entry = node.next
            } else {
                guard let (top, prevState) = stack.popLast() else { return false }
                state = prevState
                let op = list[top].op
                bits[op / 64] &= ~(1 << UInt64(op % 64))
                unlift(top)
                entry = list[top].next
            }
        }
        return true
    }
}
