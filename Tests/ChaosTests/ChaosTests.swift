import Chaos
import Foundation
import Simulation
import Testing

/// A short fault-injection run against real processes on hosts of their own (network namespaces).
/// `QUORUM_CHAOS_SECONDS` lengthens it; the soak command is `quorum-chaos`.
@Suite(.serialized) struct ChaosTests {
    static var packageRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }

    /// Runs the scenario and removes its directory (five members' data: ~325 MB) when it passed; a failed run keeps
    /// the members' logs and data for whoever replays the seed.
    func run(members: Int, seconds: Int) async throws -> ChaosReport {
        let options = try options(members: members, seconds: seconds)
        let report = await Chaos.run(options)
        print(report)
        if report.passed { try? FileManager.default.removeItem(atPath: options.workDirectory) }
        return report
    }

    func options(members: Int, seconds: Int) throws -> ChaosOptions {
        let work = NSTemporaryDirectory() + "quorum-chaos-test-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let seed =
            UInt64(ProcessInfo.processInfo.environment["QUORUM_CHAOS_SEED"] ?? "") ?? UInt64.random(in: 1...999_999)
        var o = ChaosOptions(seed: seed, binary: Self.packageRoot + "/.build/debug/quorum", workDirectory: work)
        o.members = members
        o.duration = .seconds(
            Int64(ProcessInfo.processInfo.environment["QUORUM_CHAOS_SECONDS"] ?? "") ?? Int64(seconds))
        return o
    }

    @Test func threeMembersStayLinearizableUnderFaults() async throws {
        try #require(Chaos.isSupported(), "network namespaces need root: run the suite as root (CI does)")
        let report = try await run(members: 3, seconds: 20)
        #expect(report.passed, "\(report)")
        #expect(report.operations > 100, "too little traffic to mean anything: \(report)")
        #expect(!report.faults.isEmpty)
    }

    @Test func fiveMembersStayLinearizableUnderPartitions() async throws {
        try #require(Chaos.isSupported(), "network namespaces need root: run the suite as root (CI does)")
        let report = try await run(members: 5, seconds: 15)
        #expect(report.passed, "\(report)")
        #expect(report.operations > 100, "too little traffic to mean anything: \(report)")
    }
}

/// Issue 17's scenario on real processes: certificates that live five seconds, renewed over and over by every
/// member, while one member is killed and comes back after longer than a certificate's lifetime (needing a
/// snapshot), another is cut off across several renewals, and all CAs are rotated, with writers going on throughout.
@Suite(.serialized) struct RenewalChaosTests {
    @Test func membersCatchUpAcrossRenewalsRestartsPartitionsAndCARotation() async throws {
        try #require(Chaos.isSupported(), "network namespaces need root: run the suite as root (CI does)")
        let seed =
            UInt64(ProcessInfo.processInfo.environment["QUORUM_CHAOS_SEED"] ?? "") ?? UInt64.random(in: 1...999_999)
        print("renewal scenario seed \(seed) (QUORUM_CHAOS_SEED replays the choice of victims)")
        let work = NSTemporaryDirectory() + "quorum-renewal-test-\(UUID().uuidString.prefix(8))"
        var options = RenewalOptions(
            seed: seed, binary: ChaosTests.packageRoot + "/.build/debug/quorum",
            quorumctl: ChaosTests.packageRoot + "/.build/debug/quorumctl", workDirectory: work)
        options.leafSeconds = 5
        options.faults = [
            .killAndRestart(leafLifetimes: 2.5), .partition(leafLifetimes: 3), .caRotation,
            .killAndRestart(leafLifetimes: 1.5),
        ]
        let report = await RenewalRun.run(options)
        print(report)
        #expect(report.passed, "\(report)")
        #expect(report.faults.count == 4)
        #expect(report.restarts == 2)
        #expect(report.acknowledgedPuts > 500, "too few writes to force a snapshot: \(report)")
        #expect(report.snapshotsInstalled >= 1, "no member needed a snapshot: \(report)")
        // Every member renews both leaves every ~2.5 s, and every renewal re-establishes links.
        #expect(report.reloads >= 30, "\(report)")
        #expect(report.linkRenewals >= 20, "\(report)")
        if report.passed { try? FileManager.default.removeItem(atPath: work) }
    }
}
