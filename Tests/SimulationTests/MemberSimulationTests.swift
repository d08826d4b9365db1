import Foundation
import Raft
import Simulation
import TestSupport
import Testing

/// Three real members (the production Raft loop, log, SQLite key space and apply loop) on the simulated network,
/// one seed at a time: clients put, read and compare-and-swap through any member while members are isolated and
/// healed; the history must be linearizable and the members must end with the same data.
@Suite struct MemberSimulationTests {
    /// The seeds of one run: a fresh random start each time (printed), or `QUORUM_TEST_SEED` to replay;
    /// `QUORUM_MEMBER_SIM_SEEDS` for more.
    static func seeds(_ count: Int) -> [UInt64] {
        let env = ProcessInfo.processInfo.environment
        let n = env["QUORUM_MEMBER_SIM_SEEDS"].flatMap(Int.init) ?? count
        if let fixed = env["QUORUM_TEST_SEED"].flatMap(UInt64.init) { return [fixed] }
        let start = UInt64.random(in: 1...1_000_000_000)
        print("member simulation: seeds \(start)..<\(start + UInt64(n)) (QUORUM_TEST_SEED=<seed> replays one)")
        return (0..<UInt64(n)).map { start + $0 }
    }

    @Test func realMembersStayLinearizableUnderPartitions() throws {
        for seed in Self.seeds(4) {
            let report = try MemberSimulation(seed: seed).run()
            print(report)
            #expect(report.ok, "\(report)")
            #expect(report.acknowledged > 50, "too little got through to show anything: \(report)")
        }
    }

    @Test func theSameSeedReplaysTheSameRun() throws {
        let seed = Self.seeds(1)[0]
        var options = MemberSimulation.Options()
        options.operations = 60
        let first = try MemberSimulation(seed: seed, options: options).run()
        let second = try MemberSimulation(seed: seed, options: options).run()
        #expect(first.events == second.events && first.messagesDelivered == second.messagesDelivered)
        #expect(first.virtualMilliseconds == second.virtualMilliseconds)
    }

    /// A member that serves a linearizable read before it has applied up to the read's index answers from behind
    /// the leader: the linearizability check must see it.
    @Test func readsServedBeforeApplyingAreCaught() throws {
        var options = MemberSimulation.Options()
        options.nodeMutation = .servesReadsBeforeApplying
        let start = Self.seeds(1)[0]
        var caught: UInt64?
        for seed in start..<start + 20 {
            let report = try MemberSimulation(seed: seed, options: options).run()
            if !report.ok {
                caught = seed
                print("caught (as it must be): \(report)")
                break
            }
        }
        #expect(caught != nil, "20 seeds from \(start) never caught reads served before applying")
    }
}
