import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Raft
import Synchronization

/// Power cuts on real processes. Each member keeps its data directory on a `LossyFileSystem` of its own, which
/// loses, at a cut, every write and directory change not yet made durable by fsync. Writers put unique keys without
/// pause while the power goes out, again and again, on the leader, on a follower, or on every member at once; after
/// each cut the member starts on what its disk kept and must catch up. kill -9 alone never tests this: the page
/// cache survives it.
///
/// Checked at the end, on every member: every acknowledged put is there with the revision its response gave; the
/// revisions of all keys are exactly the range from the first put to the current revision (continuous: none
/// skipped, none given twice); a writer's successive acknowledgements have increasing revisions; a member's revision
/// after a cut, once caught up, is at least what it was before; all members have the same key-space hash.
public struct PowerLossOptions: Sendable {
    public var seed: UInt64
    public var binary: String
    /// `scripts/lossyfs.py`.
    public var lossyfs: String
    public var workDirectory: String
    public var members = 3
    public var writers = 4
    /// Member power cuts to reach (a cut of every member counts each); nil with `schedule`.
    public var cuts = 10
    /// The cuts, in order (the test); nil draws them from the seed until `cuts` member cuts are done (the soak).
    public var schedule: [PowerCut]?
    /// Flags for every member (`--unsafe-no-fsync` shows the checks catch a loss).
    public var extraFlags: [String] = []
    /// lossyfs's `--early-writeback`: the disks also write unsynced pages back early, whole or torn, in no order.
    public var earlyWriteback = 0.0

    public init(seed: UInt64, binary: String, lossyfs: String, workDirectory: String) {
        self.seed = seed
        self.binary = binary
        self.lossyfs = lossyfs
        self.workDirectory = workDirectory
    }
}

public enum PowerCut: Sendable, CustomStringConvertible {
    /// The leader loses power.
    case leader
    /// One follower loses power.
    case follower
    /// Every member loses power at the same moment (a data centre's outage).
    case everyMember

    public var description: String {
        switch self {
        case .leader: return "leader"
        case .follower: return "follower"
        case .everyMember: return "every member"
        }
    }
}

public struct PowerLossReport: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var events: [String] = []
    /// Members that lost power (a cut of every member counts each).
    public var memberCuts = 0
    public var restarts = 0
    public var acknowledgedWrites = 0
    public var failedWrites = 0
    /// What the file systems dropped at the cuts: bytes of unsynced file data, files with some, directories with
    /// unsynced entries.
    public var droppedBytes = 0
    public var droppedFiles = 0
    public var droppedDirectories = 0
    /// Unsynced pages the disks wrote back early (whole or torn) before the cuts.
    public var pagesWrittenEarly = 0
    /// "mN lacks key@revision", per member.
    public var lostWrites: [String] = []
    /// Acknowledged keys missing on at least one member.
    public var lostKeys = 0
    public var wrongRevisions: [String] = []
    public var revisionGaps: [String] = []
    public var regressions: [String] = []
    public var finalRevision: Int64 = 0
    /// From the members' logs: snapshots saved (log truncations), database snapshots installed from the leader,
    /// torn log tails repaired at a start.
    public var snapshotsSaved = 0
    public var snapshotsInstalled = 0
    public var tornTailsRepaired = 0
    public var hashes: [String] = []
    public var seconds: Double = 0
    public var error: String?
    /// The last lines each member and each disk logged, kept only when the run failed: a failure on CI, where the
    /// work directory is gone afterwards, carries its own evidence.
    public var logTails: [String] = []

    public var passed: Bool {
        error == nil && lostWrites.isEmpty && wrongRevisions.isEmpty && revisionGaps.isEmpty && regressions.isEmpty
            && Set(hashes.map { $0.split(separator: " ").last ?? "" }).count <= 1
    }

    public var description: String {
        var text = "seed \(seed): \(passed ? "PASS" : "FAIL") — \(memberCuts) member power cuts in \(events.count) "
        text += "events, \(restarts) restarts, \(acknowledgedWrites) acknowledged puts (\(failedWrites) failed), "
        text += "\(lostKeys) lost; revisions continuous to \(finalRevision): \(revisionGaps.isEmpty); "
        text += "dropped at the cuts: \(droppedBytes) unsynced bytes in \(droppedFiles) files, "
        text += "\(droppedDirectories) directories' unsynced entries, \(pagesWrittenEarly) pages written early; "
        text += "\(snapshotsSaved) snapshots saved, "
        text += "\(snapshotsInstalled) installed, \(tornTailsRepaired) torn log tails repaired; "
        text += "\(String(format: "%.0f", seconds)) s"
        text += "\n  hashes: \(hashes.joined(separator: ", "))"
        if !lostWrites.isEmpty { text += "\n  lost acknowledged writes: \(lostWrites.prefix(10))" }
        if !wrongRevisions.isEmpty { text += "\n  wrong revisions: \(wrongRevisions.prefix(10))" }
        if !revisionGaps.isEmpty { text += "\n  revision gaps: \(revisionGaps.prefix(10))" }
        if !regressions.isEmpty { text += "\n  regressions: \(regressions.prefix(10))" }
        if let error { text += "\n  error: \(error)" }
        if !passed { text += "\n  events: \(events.suffix(20).joined(separator: "; "))" }
        for tail in logTails { text += "\n  " + tail.replacingOccurrences(of: "\n", with: "\n    ") }
        return text
    }
}

public enum PowerLossRun {
    public static func run(_ options: PowerLossOptions) async -> PowerLossReport {
        var report = PowerLossReport(seed: options.seed)
        let started = ContinuousClock.now
        var rng = SplitMix64(seed: options.seed)
        let network = ChaosNetwork(hosts: options.members)
        let work = options.workDirectory
        let disks = (0..<options.members).map { h in
            LossyFileSystem(
                script: options.lossyfs, backing: "\(work)/disk\(h)", mountPoint: "\(work)/mnt\(h)",
                log: "\(work)/lossyfs\(h).log", earlyWriteback: options.earlyWriteback,
                seed: options.seed &* 31 &+ UInt64(h) &* 1_000_003)
        }
        let members = ChaosMembers(
            network: network, binary: options.binary, workDirectory: work,
            // A snapshot every 300 entries: cuts land during snapshots and log truncation too, and a member that
            // was down may need a snapshot to catch up.
            extraFlags: ["--snapshot-count", "300", "--experimental-snapshot-catchup-entries", "50"]
                + options.extraFlags,
            dataDirectories: (0..<options.members).map { "\(work)/mnt\($0)/data" })
        defer {
            members.stopAll()
            for disk in disks { disk.kill() }
            network.tearDown()
        }
        do {
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            try network.setUp()
            for disk in disks { try disk.mount() }
            for h in 0..<options.members { try members.start(h) }
            try await Chaos.waitForLeader(members, timeout: .seconds(30))
            let writers = PowerWriters(members: members)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<options.writers { group.addTask { await writers.run(writer: w) } }
                defer { writers.stop() }
                var index = 0
                while true {
                    let cut: PowerCut
                    if let schedule = options.schedule {
                        guard index < schedule.count else { break }
                        cut = schedule[index]
                    } else {
                        guard report.memberCuts < options.cuts else { break }
                        switch rng.next() % 20 {
                        case 0..<7: cut = .leader
                        case 7..<16: cut = .follower
                        default: cut = .everyMember
                        }
                    }
                    index += 1
                    // Writes land between cuts (and go on during them).
                    let before = writers.acknowledgedCount
                    try await waitUntil("writes before cut \(index)", timeout: .seconds(30)) {
                        writers.acknowledgedCount >= before + 20
                    }
                    try await Task.sleep(for: .milliseconds(Int64(rng.next() % 400)))
                    try await powerCut(
                        cut, number: index, members: members, disks: disks, rng: &rng, report: &report)
                }
                try await Task.sleep(for: .milliseconds(500))
                writers.stop()
                try await group.waitForAll()
            }
            report.acknowledgedWrites = writers.acknowledged.count
            report.failedWrites = writers.failures
            report.regressions += writers.regressions
            try await verify(members: members, writers: writers, report: &report)
            for h in 0..<options.members {
                let log = members.log(h)
                report.snapshotsSaved += log.occurrences(of: "\"msg\":\"saved snapshot\"")
                report.snapshotsInstalled += log.occurrences(of: "installed database snapshot from the leader")
                report.tornTailsRepaired += log.occurrences(of: "repaired torn write-ahead log tail")
            }
        } catch {
            report.error = "\(error)"
        }
        report.seconds = (ContinuousClock.now - started).inSeconds
        if !report.passed {
            for h in 0..<options.members {
                report.logTails.append("m\(h) log, last lines:\n" + members.log(h).lastLines(12))
                let disk = (try? String(contentsOfFile: "\(work)/lossyfs\(h).log", encoding: .utf8)) ?? ""
                report.logTails.append("lossyfs\(h) log, last lines:\n" + disk.lastLines(6))
            }
        }
        return report
    }

    /// Takes the power from the victims (the member first, as the whole machine stops; then its disk drops what it
    /// held only in memory), keeps them off a moment while the others go on, starts them on what their disks kept,
    /// and waits until they have caught up.
    static func powerCut(
        _ cut: PowerCut, number: Int, members: ChaosMembers, disks: [LossyFileSystem], rng: inout SplitMix64,
        report: inout PowerLossReport
    ) async throws {
        let leader = try await Chaos.waitForLeader(members, timeout: .seconds(30))
        let victims: [Int]
        switch cut {
        case .leader: victims = [leader]
        case .follower:
            let followers = (0..<members.count).filter { $0 != leader }
            victims = followers.isEmpty ? [leader] : [followers[Int(rng.next() % UInt64(followers.count))]]
        case .everyMember: victims = Array(0..<members.count)
        }
        var revisionBefore: [Int: Int64] = [:]
        for v in victims {
            revisionBefore[v] = try? await RenewalRun.status(v, members: members).header.revision
        }
        var dropped: [String] = []
        for v in victims { members.crash(v) }
        for v in victims {
            if let lost = disks[v].unsynced() {
                report.droppedBytes += lost.unsyncedBytes
                report.droppedFiles += lost.unsyncedFiles
                report.droppedDirectories += lost.unsyncedDirectories
                report.pagesWrittenEarly += lost.pagesWrittenEarly ?? 0
                dropped.append("m\(v) dropped \(lost.unsyncedBytes) B in \(lost.unsyncedFiles) files")
            }
            try disks[v].powerCut()
        }
        report.memberCuts += victims.count
        let off = Duration.milliseconds(Int64(rng.next() % 800))
        try await Task.sleep(for: off)
        for v in victims { try members.start(v) }
        report.restarts += victims.count
        try await Chaos.waitForLeader(members, timeout: .seconds(60))
        for v in victims {
            try await RenewalRun.waitCaughtUp(v, members: members)
            let after = try await RenewalRun.status(v, members: members).header.revision
            if let before = revisionBefore[v], after < before {
                report.regressions.append("m\(v) at revision \(after) after cut \(number), \(before) before it")
            }
        }
        report.events.append(
            "cut \(number): \(cut) (\(victims.map { "m\($0)" }.joined(separator: ","))), off \(off), "
                + dropped.joined(separator: ", "))
    }

    /// Every member: every acknowledged put at its revision, revisions continuous, equal hashes.
    static func verify(members: ChaosMembers, writers: PowerWriters, report: inout PowerLossReport) async throws {
        let leader = try await Chaos.waitForLeader(members, timeout: .seconds(30))
        for h in 0..<members.count { try await RenewalRun.waitCaughtUp(h, members: members) }
        let revision = try await RenewalRun.status(leader, members: members).header.revision
        report.finalRevision = revision
        let acknowledged = writers.acknowledged
        var lostKeys: Set<String> = []
        defer { report.lostKeys = lostKeys.count }
        for h in 0..<members.count {
            let stored = try await keys(on: h, members: members)
            var lost: [String] = []
            for (key, rev) in acknowledged.sorted(by: { $0.value < $1.value }) {
                guard let found = stored[key] else {
                    lost.append("m\(h) lacks \(key)@\(rev)")
                    lostKeys.insert(key)
                    continue
                }
                if found != rev { report.wrongRevisions.append("m\(h): \(key) at \(found), acknowledged at \(rev)") }
            }
            report.lostWrites += lost
            // Nothing but the writers' puts changes the key space: its revisions are 2 (the first put) ... current.
            let revisions = stored.values.sorted()
            var expected: Int64 = 2
            for r in revisions {
                if r != expected {
                    report.revisionGaps.append("m\(h): revision \(r) where \(expected) was next")
                    break
                }
                expected += 1
            }
            if expected - 1 != revision && report.revisionGaps.isEmpty {
                report.revisionGaps.append("m\(h): keys end at revision \(expected - 1), the cluster is at \(revision)")
            }
            let hash = try await members.withClient(h) { client in
                var request = Etcdserverpb_HashKVRequest()
                request.revision = revision
                return try await Etcdserverpb_Maintenance.Client(wrapping: client).hashKV(request).hash
            }
            report.hashes.append("m\(h)@\(revision) \(hash)")
        }
    }

    /// Every `power/` key on member `host` (its own state: serializable reads) with its modification revision,
    /// in pages.
    static func keys(on host: Int, members: ChaosMembers) async throws -> [String: Int64] {
        try await members.withClient(host) { client in
            let kv = Etcdserverpb_KV.Client(wrapping: client)
            var result: [String: Int64] = [:]
            var start = Data("power/".utf8)
            for _ in 0..<100_000 {
                var range = Etcdserverpb_RangeRequest()
                range.key = start
                range.rangeEnd = Data("power0".utf8)
                range.keysOnly = true
                range.serializable = true
                range.limit = 5000
                let page = try await kv.range(range)
                for item in page.kvs { result[String(decoding: item.key, as: UTF8.self)] = item.modRevision }
                guard page.more, let last = page.kvs.last else { break }
                start = last.key + [0]
            }
            return result
        }
    }

    static func waitUntil(_ what: String, timeout: Duration, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { throw ChaosError("\(what): not within \(timeout)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Writers putting unique keys through every member in turn, whatever is being cut: a put that fails is not
/// acknowledged, and that is all. Each remembers the revision of each acknowledged put.
final class PowerWriters: Sendable {
    let members: ChaosMembers
    private let stopped = Atomic<Bool>(false)
    private let acked = Mutex<[String: Int64]>([:])
    private let failed = Atomic<Int>(0)
    private let backwards = Mutex<[String]>([])

    init(members: ChaosMembers) {
        self.members = members
    }

    var acknowledged: [String: Int64] { acked.withLock { $0 } }
    var acknowledgedCount: Int { acked.withLock { $0.count } }
    var failures: Int { failed.load(ordering: .relaxed) }
    var regressions: [String] { backwards.withLock { $0 } }
    func stop() { stopped.store(true, ordering: .relaxed) }

    func run(writer: Int) async {
        var sequence = 0
        var turn = writer
        var lastRevision: Int64 = 0
        while !stopped.load(ordering: .relaxed) {
            turn += 1
            let host = turn % members.count
            do {
                try await members.withClient(host) { client in
                    let kv = Etcdserverpb_KV.Client(wrapping: client)
                    for _ in 0..<20 where !stopped.load(ordering: .relaxed) {
                        sequence += 1
                        let key = "power/\(writer)/\(sequence)"
                        var put = Etcdserverpb_PutRequest()
                        put.key = Data(key.utf8)
                        put.value = Data(repeating: 0x70, count: 100)
                        var options = CallOptions.defaults
                        options.timeout = .seconds(3)
                        do {
                            let revision = try await kv.put(put, options: options).header.revision
                            acked.withLock { $0[key] = revision }
                            if revision <= lastRevision {
                                backwards.withLock {
                                    $0.append("writer \(writer): \(key) at \(revision) after \(lastRevision)")
                                }
                            }
                            lastRevision = revision
                        } catch {
                            failed.add(1, ordering: .relaxed)
                            throw error
                        }
                    }
                }
            } catch {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
