import EtcdProto
import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Concurrent writers, `kill -9` at a random moment, restart: every acknowledged write must be there, the
/// revisions continuous, the history replayable. Repeated on one data directory, so crashes stack up.
@Suite(.ownThread) struct CrashRecoveryTests {
    /// Rounds in the suite; `QUORUM_CRASH_ROUNDS` raises it for a soak.
    static var rounds: Int { Int(ProcessInfo.processInfo.environment["QUORUM_CRASH_ROUNDS"] ?? "") ?? 20 }

    @Test func acknowledgedWritesSurviveKillNine() async throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        var generator = SystemRandomNumberGenerator()
        let acknowledged = Acknowledged()
        for round in 0..<Self.rounds {
            try member.start()
            let port = member.clientPort
            let crashAfter = Double.random(in: 0.15...0.8, using: &generator)
            await withTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    group.addTask {
                        _ = try? await EtcdClient.with(port: port) { client in
                            var sequence = 0
                            while sequence < 100_000 {
                                let key = "crash/r\(round)/w\(writer)/\(sequence)"
                                _ = try await client.put(key, "v\(sequence)")
                                acknowledged.record(key, "v\(sequence)")
                                sequence += 1
                            }
                        }
                    }
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(crashAfter))
                    member.stop(signal: SIGKILL)
                }
            }
            #expect(!member.isRunning)
        }
        try member.start()
        defer { member.stop() }
        let expected = acknowledged.all
        #expect(expected.count > Self.rounds * 4, "the writers barely wrote anything")
        let stored = try await EtcdClient.with(port: member.clientPort) { client in
            try await client.range("crash/", prefix: true)
        }
        var present: [String: String] = [:]
        for kv in stored.kvs {
            present[String(decoding: kv.key, as: UTF8.self)] = String(decoding: kv.value, as: UTF8.self)
        }
        let lost = expected.filter { present[$0.key] != $0.value }
        #expect(lost.isEmpty, "acknowledged writes lost after kill -9: \(lost.keys.sorted().prefix(10))")
        // Every key was written once, so the mod revisions are exactly 2...current: no gap, no reuse.
        let revisions = stored.kvs.map(\.modRevision).sorted()
        #expect(revisions == Array(2...(stored.header.revision)))
        // The whole history replays in order through a watch from the first revision.
        let total = stored.kvs.count
        let events = try await EtcdClient.with(port: member.clientPort) { client in
            try await client.events(prefix: "crash/", from: 1) { $0.count >= total }
        }
        #expect(events.map(\.kv.modRevision) == revisions)
    }
}

/// Writes the server acknowledged, shared by the writer tasks.
final class Acknowledged: Sendable {
    private let writes = Mutex<[String: String]>([:])
    func record(_ key: String, _ value: String) { writes.withLock { $0[key] = value } }
    var all: [String: String] { writes.withLock { $0 } }
}
