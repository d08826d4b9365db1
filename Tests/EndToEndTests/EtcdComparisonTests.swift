import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The same etcdctl session against real etcd 3.4 and against Quorum: outputs must match, once the values that
/// legitimately differ (cluster and member ids, terms, lease ids) are masked.
@Suite(.ownThread) struct EtcdComparisonTests {
    static let session: [[String]] = [
        ["put", "a", "1"], ["put", "b", "2"], ["put", "c", "3"], ["put", "a", "11"],
        ["get", "a", "-w", "json"], ["get", "", "--prefix", "-w", "json"], ["get", "a", "c", "-w", "json"],
        ["get", "a", "--prefix", "--limit", "1", "-w", "json"],
        ["get", "", "--from-key", "--sort-by=VERSION", "--order=DESCEND"],
        ["get", "", "--from-key", "--sort-by=CREATE", "--order=ASCEND", "--limit=2", "-w", "json"],
        ["get", "", "--from-key", "--sort-by=MOD", "--order=DESCEND", "--keys-only"],
        ["get", "", "--prefix", "--rev=2"], ["get", "", "--prefix", "--keys-only", "-w", "json"],
        ["get", "b", "a"], ["get", "a", "--consistency=s", "-w", "json"],
        ["put", "a", "--ignore-value"], ["get", "a", "-w", "json"], ["put", "zz", "--ignore-value"],
        ["del", "", "--prefix", "--prev-kv"], ["get", "a", "--rev=1000"], ["compact", "3"], ["get", "a", "--rev=2"],
        ["get", "a", "--rev=3", "-w", "json"], ["put", "", "v"], ["del", "nothing"],
        ["del", "a", "--prev-kv", "-w", "json"],
        ["alarm", "list"], ["lease", "timetolive", "1234"], ["lease", "revoke", "1234"],
        ["put", "k", "v", "--lease=1234"],
    ]

    static let transactions = [
        "value(\"a\") = \"11\"\n\nput x yes\nget a\n\nput x no\n\n",
        "mod(\"x\") > \"0\"\nversion(\"x\") = \"1\"\n\ndel x\nget x\n\n\n",
        "\nput t1 1\nput t1 2\n\n\n",
    ]

    func runSession(endpoint: String) throws -> [String] {
        var outputs: [String] = []
        for command in Self.session {
            outputs.append(normalize(try etcdctl(endpoint, command)))
        }
        for script in Self.transactions {
            outputs.append(normalize(try etcdctl(endpoint, ["txn"], input: script)))
        }
        return outputs
    }

    func normalize(_ result: CommandResult) -> String {
        var text = result.stdout
        for (pattern, replacement) in [
            (#""cluster_id":[0-9]+"#, #""cluster_id":C"#), (#""member_id":[0-9]+"#, #""member_id":M"#),
            (#""raft_term":[0-9]+"#, #""raft_term":T"#),
        ] {
            text = text.replacingOccurrences(of: pattern, with: replacement, options: .regularExpression)
        }
        // etcdctl prints errors as "Error: <grpc message>" after its own retry log lines.
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }.joined(separator: "\n")
        return "status=\(result.status)\n\(text)\(errors)"
    }

    @Test func etcdctlSessionMatchesRealEtcd() throws {
        guard let etcd = Paths.tool("etcd") else {
            throw TestFailure("real etcd is not installed: run scripts/test.sh, which installs Debian's etcd-server")
        }
        let scratch = TemporaryDirectory()
        let client = freePort()
        let peer = freePort()
        let reference = try BackgroundCommand(
            etcd,
            [
                "--name", "ref", "--data-dir", scratch.path + "/etcd.data",
                "--listen-client-urls", "http://127.0.0.1:\(client)", "--advertise-client-urls",
                "http://127.0.0.1:\(client)",
                "--listen-peer-urls", "http://127.0.0.1:\(peer)", "--initial-advertise-peer-urls",
                "http://127.0.0.1:\(peer)",
                "--initial-cluster", "ref=http://127.0.0.1:\(peer)",
            ])
        defer { reference.stop() }
        try reference.waitFor(timeout: 30) { $0.contains("ready to serve client requests") }
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }

        let expected = try runSession(endpoint: "http://127.0.0.1:\(client)")
        let actual = try runSession(endpoint: member.endpoint)
        let commands = Self.session.map { $0.joined(separator: " ") } + Self.transactions.map { "txn: \($0)" }
        for (i, command) in commands.enumerated() {
            #expect(
                actual[i] == expected[i], "etcdctl \(command)\n--- etcd:\n\(expected[i])\n--- quorum:\n\(actual[i])")
        }
    }
}
