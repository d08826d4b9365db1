import Foundation
import TestSupport
import Testing

/// The real etcdctl 3.4 against one Quorum member: watches and leases.
@Suite(.serialized, .ownThread) final class EtcdctlWatchLeaseTests {
    let scratch = TemporaryDirectory()
    let member: QuorumProcess

    init() throws {
        member = QuorumProcess(in: scratch)
        try member.start()
    }

    deinit { member.stop() }

    func ctl(_ args: String...) throws -> CommandResult { try etcdctl(member.endpoint, args) }

    @Test func prefixWatchSeesPutsAndDeletesInOrder() throws {
        // From the next revision on, however late the watch is established: no event can be missed.
        let header = try etcdJSON(try ctl("get", "w/", "--prefix", "-w", "json").stdout) as? [String: Any]
        let revision = ((header?["header"] as? [String: Any])?["revision"] as? NSNumber)?.int64Value ?? 0
        let watch = try etcdctlInBackground(member.endpoint, ["watch", "w/", "--prefix", "--rev=\(revision + 1)"])
        defer { watch.stop() }
        #expect(try ctl("put", "w/1", "a").ok)
        #expect(try ctl("put", "elsewhere", "b").ok)
        #expect(try ctl("put", "w/2", "c").ok)
        #expect(try ctl("del", "w/1").ok)
        try watch.waitFor { $0.contains("DELETE") }
        #expect(watch.output == "PUT\nw/1\na\nPUT\nw/2\nc\nDELETE\nw/1\n\n")
    }

    @Test func historicalWatchReplaysFromARevision() throws {
        for i in 1...3 { #expect(try ctl("put", "h/key", "v\(i)").ok) }
        let json = try ctl("get", "h/key", "-w", "json").stdout
        let object = try etcdJSON(json) as! [String: Any]
        let kv = (object["kvs"] as! [[String: Any]])[0]
        let created = kv["create_revision"] as! Int
        let watch = try etcdctlInBackground(member.endpoint, ["watch", "h/key", "--rev=\(created)", "--prev-kv"])
        defer { watch.stop() }
        try watch.waitFor { $0.components(separatedBy: "PUT").count == 4 }
        #expect(watch.output.hasPrefix("PUT\nh/key\nv1\nPUT\nh/key\nv1\nh/key\nv2\nPUT\nh/key\nv2\nh/key\nv3\n"))
        #expect(try ctl("put", "h/key", "v4").ok)
        try watch.waitFor { $0.contains("v4") }
    }

    @Test func leaseGrantKeepAliveRevokeAndExpiry() throws {
        let grant = try ctl("lease", "grant", "3")
        #expect(grant.stdout.hasPrefix("lease ") && grant.stdout.hasSuffix(" granted with TTL(3s)\n"))
        let id = grant.stdout.split(separator: " ")[1]
        #expect(try ctl("put", "leased/a", "1", "--lease=\(id)").ok)
        #expect(try ctl("put", "leased/b", "2", "--lease=\(id)").ok)
        let ttl = try ctl("lease", "timetolive", String(id), "--keys").stdout
        #expect(ttl.contains("granted with TTL(3s)") && ttl.contains("attached keys([leased/a leased/b])"))
        #expect(try ctl("lease", "list").stdout.contains(String(id)))

        // Kept alive past its TTL, the keys stay.
        let keeper = try etcdctlInBackground(member.endpoint, ["lease", "keep-alive", String(id)])
        try keeper.waitFor { $0.contains("keepalived with TTL(3)") }
        Thread.sleep(forTimeInterval: 4)
        #expect(try ctl("get", "leased/a", "--print-value-only").stdout == "1\n")
        keeper.stop()
        // Left alone, the lease expires and both keys go.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try ctl("get", "leased/", "--prefix", "--keys-only").stdout != "" {
            Thread.sleep(forTimeInterval: 0.25)
        }
        #expect(try ctl("get", "leased/", "--prefix", "--keys-only").stdout == "")
        #expect(try ctl("lease", "timetolive", String(id)).stdout == "lease \(id) already expired\n")

        let second = try ctl("lease", "grant", "100").stdout.split(separator: " ")[1]
        #expect(try ctl("put", "leased/c", "3", "--lease=\(second)").ok)
        #expect(try ctl("lease", "revoke", String(second)).stdout == "lease \(second) revoked\n")
        #expect(try ctl("get", "leased/c").stdout == "")
        let missing = try ctl("lease", "revoke", String(second))
        #expect(!missing.ok && missing.stderr.contains("etcdserver: requested lease not found"))
    }
}
