import Raft
import Simulation
import Testing

@Suite("Linearizability checker")
struct LinearizabilityCheckerTests {
    func h(_ c: UInt64, _ op: KVOperation, _ out: KVOutput, _ call: SimTime, _ ret: SimTime) -> HistoryEntry {
        HistoryEntry(client: c, op: op, output: out, call: call, ret: ret)
    }

    @Test func acceptsConcurrentOverlap() {
        let history = [
            h(1, .put(key: 0, value: 1), .ok, 0, 10),
            h(2, .get(key: 0), .value(nil), 1, 5),  // overlaps the put: may see the old value
            h(3, .get(key: 0), .value(1), 6, 12),
        ]
        #expect(LinearizabilityChecker().check(history) == .linearizable)
    }

    @Test func rejectsStaleRead() {
        let history = [
            h(1, .put(key: 0, value: 1), .ok, 0, 10),
            h(2, .get(key: 0), .value(nil), 11, 12),  // starts after the put returned: must see it
        ]
        #expect(LinearizabilityChecker().check(history) == .violation(key: 0))
    }

    @Test func unknownWritesMayOrMayNotHappen() {
        let took = [
            h(1, .put(key: 0, value: 1), .unknown, 0, .max),
            h(2, .get(key: 0), .value(1), 20, 21),
        ]
        let didNot = [
            h(1, .put(key: 0, value: 1), .unknown, 0, .max),
            h(2, .get(key: 0), .value(nil), 20, 21),
        ]
        #expect(LinearizabilityChecker().check(took) == .linearizable)
        #expect(LinearizabilityChecker().check(didNot) == .linearizable)
    }

    @Test func compareAndSwapSemantics() {
        let ok = [
            h(1, .put(key: 0, value: 1), .ok, 0, 1),
            h(2, .cas(key: 0, expected: 1, new: 2), .ok, 2, 3),
            h(3, .cas(key: 0, expected: 1, new: 3), .casFailed, 4, 5),
            h(1, .get(key: 0), .value(2), 6, 7),
        ]
        let bad = [
            h(1, .put(key: 0, value: 1), .ok, 0, 1),
            h(2, .cas(key: 0, expected: 1, new: 2), .ok, 2, 3),
            h(3, .cas(key: 0, expected: 1, new: 3), .ok, 4, 5),  // both swaps from 1 cannot succeed
        ]
        #expect(LinearizabilityChecker().check(ok) == .linearizable)
        #expect(LinearizabilityChecker().check(bad) == .violation(key: 0))
    }

    @Test func deleteSemantics() {
        let ok = [
            h(1, .put(key: 0, value: 1), .ok, 0, 1),
            h(2, .delete(key: 0), .deleted(1), 2, 3),
            h(3, .delete(key: 0), .deleted(0), 4, 5),
            h(1, .get(key: 0), .value(nil), 6, 7),
        ]
        let resurrected = [
            h(1, .put(key: 0, value: 1), .ok, 0, 1),
            h(2, .delete(key: 0), .deleted(1), 2, 3),
            h(1, .get(key: 0), .value(1), 4, 5),  // the delete returned before the read began
        ]
        let wrongCount = [
            h(1, .put(key: 0, value: 1), .ok, 0, 1),
            h(2, .delete(key: 0), .deleted(0), 2, 3),  // the key was there
        ]
        let mayHaveDeleted = [
            h(1, .put(key: 0, value: 1), .ok, 0, 1),
            h(2, .delete(key: 0), .unknown, 2, .max),
            h(1, .get(key: 0), .value(nil), 4, 5),
            h(3, .get(key: 0), .value(nil), 6, 7),
        ]
        #expect(LinearizabilityChecker().check(ok) == .linearizable)
        #expect(LinearizabilityChecker().check(resurrected) == .violation(key: 0))
        #expect(LinearizabilityChecker().check(wrongCount) == .violation(key: 0))
        #expect(LinearizabilityChecker().check(mayHaveDeleted) == .linearizable)
    }

    @Test func keysAreCheckedIndependently() {
        let history = [
            h(1, .put(key: 0, value: 1), .ok, 0, 10),
            h(2, .put(key: 1, value: 5), .ok, 0, 10),
            h(3, .get(key: 1), .value(nil), 11, 12),
        ]
        #expect(LinearizabilityChecker().check(history) == .violation(key: 1))
    }
}

@Suite("Simulated disk and network")
struct SimComponentTests {
    @Test func crashKeepsSyncedRecordsAndAPrefixOfTheRest() {
        var rng = SimRandom(seed: 3)
        for _ in 0..<200 {
            var disk = SimulatedDisk()
            disk.write(.hardState(HardState(term: 2, vote: 1, commit: 0)))
            disk.write(.entries([Entry(term: 2, index: 1, data: [1])]))
            disk.sync()
            disk.write(.entries([Entry(term: 2, index: 2, data: [2])]))
            disk.write(.hardState(HardState(term: 3, vote: 2, commit: 1)))
            disk.crash(rng: &rng)
            let state = disk.load()
            #expect(state.entries.first?.index == 1)
            // The vote of term 3 can only survive together with entry 2 (prefix order).
            if state.hardState.term == 3 { #expect(state.entries.count == 2) }
            #expect(state.hardState.term >= 2)
        }
    }

    @Test func entriesTruncateTheStoredLog() {
        var disk = SimulatedDisk()
        disk.write(.entries((1...5).map { Entry(term: 1, index: $0) }))
        disk.write(.entries([Entry(term: 2, index: 3)]))
        disk.sync()
        #expect(disk.load().entries.map(\.term) == [1, 1, 2])
        disk.write(.localSnapshot(Snapshot(metadata: SnapshotMetadata(index: 2, term: 1))))
        disk.sync()
        let state = disk.load()
        #expect(state.entries.map(\.index) == [3])
        #expect(state.applied == 2)
    }

    @Test func partitionsCutBothDirectionsOneWayCutsOne() {
        var net = FaultyNetwork()
        var rng = SimRandom(seed: 1)
        net.partition([[1], [2, 3]])
        #expect(net.route(from: 1, to: 2, now: 0, rng: &rng).isEmpty)
        #expect(net.route(from: 3, to: 1, now: 0, rng: &rng).isEmpty)
        #expect(!net.route(from: 2, to: 3, now: 0, rng: &rng).isEmpty)
        net.heal()
        net.cut(Link(from: 2, to: 3))
        #expect(net.route(from: 2, to: 3, now: 0, rng: &rng).isEmpty)
        #expect(!net.route(from: 3, to: 2, now: 0, rng: &rng).isEmpty)
    }
}
