import Foundation
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Several members on loopback, started together with one `--initial-cluster`.
final class QuorumCluster: @unchecked Sendable {
    let scratch: TemporaryDirectory
    var members: [QuorumProcess]

    init(size: Int, scratch: TemporaryDirectory = TemporaryDirectory(), extraArguments: [String] = []) {
        self.scratch = scratch
        members = (1...size).map { QuorumProcess(in: scratch, name: "m\($0)", extraArguments: extraArguments) }
        let initial = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        for m in members { m.initialCluster = initial }
    }

    var initialCluster: String { members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",") }

    var endpoints: String { members.filter(\.isRunning).map(\.endpoint).joined(separator: ",") }

    func start() throws {
        for m in members { try m.start(waitReady: false) }
        for m in members { try m.waitUntilReady() }
    }

    /// The member that reports itself leader in `endpoint status`.
    /// `credentials`: extra etcdctl flags (`--user=...`) for clusters with auth on.
    func leader(credentials: [String] = []) throws -> QuorumProcess? {
        for m in members where m.isRunning {
            let out = try etcdctl(m.endpoint, ["endpoint", "status", "-w", "json"] + credentials, timeout: 10).stdout
            guard let list = try? etcdJSON(out) as? [[String: Any]],
                let status = list.first?["Status"] as? [String: Any],
                let header = status["header"] as? [String: Any]
            else { continue }
            if let leader = status["leader"] as? String, leader == header["member_id"] as? String { return m }
        }
        return nil
    }

    /// Waits until some running member leads.
    func waitForLeader(timeout: Double = 20, credentials: [String] = []) throws -> QuorumProcess {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let l = try leader(credentials: credentials) { return l }
            usleep(100_000)
        }
        throw TestFailure("no leader within \(timeout)s")
    }

    func stopAll() {
        for m in members { m.stop() }
    }

    deinit { stopAll() }
}

/// Polls `condition` until it holds.
func eventually(timeout: Double = 20, _ what: String = "condition", _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? condition()) == true { return }
        usleep(100_000)
    }
    throw TestFailure("\(what) did not hold within \(timeout)s")
}
