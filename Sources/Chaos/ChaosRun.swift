import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Raft
import Simulation

/// One chaos run: real members on hosts of their own, clients recording a history, and a nemesis injecting
/// faults chosen by the seed; afterwards the network heals and the history must be linearizable, every
/// acknowledged write present, and a leader back within a bounded time.
public struct ChaosOptions: Sendable {
    public var seed: UInt64
    public var members = 3
    public var duration: Duration = .seconds(20)
    public var clients = 6
    public var keys = 5
    public var binary: String
    public var workDirectory: String

    public init(seed: UInt64, binary: String, workDirectory: String) {
        self.seed = seed
        self.binary = binary
        self.workDirectory = workDirectory
    }
}

public struct ChaosReport: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var members: Int
    public var faults: [String] = []
    public var operations = 0
    public var unknown = 0
    public var failedReads = 0
    public var acknowledgedWrites = 0
    public var lostWrites: [String] = []
    public var linearizability: LinearizabilityResult = .linearizable
    public var recoverySeconds: Double = 0
    public var error: String?

    public var passed: Bool {
        error == nil && lostWrites.isEmpty && linearizability == .linearizable
            && !faults.contains { $0.contains("(failed:") }
    }

    public var description: String {
        var text = "seed \(seed): \(passed ? "PASS" : "FAIL") — \(members) members, \(operations) operations "
        text += "(\(unknown) indeterminate, \(failedReads) failed reads), \(acknowledgedWrites) acknowledged appends, "
        text += "\(faults.count) faults, leader back \(String(format: "%.1f", recoverySeconds)) s after healing"
        if linearizability != .linearizable { text += "\n  linearizability: \(linearizability)" }
        if !lostWrites.isEmpty { text += "\n  lost acknowledged writes: \(lostWrites.prefix(10))" }
        if let error { text += "\n  error: \(error)" }
        if !passed { text += "\n  faults: \(faults.joined(separator: "; "))" }
        return text
    }
}

public enum Chaos {
    /// Whether this machine lets us build network namespaces (root, or password-less sudo).
    public static func isSupported() -> Bool {
        let probe = "qcprobe\(UInt16.random(in: 0...UInt16.max))"
        guard (try? Shell.run(Shell.privileged + ["ip", "netns", "add", probe])) != nil else { return false }
        _ = try? Shell.run(Shell.privileged + ["ip", "netns", "del", probe], allowFailure: true)
        return (try? Shell.run(["tc", "-V"])) != nil
    }

    public static func run(_ options: ChaosOptions) async -> ChaosReport {
        var report = ChaosReport(seed: options.seed, members: options.members)
        let network = ChaosNetwork(hosts: options.members)
        let members = ChaosMembers(network: network, binary: options.binary, workDirectory: options.workDirectory)
        defer {
            members.stopAll()
            network.tearDown()
        }
        do {
            try network.setUp()
            for h in 0..<options.members { try members.start(h) }
            try await waitForLeader(members, timeout: .seconds(30))
            let workload = Workload(members: members, keys: options.keys)
            let deadline = ContinuousClock.now + options.duration
            var rng = SplitMix64(seed: options.seed)
            await withTaskGroup(of: Void.self) { group in
                for c in 1...options.clients {
                    group.addTask { await workload.runClient(UInt64(c), seed: options.seed, until: deadline) }
                }
                group.addTask {}
                report.faults = await nemesis(members: members, network: network, rng: &rng, until: deadline)
                await group.waitForAll()
            }
            // Heal everything, then the cluster must elect a leader and serve within a bound.
            try network.healAll()
            try members.reviveAll()
            let healed = ContinuousClock.now
            let leader = try await waitForLeader(members, timeout: .seconds(20))
            let elapsed = ContinuousClock.now - healed
            report.recoverySeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let stored = try await workload.finalReads(through: leader)
            let acknowledged = workload.acknowledgedKeys
            report.acknowledgedWrites = acknowledged.count
            report.lostWrites = acknowledged.subtracting(stored).sorted()
            let stats = workload.stats
            report.operations = stats.ok + stats.unknown
            report.unknown = stats.unknown
            report.failedReads = stats.failed
            report.linearizability = LinearizabilityChecker().check(workload.entries)
        } catch {
            report.error = "\(error)"
        }
        return report
    }

    /// Faults, one at a time, each healed before the next: crashes, pauses, isolation (of the leader too),
    /// one-way cuts, partitions between groups, slow and lossy links.
    static func nemesis(
        members: ChaosMembers, network: ChaosNetwork, rng: inout SplitMix64, until deadline: ContinuousClock.Instant
    ) async -> [String] {
        var log: [String] = []
        let n = members.count
        // A fault that could not be injected is said so in the report, not silently skipped.
        func attempt(_ body: () throws -> Void) {
            do { try body() } catch { log.append("  (failed: \(error))") }
        }
        try? await Task.sleep(for: .milliseconds(500))
        while ContinuousClock.now + .seconds(2) < deadline {
            let victim = Int(rng.next() % UInt64(n))
            let hold = Duration.milliseconds(Int64(600 + rng.next() % 1800))
            switch rng.next() % 7 {
            case 0:
                log.append("kill -9 m\(victim)")
                members.crash(victim)
                try? await Task.sleep(for: hold)
                try? members.start(victim)
            case 1:
                log.append("SIGSTOP m\(victim)")
                members.pause(victim)
                try? await Task.sleep(for: hold)
                members.resume(victim)
            case 2:
                let target = (try? await currentLeader(members)) ?? victim
                log.append("isolate leader m\(target)")
                var state = ChaosNetwork.LinkState()
                state.isolated = true
                attempt { try network.apply(state, to: target) }
                try? await Task.sleep(for: hold)
                attempt { try network.apply(ChaosNetwork.LinkState(), to: target) }
            case 3:
                let other = (victim + 1 + Int(rng.next() % UInt64(n - 1))) % n
                log.append("one-way cut m\(victim) -> m\(other)")
                var state = ChaosNetwork.LinkState()
                state.dropsTo = [other]
                attempt { try network.apply(state, to: victim) }
                try? await Task.sleep(for: hold)
                attempt { try network.apply(ChaosNetwork.LinkState(), to: victim) }
            case 4:
                // Split into a minority containing the victim and a majority.
                let minority = n >= 5 ? [victim, (victim + 1) % n] : [victim]
                let majority = (0..<n).filter { !minority.contains($0) }
                log.append("partition \(minority.map { "m\($0)" }) | \(majority.map { "m\($0)" })")
                for h in 0..<n {
                    var state = ChaosNetwork.LinkState()
                    state.dropsTo = Set(minority.contains(h) ? majority : minority)
                    attempt { try network.apply(state, to: h) }
                }
                try? await Task.sleep(for: hold)
                attempt { try network.healAll() }
            case 5 where ChaosNetwork.netemAvailable:
                log.append("slow, lossy links")
                for h in 0..<n {
                    var state = ChaosNetwork.LinkState()
                    state.delayMilliseconds = 20 + Int(rng.next() % 40)
                    state.lossPercent = Int(rng.next() % 10)
                    attempt { try network.apply(state, to: h) }
                }
                try? await Task.sleep(for: hold)
                attempt { try network.healAll() }
            case 5:
                log.append("slow, lossy links skipped: this kernel has no tc netem")
            default:
                log.append("kill -9 leader")
                if let target = try? await currentLeader(members) {
                    members.crash(target)
                    try? await Task.sleep(for: hold)
                    try? members.start(target)
                }
            }
            try? await Task.sleep(for: .milliseconds(Int64(200 + rng.next() % 600)))
        }
        return log
    }

    /// The member that says it leads, asking each reachable member.
    static func currentLeader(_ members: ChaosMembers) async throws -> Int? {
        for h in 0..<members.count where members.isRunning(h) {
            let status = try? await members.withClient(h) { client in
                var options = CallOptions.defaults
                options.timeout = .milliseconds(500)
                return try await Etcdserverpb_Maintenance.Client(wrapping: client).status(
                    Etcdserverpb_StatusRequest(), options: options)
            }
            if let status, status.leader != 0, status.leader == status.header.memberID { return h }
        }
        return nil
    }

    @discardableResult
    static func waitForLeader(_ members: ChaosMembers, timeout: Duration) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let leader = try await currentLeader(members) { return leader }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ChaosError("no leader within \(timeout) (liveness)")
    }
}

struct ChaosError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
