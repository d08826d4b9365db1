// quorum-chaos: the fault harness as a soak command. Each seed starts a fresh cluster of real `quorum`
// processes in network namespaces of their own, runs clients against it while injecting faults, then checks
// linearizability, durability of acknowledged writes and recovery. Needs root (or password-less sudo) for
// `ip netns` and `tc`.
import ArgumentParser
import Chaos
import Foundation

@main
struct QuorumChaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quorum-chaos", abstract: "Run fault-injection schedules against real Quorum clusters.")

    @Option(help: "First seed.") var startSeed: UInt64 = UInt64.random(in: 1...999_999)
    @Option(help: "Number of seeds (schedules) to run.") var seeds = 1
    @Option(help: "Seconds of faults per schedule.") var duration = 20
    @Option(help: "Members per cluster (3 or 5).") var members = 3
    @Option(help: "Concurrent clients.") var clients = 6
    @Option(help: "Stop after this many minutes, whatever the seed count.") var minutes: Double = 1e9
    @Option(help: "The quorum binary.") var binary = ".build/debug/quorum"
    @Flag(
        help: ArgumentHelp(
            "Certificate renewal soak instead: 3 members on mutual TLS with leaves of --leaf-seconds, writers on the "
                + "members not being faulted, and random kill -9/restarts, partitions and CA rotations for --minutes "
                + "(per seed). Every put must succeed."))
    var renewal = false
    @Option(help: "Leaf certificate lifetime in seconds (--renewal).") var leafSeconds = 4
    @Option(
        help: ArgumentHelp(
            "Power-loss soak instead: members keep their data on lossyfs (FUSE; what was not fsynced is lost at a "
                + "cut) while --clients writers put; the power goes out on the leader, a follower or every member "
                + "until this many members have lost it (per seed). No acknowledged put may be lost."))
    var powerCuts: Int?
    @Option(help: "The lossyfs script (--power-cuts).") var lossyfs = "scripts/lossyfs.py"
    @Option(
        help: ArgumentHelp(
            "With --power-cuts: the probability that a write also makes one unsynced page durable early, whole or "
                + "torn at a sector boundary (the disk writing back in its own order), 0 to 1."))
    var earlyWriteback = 0.0
    @Option(
        parsing: .unconditionalSingleValue,
        help: "A flag for every member of a --power-cuts run (e.g. --member-flag=--unsafe-no-fsync), repeatable.")
    var memberFlag: [String] = []

    func run() async throws {
        guard Chaos.isSupported() else {
            throw ValidationError("network namespaces are not available: run as root (ip netns, tc)")
        }
        if renewal { return try await runRenewal() }
        if let powerCuts { return try await runPowerLoss(cuts: powerCuts) }
        let stopAt = Date().addingTimeInterval(minutes * 60)
        var failures: [UInt64] = []
        for seed in startSeed..<(startSeed + UInt64(seeds)) where Date() < stopAt {
            let work = NSTemporaryDirectory() + "quorum-chaos-\(seed)-\(UUID().uuidString.prefix(6))"
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            var options = ChaosOptions(seed: seed, binary: binary, workDirectory: work)
            options.duration = .seconds(duration)
            options.members = members
            options.clients = clients
            let report = await Chaos.run(options)
            print(report)
            if report.passed {
                try? FileManager.default.removeItem(atPath: work)
            } else {
                failures.append(seed)
                print("  member logs kept in \(work); replay with: quorum-chaos --start-seed \(seed) --seeds 1")
            }
        }
        if !failures.isEmpty {
            print("FAILED seeds: \(failures.map(String.init).joined(separator: " "))")
            throw ExitCode(1)
        }
    }

    /// One power-loss soak per seed, each until `cuts` member power cuts.
    func runPowerLoss(cuts: Int) async throws {
        guard LossyFileSystem.isSupported(script: lossyfs) else {
            throw ValidationError(
                "\(lossyfs) cannot mount: it needs root, /dev/fuse, and python3 with fusepy (pip install fusepy) and "
                    + "libfuse 2 (apt-get install libfuse2)")
        }
        var failures: [UInt64] = []
        for seed in startSeed..<(startSeed + UInt64(seeds)) {
            let work = NSTemporaryDirectory() + "quorum-power-\(seed)-\(UUID().uuidString.prefix(6))"
            var options = PowerLossOptions(
                seed: seed, binary: binary, lossyfs: lossyfs, workDirectory: work)
            options.cuts = cuts
            options.members = members
            options.writers = clients
            options.extraFlags = memberFlag
            options.earlyWriteback = earlyWriteback
            print("power-loss soak, seed \(seed): \(cuts) member power cuts, \(members) members, \(clients) writers")
            let report = await PowerLossRun.run(options)
            print(report)
            if report.passed {
                try? FileManager.default.removeItem(atPath: work)
            } else {
                failures.append(seed)
                print("  member and lossyfs logs kept in \(work)")
            }
        }
        if !failures.isEmpty {
            print("FAILED seeds: \(failures.map(String.init).joined(separator: " "))")
            throw ExitCode(1)
        }
    }

    /// One renewal soak per seed, each for --minutes.
    func runRenewal() async throws {
        var failures: [UInt64] = []
        let directory = URL(fileURLWithPath: binary).deletingLastPathComponent().path
        for seed in startSeed..<(startSeed + UInt64(seeds)) {
            let work = NSTemporaryDirectory() + "quorum-renewal-\(seed)-\(UUID().uuidString.prefix(6))"
            var options = RenewalOptions(
                seed: seed, binary: binary, quorumctl: directory + "/quorumctl", workDirectory: work)
            options.leafSeconds = leafSeconds
            options.duration = .seconds(Int64(min(minutes, 1e6) * 60))
            options.writers = clients
            let report = await RenewalRun.run(options)
            print(report)
            if report.passed {
                try? FileManager.default.removeItem(atPath: work)
            } else {
                failures.append(seed)
                print("  member logs kept in \(work)")
            }
        }
        if !failures.isEmpty {
            print("FAILED seeds: \(failures.map(String.init).joined(separator: " "))")
            throw ExitCode(1)
        }
    }
}
