import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Raft
import Synchronization

/// The outage Quorum exists to prevent, provoked on purpose: a cluster on mutual TLS whose member certificates live
/// a few seconds, so that every member renews them over and over, while writers put without pause and one member at
/// a time is killed and restarted after longer than a certificate's lifetime (so it comes back to find everyone's
/// certificates replaced, and needs a snapshot), cut off by a partition across several renewals, or all CAs are
/// rotated. Puts go only to members that are not the one being faulted: every one of them must succeed, and in the
/// end every member is healthy, holds every acknowledged write, and has the same key-space hash.
public struct RenewalOptions: Sendable {
    public var seed: UInt64
    public var binary: String
    public var quorumctl: String
    public var workDirectory: String
    /// `--pki-leaf-validity` of every member.
    public var leafSeconds = 4
    public var writers = 4
    /// The faults, in order; `nil` draws them from the seed until `duration` is over (the soak).
    public var faults: [RenewalFault]?
    public var duration: Duration = .seconds(60)

    public init(seed: UInt64, binary: String, quorumctl: String, workDirectory: String) {
        self.seed = seed
        self.binary = binary
        self.quorumctl = quorumctl
        self.workDirectory = workDirectory
    }
}

public enum RenewalFault: Sendable, CustomStringConvertible {
    /// kill -9 a follower, keep it down for this many leaf lifetimes, start it again on its data directory.
    case killAndRestart(leafLifetimes: Double)
    /// Cut a follower off from everyone for this many leaf lifetimes.
    case partition(leafLifetimes: Double)
    /// Rotate the clients and the peers CA on every member (stage, re-issue, retire).
    case caRotation

    public var description: String {
        switch self {
        case .killAndRestart(let n): return "kill -9 and restart after \(n) leaf lifetimes"
        case .partition(let n): return "partition for \(n) leaf lifetimes"
        case .caRotation: return "CA rotation"
        }
    }
}

public struct RenewalReport: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var faults: [String] = []
    public var acknowledgedPuts = 0
    /// Puts that failed although their member was not being faulted.
    public var failedPuts: [String] = []
    public var restarts = 0
    /// TLS reloads across members (each renewal reloads the client and the peer side).
    public var reloads = 0
    /// Peer links re-established without a gap (after a renewal, or a peer's GOAWAY).
    public var linkRenewals = 0
    /// Snapshots a restarted or partitioned member installed to catch up.
    public var snapshotsInstalled = 0
    public var unhealthy: [String] = []
    public var missingWrites: [String] = []
    public var hashes: [String] = []
    public var error: String?

    public var passed: Bool {
        error == nil && failedPuts.isEmpty && unhealthy.isEmpty && missingWrites.isEmpty
            && Set(hashes.map { $0.split(separator: " ").last ?? "" }).count <= 1
    }

    public var description: String {
        var text = "seed \(seed): \(passed ? "PASS" : "FAIL") — \(acknowledgedPuts) puts acknowledged, "
        text += "\(failedPuts.count) failed; \(faults.count) faults, \(restarts) restarts, \(reloads) TLS reloads, "
        text += "\(linkRenewals) peer links re-established, \(snapshotsInstalled) snapshots installed"
        text += "\n  faults: \(faults.joined(separator: "; "))"
        text += "\n  hashes: \(hashes.joined(separator: ", "))"
        if !failedPuts.isEmpty { text += "\n  failed puts: \(failedPuts.prefix(10))" }
        if !unhealthy.isEmpty { text += "\n  unhealthy: \(unhealthy)" }
        if !missingWrites.isEmpty { text += "\n  missing writes: \(missingWrites.prefix(10))" }
        if let error { text += "\n  error: \(error)" }
        return text
    }
}

public enum RenewalRun {
    public static func run(_ options: RenewalOptions) async -> RenewalReport {
        var report = RenewalReport(seed: options.seed)
        let network = ChaosNetwork(hosts: 3)
        var rng = SplitMix64(seed: options.seed)
        do {
            try FileManager.default.createDirectory(atPath: options.workDirectory, withIntermediateDirectories: true)
            let tls = try ChaosTLS(
                workDirectory: options.workDirectory, leafValidity: "\(options.leafSeconds)s",
                quorumctl: options.quorumctl)
            // Small snapshot intervals: a member down for a few seconds of writes needs a snapshot to catch up.
            let members = ChaosMembers(
                network: network, binary: options.binary, workDirectory: options.workDirectory, tls: tls,
                extraFlags: ["--snapshot-count", "200", "--experimental-snapshot-catchup-entries", "20"])
            defer {
                members.stopAll()
                network.tearDown()
            }
            try network.setUp()
            for h in 0..<3 { try members.start(h) }
            // The first member imports the shared CAs at start; the harness's client certificate comes from them.
            let caKey = members.dataDirectory(0) + "/pki/ca/clients-ca.key"
            guard await poll(for: .seconds(30), { FileManager.default.fileExists(atPath: caKey) }) else {
                throw ChaosError("m0 did not import the shared CAs (\(caKey))")
            }
            try tls.issueClient(name: "writer", from: members.dataDirectory(0))
            try await Chaos.waitForLeader(members, timeout: .seconds(30))

            let writers = Writers(members: members)
            let leaf = Double(options.leafSeconds)
            let deadline = ContinuousClock.now + options.duration
            await withTaskGroup(of: Void.self) { group in
                for w in 0..<options.writers { group.addTask { await writers.run(writer: w) } }
                var index = 0
                while true {
                    let fault: RenewalFault
                    if let scripted = options.faults {
                        guard index < scripted.count else { break }
                        fault = scripted[index]
                    } else {
                        guard ContinuousClock.now < deadline else { break }
                        fault = Self.draw(&rng, leafSeconds: leaf)
                    }
                    index += 1
                    do {
                        let done = try await inject(
                            fault, members: members, network: network, tls: tls, writers: writers, rng: &rng,
                            leafSeconds: leaf)
                        let at = Date().formatted(.iso8601.time(includingFractionalSeconds: true))
                        report.faults.append(done + " (until \(at))")
                        if case .killAndRestart = fault { report.restarts += 1 }
                    } catch {
                        report.faults.append("\(fault) failed: \(error)")
                        report.error = "\(error)"
                        break
                    }
                }
                // A few more renewals with everyone back, then stop writing.
                try? await Task.sleep(for: .seconds(leaf))
                writers.stop()
                await group.waitForAll()
            }
            report.acknowledgedPuts = writers.acknowledged.count
            report.failedPuts = writers.failures
            try await verify(members: members, tls: tls, writers: writers, report: &report)
            for h in 0..<3 {
                let log = members.log(h)
                report.reloads += log.occurrences(of: "TLS material: new handshakes use the new certificate")
                report.linkRenewals += log.occurrences(of: "re-established peer link with current TLS material")
                report.snapshotsInstalled += log.occurrences(of: "installed database snapshot from the leader")
            }
        } catch {
            report.error = "\(error)"
        }
        return report
    }

    static func draw(_ rng: inout SplitMix64, leafSeconds: Double) -> RenewalFault {
        let lifetimes = 1.5 + Double(rng.next() % 150) / 100
        switch rng.next() % 10 {
        case 0..<5: return .killAndRestart(leafLifetimes: lifetimes)
        case 5..<9: return .partition(leafLifetimes: lifetimes)
        default: return .caRotation
        }
    }

    /// Injects one fault on a follower (never the leader: the writers' puts must not fail because of the fault
    /// itself), waits until the member has caught up again, and says what was done.
    static func inject(
        _ fault: RenewalFault, members: ChaosMembers, network: ChaosNetwork, tls: ChaosTLS, writers: Writers,
        rng: inout SplitMix64, leafSeconds: Double
    ) async throws -> String {
        let leader = try await Chaos.waitForLeader(members, timeout: .seconds(20))
        let followers = (0..<members.count).filter { $0 != leader }
        let victim = followers[Int(rng.next() % UInt64(followers.count))]
        switch fault {
        case .killAndRestart(let lifetimes):
            writers.exclude(victim)
            members.crash(victim)
            try await Task.sleep(for: .milliseconds(Int64(lifetimes * leafSeconds * 1000)))
            try members.start(victim)
            try await waitCaughtUp(victim, members: members)
            writers.include(victim)
            return "kill -9 m\(victim), restarted after \(lifetimes) leaf lifetimes"
        case .partition(let lifetimes):
            writers.exclude(victim)
            var state = ChaosNetwork.LinkState()
            state.isolated = true
            try network.apply(state, to: victim)
            try await Task.sleep(for: .milliseconds(Int64(lifetimes * leafSeconds * 1000)))
            try network.apply(ChaosNetwork.LinkState(), to: victim)
            try await waitCaughtUp(victim, members: members)
            writers.include(victim)
            return "partitioned m\(victim) for \(lifetimes) leaf lifetimes"
        case .caRotation:
            try await rotateCAs(members: members, tls: tls)
            return "rotated the clients and peers CAs on every member"
        }
    }

    /// docs/TLS.md's cluster procedure, under load: one new CA pair for everyone; stage it on every member (and
    /// let the harness's clients trust both), re-issue from it on every member, give the clients a certificate of
    /// the new CA, then retire the old CA everywhere. Each member picks every step up within a second.
    static func rotateCAs(members: ChaosMembers, tls: ChaosTLS) async throws {
        let next = tls.workDirectory + "/ca-next-\(UUID().uuidString.prefix(6))"
        try Shell.run([tls.quorumctl, "pki", "init", "--out", next])
        let directories = (0..<members.count).map(members.dataDirectory)
        func everyMember(_ extra: [String]) async throws {
            for directory in directories {
                try Shell.run([tls.quorumctl, "certs", "rotate-ca", "--data-dir", directory, "--kind", "all"] + extra)
            }
            // The members poll their files every second; give every one of them time to reload.
            try await Task.sleep(for: .seconds(2))
        }
        try await everyMember(["--next-ca-dir", next])
        tls.trust(members.dataDirectory(0) + "/pki/clients/ca.crt")
        try await everyMember([])
        try tls.issueClient(name: "writer-\(UUID().uuidString.prefix(4))", from: members.dataDirectory(0))
        try await everyMember([])
    }

    /// Until the member serves and its revision reached the leader's.
    static func waitCaughtUp(_ host: Int, members: ChaosMembers, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = "no answer"
        while ContinuousClock.now < deadline {
            if let leader = try? await Chaos.currentLeader(members) {
                if leader == host { return }
            }
            if let leader = try? await Chaos.currentLeader(members),
                let target = try? await status(leader, members: members),
                let mine = try? await status(host, members: members)
            {
                if mine.header.revision >= target.header.revision && mine.leader != 0 { return }
                last = "revision \(mine.header.revision) of \(target.header.revision)"
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ChaosError("m\(host) did not catch up within \(timeout): \(last)\n\(members.log(host).suffix(3000))")
    }

    static func status(_ host: Int, members: ChaosMembers) async throws -> Etcdserverpb_StatusResponse {
        try await members.withClient(host) { client in
            var options = CallOptions.defaults
            options.timeout = .seconds(2)
            return try await Etcdserverpb_Maintenance.Client(wrapping: client).status(
                Etcdserverpb_StatusRequest(), options: options)
        }
    }

    /// Health, every acknowledged write on every member, and equal key-space hashes at one revision.
    static func verify(members: ChaosMembers, tls: ChaosTLS, writers: Writers, report: inout RenewalReport)
        async throws
    {
        let leader = try await Chaos.waitForLeader(members, timeout: .seconds(20))
        let revision = try await status(leader, members: members).header.revision
        for h in 0..<members.count { try await waitCaughtUp(h, members: members) }
        let acknowledged = writers.acknowledged
        for h in 0..<members.count {
            let endpoint = members.clientEndpoint(h)
            let health = try Shell.run(
                ["curl", "-s", "--max-time", "5"] + tls.curlArguments + ["https://\(endpoint.host):2379/health"],
                allowFailure: true)
            if !health.contains("\"health\":\"true\"") { report.unhealthy.append("m\(h): \(health)") }
            // Page by page: a long soak writes more keys than one response may carry (gRPC's 4 MiB default).
            let stored = try await members.withClient(h) { client in
                var keys = Set<String>()
                var range = Etcdserverpb_RangeRequest()
                range.key = Data("renewal/".utf8)
                range.rangeEnd = Data("renewal0".utf8)
                range.keysOnly = true
                range.serializable = true
                range.limit = 10_000
                while true {
                    let page = try await Etcdserverpb_KV.Client(wrapping: client).range(range)
                    keys.formUnion(page.kvs.map { String(decoding: $0.key, as: UTF8.self) })
                    guard page.more, let last = page.kvs.last?.key else { return keys }
                    range.key = last + [0]
                }
            }
            report.missingWrites += acknowledged.subtracting(stored).sorted().prefix(5).map { "m\(h) lacks \($0)" }
            let hash = try await members.withClient(h) { client in
                var request = Etcdserverpb_HashKVRequest()
                request.revision = revision
                return try await Etcdserverpb_Maintenance.Client(wrapping: client).hashKV(request).hash
            }
            report.hashes.append("m\(h)@\(revision) \(hash)")
        }
    }

    static func poll(for timeout: Duration, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return condition()
    }
}

/// Writers putting unique keys through the members that are not being faulted. A put that fails although its
/// member was in service from its start to its end is a failure of the run.
final class Writers: Sendable {
    let members: ChaosMembers
    private let excluded = Mutex<Set<Int>>([])
    private let stopped = Atomic<Bool>(false)
    private let acked = Mutex<Set<String>>([])
    private let failed = Mutex<[String]>([])

    init(members: ChaosMembers) {
        self.members = members
    }

    var acknowledged: Set<String> { acked.withLock { $0 } }
    var failures: [String] { failed.withLock { $0 } }

    func exclude(_ host: Int) { excluded.withLock { _ = $0.insert(host) } }
    func include(_ host: Int) { excluded.withLock { _ = $0.remove(host) } }
    func stop() { stopped.store(true, ordering: .relaxed) }
    private func serving(_ host: Int) -> Bool { !excluded.withLock { $0.contains(host) } }

    func run(writer: Int) async {
        var sequence = 0
        var turn = writer
        while !stopped.load(ordering: .relaxed) {
            turn += 1
            guard let host = (0..<members.count).map({ ($0 + turn) % members.count }).first(where: serving) else {
                try? await Task.sleep(for: .milliseconds(50))
                continue
            }
            do {
                try await members.withClient(host) { client in
                    let kv = Etcdserverpb_KV.Client(wrapping: client)
                    // A batch of puts per connection, then the next member: new handshakes all the time.
                    for _ in 0..<25 where !stopped.load(ordering: .relaxed) && serving(host) {
                        sequence += 1
                        let key = "renewal/\(writer)/\(sequence)"
                        var put = Etcdserverpb_PutRequest()
                        put.key = Data(key.utf8)
                        put.value = Data(repeating: 0x61, count: 64)
                        var options = CallOptions.defaults
                        options.timeout = .seconds(5)
                        do {
                            _ = try await kv.put(put, options: options)
                            acked.withLock { _ = $0.insert(key) }
                        } catch {
                            // Judged when it fails: a put cut off by its member's fault is not a failure of the run.
                            guard serving(host) else { break }
                            let at = Date().formatted(.iso8601.time(includingFractionalSeconds: true))
                            failed.withLock { $0.append("\(key) via m\(host) at \(at): \(error)") }
                        }
                    }
                }
            } catch  where serving(host) {
                // Only the connection itself can fail here (puts are judged above).
                let at = Date().formatted(.iso8601.time(includingFractionalSeconds: true))
                failed.withLock { $0.append("connection to m\(host) at \(at): \(error)") }
                try? await Task.sleep(for: .milliseconds(100))
            } catch {}
        }
    }
}

extension String {
    func occurrences(of needle: String) -> Int {
        components(separatedBy: needle).count - 1
    }

    /// The last `count` non-empty lines, each cut to 400 characters (a member's JSON log lines can be long).
    func lastLines(_ count: Int) -> String {
        split(separator: "\n").suffix(count).map { String($0.prefix(400)) }.joined(separator: "\n")
    }
}
