import ArgumentParser
import Node
import Raft
import Simulation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The seed being simulated, readable from a signal handler: when a Raft precondition traps, the process
/// dies, and the handler prints this seed first so the failure can be replayed.
nonisolated(unsafe) var currentSeed: UInt64 = 0

func installCrashReporter() {
    let handler: @convention(c) (Int32) -> Void = { sig in
        var buf = [UInt8]("\nquorum-sim: crashed (signal) while simulating seed ".utf8)
        var digits: [UInt8] = []
        var v = currentSeed
        repeat {
            digits.append(UInt8(48 + v % 10))
            v /= 10
        } while v > 0
        buf += digits.reversed()
        buf += [UInt8]("; replay with --seed <that> --trace\n".utf8)
        _ = buf.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        signal(sig, SIG_DFL)
        raise(sig)
    }
    for sig in [SIGILL, SIGTRAP, SIGSEGV, SIGABRT, SIGBUS] { signal(sig, handler) }
}

/// Swift seeds the hash of every dictionary and set with its storage's address unless this variable is set when the
/// process starts, so their iteration order (which real member code observes) would differ from run to run. The
/// member simulation re-executes itself with it, so that a seed replays exactly, in any process.
func ensureDeterministicHashing() {
    guard getenv("SWIFT_DETERMINISTIC_HASHING") == nil else { return }
    setenv("SWIFT_DETERMINISTIC_HASHING", "1", 1)
    var argv = CommandLine.arguments.map { strdup($0) }
    argv.append(nil)
    execv("/proc/self/exe", argv)
    perror("quorum-sim: re-executing with SWIFT_DETERMINISTIC_HASHING=1")
    exit(1)
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

extension SafetyMutation: ExpressibleByArgument {}
extension NodeMutation: ExpressibleByArgument {}

@main
struct QuorumSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quorum-sim",
        abstract: "Deterministic simulation of Quorum's Raft core, and of real members.",
        subcommands: [Run.self, Members.self, Bench.self, Mutants.self],
        defaultSubcommand: Run.self)
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run seeds (stops at the first failure and prints its seed), or replay one seed with a trace.")

    @Option(help: "Number of seeds to run.") var seeds: UInt64 = 100
    @Option(help: "First seed of the sweep.") var startSeed: UInt64 = 1
    @Option(help: "Run exactly this seed.") var seed: UInt64?
    @Flag(help: "Print a readable trace of every event (use with --seed).") var trace = false
    @Option(help: "Force the number of initial members (3 or 5); random per seed by default.") var nodes: Int?
    @Option(help: "Chaos phase length in simulated milliseconds.") var chaosMs: Int64 = 3000
    @Option(
        help: "TEST-ONLY: disable one safety rule (\(SafetyMutation.allCases.map(\.rawValue).joined(separator: ", ")))."
    )
    var mutation: SafetyMutation?
    @Flag(help: "Print one line per seed.") var verbose = false

    func options(_ s: UInt64) -> SimulationOptions {
        var o = SimulationOptions.randomized(seed: s)
        if let nodes { o.nodes = nodes }
        o.chaosDuration = .ms(chaosMs)
        o.mutation = mutation
        o.trace = trace
        o.streamTrace = trace
        return o
    }

    func run() throws {
        installCrashReporter()
        if let seed {
            currentSeed = seed
            let result = runSimulation(options(seed))
            report(result)
            if !result.passed { throw ExitCode(1) }
            return
        }
        let start = monotonicSeconds()
        var events = 0
        for s in startSeed..<(startSeed + seeds) {
            currentSeed = s
            let result = runSimulation(options(s))
            events += result.stats.events
            if verbose { report(result) }
            if !result.passed {
                print("FAILED seed \(s): \(result.failure!)")
                print(
                    "replay: quorum-sim --seed \(s) --trace\(nodes.map { " --nodes \($0)" } ?? "")"
                        + "\(mutation.map { " --mutation \($0.rawValue)" } ?? "")")
                throw ExitCode(1)
            }
        }
        let elapsed = monotonicSeconds() - start
        let perMinute = Double(seeds) / elapsed * 60
        print(
            "\(seeds) seeds passed (\(startSeed)..<\(startSeed + seeds)) in \(String(format1(elapsed)))s: "
                + "\(Int(perMinute)) seeds/minute, \(events) events")
    }

    func report(_ r: SimulationResult) {
        let s = r.stats
        print(
            "seed \(r.seed): \(r.passed ? "ok" : "FAILED: \(r.failure!)") — \(s.events) events, "
                + "\(s.leadersElected) leaders, commit \(s.maxCommit), \(s.crashes) crashes, "
                + "\(s.confChangesApplied) removals, \(s.transfers) transfers, \(s.snapshotsInstalled) snapshots, "
                + "ops ok \(s.operationsOK) unknown \(s.operationsUnknown) rejected \(s.operationsRejected), "
                + "\(s.simulatedTime / 1000)ms simulated")
    }
}

func format1(_ v: Double) -> String {
    let tenths = Int((v * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

struct Mutants: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mutation check: for each safety mutation, run seeds until the simulator catches it.")

    @Option(help: "Maximum seeds per mutation.") var maxSeeds: UInt64 = 2000
    @Option(help: "Run only this mutation.") var only: SafetyMutation?

    func run() throws {
        installCrashReporter()
        var missed = 0
        for m in SafetyMutation.allCases where only == nil || only == m {
            var caught: (UInt64, String)?
            for s in 1...maxSeeds {
                currentSeed = s
                var o = SimulationOptions.randomized(seed: s)
                o.mutation = m
                let r = runSimulation(o)
                if let f = r.failure {
                    caught = (s, f)
                    break
                }
            }
            if let (s, f) = caught {
                print("\(m.rawValue): CAUGHT at seed \(s): \(f.split(separator: "\n").first ?? "")")
            } else {
                print("\(m.rawValue): not caught in \(maxSeeds) seeds")
                missed += 1
            }
        }
        if missed > 0 { throw ExitCode(1) }
    }
}

struct Members: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Real members (Raft loop, write-ahead log, SQLite key space, apply loop) on the simulated network.",
        discussion: "Clients put, read and compare-and-swap through any member while members are isolated; the "
            + "history must be linearizable and the members must end with the same data.")

    @Option(help: "Number of seeds to run.") var seeds: UInt64 = 100
    @Option(help: "First seed of the sweep.") var startSeed: UInt64 = 1
    @Option(help: "Run exactly this seed.") var seed: UInt64?
    @Option(help: "Client operations per seed.") var operations = 200
    @Option(help: "Members (3 or 5).") var members = 3
    @Option(help: "Switch off a rule of the member, to see the checks catch it.") var nodeMutation: NodeMutation?
    @Flag(help: "Print one line per seed.") var verbose = false
    @Flag(help: "Print a readable trace of the run (use with --seed).") var trace = false
    @Flag(help: "Members on simulated disks: a crash is a power cut that loses what was not synced.")
    var simulatedDisks = false
    @Option(help: "With --simulated-disks: the chance that a write or an fsync fails (EIO/ENOSPC).")
    var diskFaultRate = 0.0
    @Option(help: "With --simulated-disks: the chance that an fsync stalls its caller for 50 ms to 1.5 s.")
    var slowSyncRate = 0.0
    @Flag(help: "Add, promote and remove members now and then (three to five voters).")
    var membershipChanges = false
    @Flag(help: "Stop at the first seed that fails (a mutation needs to be caught once).")
    var stopAtFirstFailure = false

    func run() throws {
        ensureDeterministicHashing()
        installCrashReporter()
        let list = seed.map { [$0] } ?? Array(startSeed..<startSeed + seeds)
        let started = monotonicSeconds()
        var failed = 0
        var ran = 0
        for s in list {
            currentSeed = s
            ran += 1
            var options = MemberSimulation.Options()
            options.operations = operations
            options.members = members
            options.nodeMutation = nodeMutation
            options.trace = trace
            options.simulatedDisks = simulatedDisks
            options.diskFaultRate = diskFaultRate
            options.slowSyncRate = slowSyncRate
            options.membershipChanges = membershipChanges
            let report = try MemberSimulation(seed: s, options: options).run()
            if !report.ok {
                failed += 1
                print("FAILED \(report)")
                if stopAtFirstFailure { break }
            } else if verbose || seed != nil {
                print(report)
            }
        }
        let seconds = monotonicSeconds() - started
        print(
            "\(ran) seeds, \(failed) failed, \(Int(seconds)) s"
                + (ran > 1 ? " (seeds \(list.first!)..<\(list.first! + UInt64(ran)))" : "")
                + (stopAtFirstFailure && failed > 0 ? ", stopped at the first failure" : ""))
        if failed > 0 { throw ExitCode(1) }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Proposals committed per second through a 3-member in-process cluster (no I/O).")

    @Option(help: "Total proposals.") var proposals: Int = 1_000_000
    @Option(help: "Proposals per batch (proposed before each ready()).") var batch: Int = 256
    @Option(help: "Payload bytes per proposal.") var size: Int = 128
    @Flag(help: "Encode and decode every message, as a real transport would.") var codec = false

    func run() throws {
        let start = monotonicSeconds()
        let result = runBenchmark(proposals: proposals, batch: batch, payloadSize: size, encodeMessages: codec)
        let elapsed = monotonicSeconds() - start
        let rate = Double(result.committed) / elapsed
        print(
            "committed \(result.committed) proposals of \(size) B in batches of \(batch) in \(format1(elapsed)) s: "
                + "\(Int(rate)) proposals/s, \(result.messages) messages, \(result.readies) Ready cycles"
                + (codec ? " (with codec)" : ""))
    }
}
