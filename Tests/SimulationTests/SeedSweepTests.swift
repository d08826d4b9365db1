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
    func mixedFaults(chunk: Int) async {
        let first = Self.startSeed + UInt64(chunk) * Self.seedsPerChunk
        // On a thread of its own: minutes of CPU on one of the cooperative pool's few threads (one per core) would
        // starve every asynchronous test running beside it (their RPC deadlines expire while they wait to resume).
        let failure = await onThread { () -> String? in
            for seed in first..<(first + Self.seedsPerChunk) {
                if let failure = runSimulation(.randomized(seed: seed)).failure {
                    return "seed \(seed) failed: \(failure)\nreplay: quorum-sim --seed \(seed) --trace"
                }
            }
            return nil
        }
        if let failure { Issue.record(Comment(rawValue: failure)) }
    }

    /// Runs `body` on a new thread and waits for it without holding a cooperative thread.
    func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    @Test func runsAreDeterministic() async {
        var options = SimulationOptions.randomized(seed: 4242)
        options.trace = true
        let fixed = options
        let (a, b) = await onThread { (runSimulation(fixed), runSimulation(fixed)) }
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
