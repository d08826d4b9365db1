import Foundation
import TestSupport
import Testing

/// The real etcdctl 3.4 against one Quorum member: the key-value surface.
@Suite(.serialized, .ownThread) final class EtcdctlKVTests {
    let scratch = TemporaryDirectory()
    let member: QuorumProcess

    init() throws {
        member = QuorumProcess(in: scratch)
        try member.start()
    }

    deinit { member.stop() }

    func ctl(_ args: String..., input: String? = nil) throws -> CommandResult {
        try etcdctl(member.endpoint, args, input: input)
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try etcdJSON(text) as? [String: Any])
    }

    @Test func putGetDeleteWithPrefixesLimitsRevisionsAndSorting() throws {
        #expect(try ctl("put", "app/a", "1").stdout == "OK\n")
        #expect(try ctl("put", "app/b", "22").ok)
        #expect(try ctl("put", "app/c", "333").ok)
        #expect(try ctl("put", "app/a", "4444").ok)
        #expect(try ctl("put", "other", "x").ok)

        #expect(try ctl("get", "app/a").stdout == "app/a\n4444\n")
        #expect(try ctl("get", "app/", "--prefix", "--keys-only").stdout == "app/a\n\napp/b\n\napp/c\n\n")
        #expect(try ctl("get", "app/", "--prefix", "--limit=2", "--print-value-only").stdout == "4444\n22\n")
        #expect(try ctl("get", "app/a", "app/c", "--keys-only").stdout == "app/a\n\napp/b\n\n")
        #expect(
            try ctl("get", "app/", "--prefix", "--sort-by=VALUE", "--order=DESCEND", "--print-value-only").stdout
                == "4444\n333\n22\n")
        #expect(try ctl("get", "app/", "--from-key", "--keys-only").stdout == "app/a\n\napp/b\n\napp/c\n\nother\n\n")

        let response = try json(try ctl("get", "app/a", "-w", "json").stdout)
        let header = try #require(response["header"] as? [String: Any])
        let revision = try #require(header["revision"] as? Int)
        #expect((header["cluster_id"] as? String ?? "0") != "0" && (header["member_id"] as? String ?? "0") != "0")
        #expect((header["raft_term"] as? Int ?? 0) >= 1)
        let kv = try #require((response["kvs"] as? [[String: Any]])?.first)
        #expect(kv["version"] as? Int == 2)
        #expect((kv["create_revision"] as? Int ?? 0) < (kv["mod_revision"] as? Int ?? 0))
        // The first version is still readable at its revision.
        let created = kv["create_revision"] as! Int
        #expect(try ctl("get", "app/a", "--rev=\(created)", "--print-value-only").stdout == "1\n")
        let limitedJSON = try json(try ctl("get", "app/", "--prefix", "--limit=1", "-w", "json").stdout)
        #expect(limitedJSON["count"] as? Int == 3 && limitedJSON["more"] as? Bool == true)

        #expect(try ctl("del", "app/", "--prefix", "--prev-kv").stdout == "3\napp/a\n4444\napp/b\n22\napp/c\n333\n")
        #expect(try ctl("get", "app/", "--prefix").stdout == "")
        let after = try json(try ctl("get", "other", "-w", "json").stdout)
        #expect((after["header"] as! [String: Any])["revision"] as? Int == revision + 1)
        #expect(try ctl("put", "k", "new", "--prev-kv").stdout == "OK\n")
        #expect(try ctl("put", "k", "newer", "--prev-kv").stdout == "OK\nk\nnew\n")
    }

    @Test func transactionsAsEtcdctlWritesThem() throws {
        #expect(try ctl("put", "txn/flag", "on").ok)
        let script = """
            value("txn/flag") = "on"

            put txn/result yes
            get txn/flag

            put txn/result no


            """
        let success = try ctl("txn", input: script)
        #expect(success.stdout == "SUCCESS\n\nOK\n\ntxn/flag\non\n")
        #expect(try ctl("get", "txn/result", "--print-value-only").stdout == "yes\n")
        let failure = try ctl("txn", input: script.replacingOccurrences(of: "\"on\"", with: "\"off\""))
        #expect(failure.stdout == "FAILURE\n\nOK\n")
        #expect(try ctl("get", "txn/result", "--print-value-only").stdout == "no\n")
        let compares = """
            mod("txn/flag") > "0"
            version("txn/flag") = "1"
            create("txn/missing") = "0"

            put txn/multi ok



            """
        let compared = try ctl("txn", input: compares)
        #expect(compared.stdout.hasPrefix("SUCCESS"), "\(compared.stdout)\(compared.stderr)")
    }

    @Test func compactionAndItsErrors() throws {
        for i in 1...5 { #expect(try ctl("put", "c/key", "v\(i)").ok) }
        let status = try json(try ctl("get", "c/key", "-w", "json").stdout)
        let revision = (status["header"] as! [String: Any])["revision"] as! Int
        #expect(try ctl("compact", "\(revision - 1)").stdout == "compacted revision \(revision - 1)\n")
        let old = try ctl("get", "c/key", "--rev=\(revision - 2)")
        #expect(!old.ok && old.stderr.contains("etcdserver: mvcc: required revision has been compacted"))
        #expect(try ctl("get", "c/key", "--rev=\(revision - 1)", "--print-value-only").stdout == "v4\n")
        let future = try ctl("get", "c/key", "--rev=\(revision + 100)")
        #expect(!future.ok && future.stderr.contains("etcdserver: mvcc: required revision is a future revision"))
        let again = try ctl("compact", "\(revision - 1)")
        #expect(!again.ok && again.stderr.contains("required revision has been compacted"))
        #expect(try ctl("compact", "\(revision)", "--physical").ok)
    }

    @Test func badInputGetsEtcdsErrors() throws {
        let empty = try ctl("put", "", "v")
        #expect(!empty.ok && empty.stderr.contains("etcdserver: key is not provided"))
        let lease = try ctl("put", "k", "v", "--lease=1234abcd")
        #expect(!lease.ok && lease.stderr.contains("etcdserver: requested lease not found"))
        let ignore = try ctl("put", "never-written", "--ignore-value")
        #expect(!ignore.ok && ignore.stderr.contains("etcdserver: key not found"))
        // The value comes on standard input: it is too long for an argument.
        let tooLarge = try ctl("put", "big", input: String(repeating: "x", count: 1_600_000))
        #expect(!tooLarge.ok && tooLarge.stderr.contains("etcdserver: request is too large"))
        var txn = ""
        for i in 0..<200 { txn += "put many/\(i) v\n" }
        let tooMany = try ctl("txn", input: "\n" + txn + "\n\n")
        #expect(!tooMany.ok && tooMany.stderr.contains("etcdserver: too many operations in txn request"))
        let duplicate = try ctl("txn", input: "\nput d 1\nput d 2\n\n\n")
        #expect(!duplicate.ok && duplicate.stderr.contains("etcdserver: duplicate key given in txn request"))
        // The member is still healthy afterwards.
        #expect(try ctl("endpoint", "health").ok)
    }

    @Test func electionsAndLocksWork() throws {
        let holder = try etcdctlInBackground(member.endpoint, ["lock", "e2e-lock", "sleep", "2"])
        defer { holder.stop() }
        // The holder's key under the lock's prefix is the event: from then on the lock is taken.
        try waitUntil("the first holder takes the lock", timeout: 30) {
            try ctl("get", "e2e-lock/", "--prefix", "--keys-only").stdout.contains("e2e-lock/")
        }
        let start = Date()
        let second = try ctl("lock", "e2e-lock", "echo", "acquired")
        #expect(second.stdout == "acquired\n")
        #expect(Date().timeIntervalSince(start) > 0.8)  // it waited for the first holder

        let candidate = try etcdctlInBackground(member.endpoint, ["elect", "e2e-election", "alice"])
        defer { candidate.stop() }
        try candidate.waitFor { $0.contains("alice") }
        let observed = try etcdctlInBackground(member.endpoint, ["elect", "-l", "e2e-election"])
        defer { observed.stop() }
        try observed.waitFor { $0.contains("e2e-election/") && $0.contains("alice") }
    }
}
