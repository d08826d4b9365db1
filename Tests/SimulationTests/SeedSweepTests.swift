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

    @Test(arguments: chunks)
    func mixedFaults(chunk: Int) {
        let first = 10_000 + UInt64(chunk) * Self.seedsPerChunk
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
