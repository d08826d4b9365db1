import Bolt
import EtcdProto
import EtcdSnapshot
import Foundation
import TestSupport
import Testing

/// The acceptance: snapshots go both ways between Quorum's code and the real etcd 3.4.23 and 3.5.1 tools.
///
/// Written by `EtcdSnapshotWriter`, a snapshot passes `snapshot status` with the numbers `SnapshotStatus` computes,
/// restores with `snapshot restore`, and a real etcd started on the restored data serves every key, revision,
/// lease, user, role and alarm the snapshot held. Saved by a real etcd with `etcdctl snapshot save`, a snapshot reads
/// through `EtcdSnapshotReader` as exactly what that etcd answers to `etcdctl get`, now and at past revisions.
@Suite(.serialized) struct EtcdInteropTests {
    /// A snapshot of several thousand revisions with something in every bucket, written for `release`.
    struct WrittenSnapshot {
        let scratch: TemporaryDirectory
        let path: String
        let history: History
        let state: BackendState
        let summary: EtcdSnapshotWriter.Summary

        init(for release: EtcdRelease, test: String = #function) throws {
            var random = SeededRandom(test + " \(release)")
            scratch = TemporaryDirectory(test)
            path = scratch.file("written.db")
            history = Fixtures.history(operations: 3_000, using: &random)
            state = Fixtures.state(clusterVersion: release.clusterVersion, history: history)
            summary = try EtcdSnapshotWriter.write(to: path, state: state, revisions: history.revisions)
            print(
                "wrote \(history.revisions.count) revisions up to \(history.currentRevision), compacted at "
                    + "\(history.compactedAt ?? 0): \(summary.fileSize) bytes")
        }
    }

    @Test(arguments: EtcdRelease.allCases)
    func aWrittenSnapshotPassesEtcdsSnapshotStatusWithTheSameNumbers(release: EtcdRelease) throws {
        let snapshot = try WrittenSnapshot(for: release)
        let ours = try EtcdSnapshotReader(path: snapshot.path, hashCheck: .require).status()
        let theirs = try release.status(of: snapshot.path)
        #expect(
            theirs
                == ToolStatus(
                    hash: ours.hash, revision: ours.revision, totalKey: ours.totalKey, totalSize: ours.totalSize))
        #expect(theirs.revision == snapshot.history.currentRevision)
        #expect(theirs.totalKey > snapshot.history.revisions.count)
    }

    @Test(arguments: EtcdRelease.allCases)
    func aWrittenSnapshotRestoresIntoARealMemberThatServesEveryKey(release: EtcdRelease) throws {
        let snapshot = try WrittenSnapshot(for: release)
        let history = snapshot.history
        let member = EtcdMember(release, in: snapshot.scratch)
        try release.restore(snapshot.path, into: member.dataDirectory, name: member.name, peerURL: member.peerURL)
        try member.start()
        defer { member.stop() }

        let head = try member.getAll()
        #expect(head.revision == history.currentRevision)
        let expected = history.view(at: history.currentRevision)
        #expect(head.kvs.count == expected.count)
        #expect(head.kvs == expected)
        print("\(release) serves \(head.kvs.count) keys at revision \(head.revision), as written")

        // History survives too: any revision from the compaction on reads as it was; older ones are compacted.
        let compacted = try #require(history.compactedAt)
        for revision in [compacted, (compacted + history.currentRevision) / 2, history.currentRevision - 1] {
            #expect(try member.getAll(revision: revision).kvs == history.view(at: revision), "at revision \(revision)")
        }
        let old = try release.etcdctl(member.endpoint, ["get", "", "--prefix", "--rev=\(compacted - 1)"])
        #expect(!old.ok && old.stderr.contains("required revision has been compacted"))

        // Leases keep their IDs and granted TTLs. etcd 3.4 resumes a checkpointed lease from its remaining time;
        // etcd 3.5.1 restarts every lease from its full TTL (persisted checkpoints came back behind a flag in 3.5.3).
        let leases = try member.leases()
        #expect(Set(leases.keys) == Set(Fixtures.leases.map(\.id)))
        for lease in Fixtures.leases {
            let observed = try #require(leases[lease.id])
            print("\(release) lease \(lease.id): granted \(observed.granted)s, \(observed.remaining)s left")
            #expect(observed.granted == lease.ttl, "lease \(lease.id)")
            let start = lease.remainingTTL > 0 && release == .v34 ? lease.remainingTTL : lease.ttl
            #expect(observed.remaining <= start && observed.remaining > start - 120, "lease \(lease.id)")
        }

        // Users, roles and alarms came through their buckets.
        #expect(try member.etcdctl(["user", "list"]).stdout == "alice\n")
        #expect(try member.etcdctl(["user", "get", "alice"]).stdout.contains("Roles: reader"))
        #expect(try member.etcdctl(["role", "list"]).stdout == "reader\n")
        #expect(try member.etcdctl(["role", "get", "reader"]).stdout.contains("[app/, app0)"))
        let alarms = try member.etcdctl(["alarm", "list"]).stdout
        #expect(alarms.contains("memberID:\(0x0102_0304_0506_0708) alarm:NOSPACE"), "\(alarms)")
    }

    @Test(arguments: EtcdRelease.allCases)
    func aSnapshotSavedByARealMemberReadsAsEtcdctlSeesIt(release: EtcdRelease) throws {
        var random = SeededRandom("real \(release)")
        let scratch = TemporaryDirectory()
        let member = EtcdMember(release, in: scratch)
        try member.start()
        defer { member.stop() }

        // Transactions of many puts (sub revisions, and enough keys for a multi-page key bucket in bbolt).
        for batch in 0..<12 {
            let puts = (0..<100).map { "put batch/\(batch)/\($0) v\(random.next() % 1000)" }
            _ = try member.etcdctl(["txn"], input: "\n" + puts.joined(separator: "\n") + "\n\n\n")
        }
        // Overwrites, deletes (single and by prefix), a large value, an empty one.
        for i in 0..<10 { _ = try member.etcdctl(["put", "batch/0/\(i)", "overwritten-\(i)"]) }
        _ = try member.etcdctl(["del", "batch/1/5"])
        _ = try member.etcdctl(["del", "batch/2/", "--prefix"])
        _ = try member.etcdctl(["put", "large", String(repeating: "L", count: 10_000)])
        _ = try member.etcdctl(["put", "empty", ""])
        // Leases with keys.
        var leaseIDs: [Int64] = []
        for ttl in [3600, 7200] {
            // "lease 694d… granted with TTL(3600s)"
            let granted = try member.etcdctl(["lease", "grant", "\(ttl)"]).stdout
            let hexID = try #require(granted.split(separator: " ").dropFirst().first)
            let id = try #require(UInt64(hexID, radix: 16))
            leaseIDs.append(Int64(bitPattern: id))
            _ = try member.etcdctl(["put", "leased/\(ttl)/a", "x", "--lease=\(hexID)"])
            _ = try member.etcdctl(["put", "leased/\(ttl)/b", "y", "--lease=\(hexID)"])
        }
        // A compaction (waited for), then more history after it.
        let compactAt = try member.getAll().revision - 3
        _ = try member.etcdctl(["compact", "\(compactAt)", "--physical"])
        for i in 0..<5 { _ = try member.etcdctl(["put", "after/\(i % 2)", "\(i)"]) }
        _ = try member.etcdctl(["del", "batch/3/", "--prefix"])

        let head = try member.getAll()
        var past: [Int64: [ObservedKV]] = [:]
        for revision in [compactAt, compactAt + 2, head.revision - 1] {
            past[revision] = try member.getAll(revision: revision).kvs
        }
        let leases = try member.leases()
        let path = scratch.file("saved.db")
        _ = try member.etcdctl(["snapshot", "save", path])
        member.stop()

        let reader = try EtcdSnapshotReader(path: path, hashCheck: .require)
        guard case .verified = reader.trailer else {
            Issue.record("the trailer of etcdctl's snapshot was not verified: \(reader.trailer)")
            return
        }
        var revisions: [KeyRevision] = []
        try reader.forEachRevision { revisions.append($0) }
        let meta = reader.database.meta
        print(
            "\(release) snapshot: \(revisions.count) revisions in \(meta.highWaterMark) pages, freelist "
                + (meta.freelistPageID == BoltFormat.noFreelist ? "not persisted" : "at page \(meta.freelistPageID)"))
        #expect(revisions.last?.revision.main == head.revision)
        #expect(History.view(of: revisions, at: head.revision) == head.kvs)
        for (revision, kvs) in past {
            #expect(History.view(of: revisions, at: revision) == kvs, "at revision \(revision)")
        }
        #expect(revisions.allSatisfy { $0.revision.main >= compactAt || !$0.isTombstone })

        let state = try reader.state()
        #expect(state.meta.scheduledCompactRevision == compactAt)
        #expect(state.meta.finishedCompactRevision == compactAt)
        #expect(state.meta.consistentIndex > 0)
        #expect(state.cluster.version == release.clusterVersion)
        #expect(state.cluster.members.map(\.name) == ["m1"])
        #expect(state.cluster.members.first?.peerURLs == [member.peerURL])
        #expect(Set(state.leases.map(\.id)) == Set(leaseIDs))
        #expect(Set(state.leases.map(\.id)) == Set(leases.keys))
        for lease in state.leases { #expect(lease.ttl == leases[lease.id]?.granted) }
        #expect(state.auth.revision >= 1 && !state.auth.enabled)
        switch release {
        case .v34:
            #expect(state.meta.term == nil && state.meta.confState == nil)
        case .v35:
            #expect((state.meta.term ?? 0) >= 1)
            #expect(state.meta.confState?.voters == state.cluster.members.map(\.id))
        }
        #expect(state.otherEntries == [])
        #expect(try reader.database.check() == [])

        let ours = try reader.status()
        let theirs = try release.status(of: path)
        #expect(
            theirs
                == ToolStatus(
                    hash: ours.hash, revision: ours.revision, totalKey: ours.totalKey, totalSize: ours.totalSize))

        // The member's own backend file, copied out of its data directory, is the same database without a trailer.
        let raw = try EtcdSnapshotReader(path: member.dataDirectory + "/member/snap/db")
        #expect(raw.trailer == .absent)
        var rawRevisions: [KeyRevision] = []
        try raw.forEachRevision { rawRevisions.append($0) }
        #expect(rawRevisions == revisions)
        #expect(try raw.state().leases.count == state.leases.count)
        #expect(try raw.database.check() == [])
        #expect(throws: EtcdSnapshotError.self) {
            try EtcdSnapshotReader(path: member.dataDirectory + "/member/snap/db", hashCheck: .require)
        }
    }
}
