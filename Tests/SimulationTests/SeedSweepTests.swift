import Foundation
import Raft
import Simulation
import Testing

/// The CI part of the seed sweep: 1,000 seeds of mixed faults (3- and 5-member clusters, partitions,
/// one-way links, loss, duplication, reordering, crashes with torn writes, membership changes, leader
/// transfers, lease and ReadIndex reads), split into chunks so swift-testing runs them in parallel.
/// `quorum-sim --seeds N` runs any number beyond these.
@Suite("Seed sweep")
struct SeedSweepTests {
    static let chunks = 0..<8
    static let seedsPerChunk: UInt64 = 125

    /// A fresh range of seeds on every run (printed; `QUORUM_SIM_START_SEED` replays a run's range), so the suite
    /// keeps exploring instead of re-checking the same thousand schedules.
    static let startSeed: UInt64 = {
        let seed =
            ProcessInfo.processInfo.environment["QUORUM_SIM_START_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 1_000_000...4_000_000_000)
        print(
            "seed sweep: seeds \(seed)..<\(seed + UInt64(chunks.count) * seedsPerChunk) (QUORUM_SIM_START_SEED=\(seed))"
        )
        return seed
    }()

    @Test(arguments: chunks)
    func mixedFaults(chunk: Int) {
        let first = Self.startSeed + UInt64(chunk) * Self.seedsPerChunk
        for seed in first..<(first + Self.seedsPerChunk) {
            let result = runSimulation(.randomized(seed: seed))
            if let failure = result.failure {
                Issue.record("seed \(seed) failed: \(failure)\nreplay: quorum-sim --seed \(seed) --trace")
                return
            }
        }
    }

    @Test func runsAreDeterministic() {
        var options = SimulationOptions.randomized(seed: 4242)
        options.trace = true
        let a = runSimulation(options)
        let b = runSimulation(options)
        #expect(a.trace == b.trace)
        #expect(a.trace.count > 500)
        #expect(a.stats.events == b.stats.events)
    }

    @Test func fiveMembersWithoutFaultsMakeSteadyProgress() {
        var options = SimulationOptions(seed: 7)
        options.nodes = 5
        options.networkFaults = false
        options.crashes = false
        options.membershipChanges = false
        options.leaderTransfers = false
        let result = runSimulation(options)
        #expect(result.passed, "\(result.failure ?? "")")
        #expect(result.stats.leadersElected == 1)
        #expect(result.stats.operationsOK > 200)
    }
}
