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

    func options(members: Int, seconds: Int) throws -> ChaosOptions {
        let work = NSTemporaryDirectory() + "quorum-chaos-test-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let seed = UInt64(ProcessInfo.processInfo.environment["QUORUM_CHAOS_SEED"] ?? "") ?? UInt64.random(in: 1...999_999)
        var o = ChaosOptions(seed: seed, binary: Self.packageRoot + "/.build/debug/quorum", workDirectory: work)
        o.members = members
        o.duration = .seconds(Int64(ProcessInfo.processInfo.environment["QUORUM_CHAOS_SECONDS"] ?? "") ?? Int64(seconds))
        return o
    }

    @Test func threeMembersStayLinearizableUnderFaults() async throws {
        try #require(Chaos.isSupported(), "network namespaces need root: run the suite as root (CI does)")
        let report = await Chaos.run(try options(members: 3, seconds: 20))
        print(report)
        #expect(report.passed, "\(report)")
        #expect(report.operations > 100, "too little traffic to mean anything: \(report)")
        #expect(!report.faults.isEmpty)
    }

    @Test func fiveMembersStayLinearizableUnderPartitions() async throws {
        try #require(Chaos.isSupported(), "network namespaces need root: run the suite as root (CI does)")
        let report = await Chaos.run(try options(members: 5, seconds: 15))
        print(report)
        #expect(report.passed, "\(report)")
        #expect(report.operations > 100, "too little traffic to mean anything: \(report)")
    }
}
