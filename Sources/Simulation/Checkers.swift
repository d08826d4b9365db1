import Raft

/// The safety checkers. Online ones run as events happen (a violation stops the run at the first bad
/// event, which keeps traces short); the final ones run once the cluster has converged.
extension Simulation {
    /// Election safety (at most one leader per term) and leader completeness (a new leader's log holds
    /// every entry committed in an earlier term). An entry's commit term is not directly observable, so it is
    /// bounded from above by the highest term any member had when the entry was first applied: checking
    /// only entries whose bound is below the new leader's term never reports a false violation (a leader of
    /// a stale term may legitimately lack entries committed in later terms).
    mutating func observeLeader(_ id: NodeID, _ raft: RaftNode) {
        let term = raft.currentTerm
        if let existing = leaders[term] {
            if existing != id { fail("election safety: n\(existing) and n\(id) are both leaders of term \(term)") }
            return
        }
        leaders[term] = id
        stats.leadersElected += 1
        guard maxApplied > 0 else { return }
        var i = max(raft.firstIndex, 1)
        while i <= maxApplied {
            if let committed = appliedLog[i], let bound = commitTermBound[i], bound < term {
                guard let mine = raft.entry(at: i) else {
                    fail("leader completeness: n\(id), leader of term \(term), lacks committed entry \(i)")
                    return
                }
                if mine != committed {
                    fail(
                        "leader completeness: n\(id), leader of term \(term), has \(mine.index)/t\(mine.term) "
                            + "where t\(committed.term) was committed")
                    return
                }
            }
            i += 1
        }
    }

    /// State-machine safety: no two members apply different entries at the same index.
    mutating func checkApplied(_ id: NodeID, _ e: Entry) -> Bool {
        if let first = appliedLog[e.index] {
            if first != e {
                fail(
                    "state machine safety: n\(id) applies \(e.index)/t\(e.term) but \(e.index)/t\(first.term) "
                        + "was applied elsewhere")
                return false
            }
        } else {
            appliedLog[e.index] = e
            commitTermBound[e.index] = maxTermSeen
            if e.index > maxApplied { maxApplied = e.index }
            if e.index > stats.maxCommit { stats.maxCommit = e.index }
        }
        return true
    }

    mutating func finalChecks() {
        // Writes still awaiting an answer when the run stops may or may not have happened.
        for c in clients.indices {
            if let out = clients[c].outstanding {
                if case .get = out.op { continue }
                history.append(
                    HistoryEntry(client: clients[c].id, op: out.op, output: .unknown, call: out.call, ret: .max))
            }
        }
        checkLogMatching()
        guard failure == nil else { return }
        // No acknowledged write lost: each one is in the committed history at the index it was acknowledged
        // at, and every converged member has applied past it.
        let members = livenessMembers()
        for w in ackedWrites {
            guard let e = appliedLog[w.index], e.data == w.data else {
                fail("durability: acknowledged write at \(w.index) is not in the committed history")
                return
            }
            for m in members where w.index <= (probeIndex ?? 0) && nodes[m]!.kv.applied < w.index {
                fail("durability: n\(m) never applied acknowledged write \(w.index)")
                return
            }
        }
        // Replicas that applied the same prefix hold the same state.
        var byApplied: [UInt64: (NodeID, KVStore)] = [:]
        for id in members {
            let kv = nodes[id]!.kv
            if let (other, otherKV) = byApplied[kv.applied], otherKV.values != kv.values {
                fail("replica divergence: n\(other) and n\(id) applied through \(kv.applied) but differ")
                return
            }
            byApplied[kv.applied] = (id, kv)
        }
        switch LinearizabilityChecker().check(history) {
        case .linearizable:
            break
        case .violation(let key):
            fail("linearizability: the history of key \(key) has no linearization\n" + describeHistory(key: key))
        case .inconclusive(let key):
            trace("linearizability check of key \(key) exceeded its budget (not a failure)")
        }
    }

    /// Log matching: if two logs hold an entry with the same index and term, they are identical up to it.
    mutating func checkLogMatching() {
        let live = nodeIDs.filter { nodes[$0]!.isUp }
        for (ai, a) in live.enumerated() {
            for b in live[(ai + 1)...] {
                let ra = nodes[a]!.raft!
                let rb = nodes[b]!.raft!
                let lo = max(ra.firstIndex, rb.firstIndex)
                var hi = min(ra.lastIndex, rb.lastIndex)
                // Highest common index with equal terms; everything from the common start up to it must match.
                while hi >= lo, ra.term(at: hi) != rb.term(at: hi) { hi -= 1 }
                guard hi >= lo else { continue }
                var i = lo
                while i <= hi {
                    if ra.entry(at: i) != rb.entry(at: i) {
                        fail("log matching: n\(a) and n\(b) agree on \(hi)/t\(ra.term(at: hi)!) but differ at \(i)")
                        return
                    }
                    i += 1
                }
            }
        }
    }

    func describeHistory(key: UInt64) -> String {
        history.filter { $0.op.key == key }.sorted { $0.call < $1.call }.map { h in
            let ret = h.ret == .max ? "∞" : "\(h.ret / 1000)ms"
            return "  client \(h.client): \(h.op) -> \(h.output) [\(h.call / 1000)ms, \(ret)]"
        }.joined(separator: "\n")
    }
}
