import Foundation
import MVCC
import Node
import Raft
import Simulation
import TestSupport
import Testing

/// Three real members (the production Raft loop, log, SQLite key space and apply loop) on the simulated network,
/// one seed at a time: clients put, read and compare-and-swap through any member while members are isolated and
/// healed; the history must be linearizable and the members must end with the same data.
///
/// Each test runs whole simulations (seconds to minutes of CPU) or waits for a `quorum-sim` process: on threads of
/// their own (`.ownThread`), not the cooperative pool, which they held for minutes on 2 cores, starving the async
/// tests beside them (an S3 client's 1 s idle timeout measured 203 s).
@Suite(.ownThread) struct MemberSimulationTests {
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

    /// `quorum-sim` with `arguments`, in a process of its own (where a seed replays exactly), bounded in time.
    static func quorumSim(_ arguments: [String]) throws -> CommandResult {
        let binary = Paths.packageRoot + "/.build/debug/quorum-sim"
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build quorum-sim first")
        return try run(binary, arguments, timeout: 300)
    }

    /// Runs up to `limit` seeds with a rule switched off and returns the first whose checks failed (printing it).
    static func firstCaught(_ options: MemberSimulation.Options, limit: UInt64) throws -> (start: UInt64, seed: UInt64?)
    {
        let start = seeds(1)[0]
        for seed in start..<start + limit {
            let report = try MemberSimulation(seed: seed, options: options).run()
            if !report.ok {
                print("caught (as it must be): \(report)")
                return (start, seed)
            }
        }
        return (start, nil)
    }

    @Test func realMembersStayLinearizableUnderPartitions() throws {
        for seed in Self.seeds(4) {
            let report = try MemberSimulation(seed: seed).run()
            print(report)
            #expect(report.ok, "\(report)")
            #expect(report.acknowledged > 50, "too little got through to show anything: \(report)")
        }
    }

    /// A seed is a replay: `quorum-sim members --seed S` run twice, each in a process of its own, prints the same
    /// run to the event (the simulator makes Swift's hashing deterministic for it).
    @Test func theSameSeedReplaysTheSameRunInAnotherProcess() throws {
        let seed = Self.seeds(1)[0]
        func once() throws -> String {
            let result = try Self.quorumSim(["members", "--seed", "\(seed)", "--operations", "80"])
            // The last line is the wall-clock summary; the first names the run down to its event count.
            return result.stdout.split(separator: "\n").first.map(String.init) ?? ""
        }
        let first = try once()
        let second = try once()
        #expect(first.contains("events") && first == second, "\(first)\n\(second)")
    }

    /// A member that serves a linearizable read before it has applied up to the read's index answers from behind
    /// the leader: the linearizability check must see it.
    @Test func readsServedBeforeApplyingAreCaught() throws {
        var options = MemberSimulation.Options()
        options.nodeMutation = .servesReadsBeforeApplying
        let (start, caught) = try Self.firstCaught(options, limit: 20)
        #expect(caught != nil, "20 seeds from \(start) never caught reads served before applying")
    }

    /// Catch-up from history that starts one revision late loses that revision: the watch checks must see the gap.
    @Test func aWatchGapIsCaught() throws {
        var options = MemberSimulation.Options()
        options.watchMutation = .catchUpStartsPastTheNextRevision
        let (start, caught) = try Self.firstCaught(options, limit: 20)
        #expect(caught != nil, "20 seeds from \(start) never caught the gap")
    }

    /// Members on simulated disks: crashes are power cuts (a member's, or the whole cluster's at once) that lose,
    /// keep or tear what was not synced; no acknowledged write may be lost and the members end equal.
    @Test func powerCutsOnSimulatedDisksLoseNothingAcknowledged() throws {
        var options = MemberSimulation.Options()
        options.simulatedDisks = true
        for seed in Self.seeds(3) {
            let report = try MemberSimulation(seed: seed, options: options).run()
            print(report)
            #expect(report.ok, "\(report)")
            #expect(report.crashes > 0, "no power cut happened: \(report)")
        }
    }

    /// A log never synced, under power cuts of the whole cluster: acknowledged writes vanish. The simulator must
    /// notice, whether as a violation of its checks or as Raft refusing a log that lost what it acknowledged (a
    /// trap, as etcd panics): run in a process of its own, which stops at the first seed that catches it (a seed
    /// whose members never converge under the mutation can run for minutes: the test timed out once when it ran
    /// all thirty).
    @Test func aLogThatIsNeverSyncedIsCaught() throws {
        let start = Self.seeds(1)[0]
        let result = try Self.quorumSim([
            "members", "--simulated-disks", "--node-mutation", "neverSyncsTheLog", "--seeds", "30", "--start-seed",
            "\(start)", "--stop-at-first-failure",
        ])
        let text = result.stdout + result.stderr
        #expect(result.status != 0, "30 seeds from \(start) never caught a log that is never synced:\n\(text)")
        #expect(text.contains("FAILED") || text.contains("while simulating seed"), "\(text)")
    }

    /// Leases whose clock runs twice as fast delete their keys at half their TTL: the lease check must see a key
    /// gone while the leader's last keep-alive still had time to run.
    @Test func leasesExpiringEarlyAreCaught() throws {
        var options = MemberSimulation.Options()
        options.nodeMutation = .leaseClockRunsFast
        options.leaseClients = 3
        let (start, caught) = try Self.firstCaught(options, limit: 40)
        #expect(caught != nil, "40 seeds from \(start) never caught leases expiring early")
    }

    /// Members added (as learners that join, catch up and are promoted) and removed (the leader too) while the
    /// other faults go on: every check holds over the changing membership, and at the end the members agree on who
    /// they are. Fixed seeds (each found a bug or covers a path: seed 16 removes followers that never get the entry
    /// removing them), then a few fresh ones, on real files and on simulated disks.
    @Test(arguments: [false, true]) func membershipChangesKeepEveryCheck(simulatedDisks: Bool) throws {
        var options = MemberSimulation.Options()
        options.membershipChanges = true
        options.simulatedDisks = simulatedDisks
        var changes = 0
        for seed in [16, 2] + Self.seeds(2) {
            let report = try MemberSimulation(seed: seed, options: options).run()
            print(report)
            #expect(report.ok, "\(report)")
            changes += report.membershipChanges
        }
        #expect(changes > 4, "too few membership changes to show anything")
    }

    /// A member that applied its removal and goes on serving (and never tells its owner): the membership check
    /// must see it.
    @Test func aRemovedMemberThatKeepsServingIsCaught() throws {
        var options = MemberSimulation.Options()
        options.membershipChanges = true
        options.nodeMutation = .removedMemberKeepsServing
        let (start, caught) = try Self.firstCaught(options, limit: 20)
        #expect(caught != nil, "20 seeds from \(start) never caught a removed member that keeps serving")
    }

    /// Disks that fail writes and fsyncs now and then (EIO, ENOSPC): a member that hits one stops rather than go on
    /// with data it cannot trust, is restarted, and nothing acknowledged is lost. In a process of its own, where a
    /// trap (Raft refusing a log) fails the run instead of the test process.
    @Test func diskErrorsStopAMemberAndLoseNothing() throws {
        let result = try Self.quorumSim([
            "members", "--simulated-disks", "--disk-fault-rate", "0.001", "--seeds", "5", "--start-seed",
            "\(Self.seeds(1)[0])",
        ])
        let text = result.stdout + result.stderr
        #expect(result.status == 0 && text.contains("5 seeds, 0 failed"), "\(text)")
    }

    /// Slow fsyncs (50 ms to 1.5 s) block the loop that called them, the Raft loop's heartbeats included: leaders
    /// lose their leadership, acknowledgements leave late, and every check still holds.
    @Test func slowFsyncsStallMembersAndLoseNothing() throws {
        var options = MemberSimulation.Options()
        options.simulatedDisks = true
        options.slowSyncRate = 0.02
        for seed in Self.seeds(3) {
            let report = try MemberSimulation(seed: seed, options: options).run()
            print(report)
            #expect(report.ok, "\(report)")
            #expect(report.stalls > 0, "no fsync was slow: \(report)")
        }
    }
}
