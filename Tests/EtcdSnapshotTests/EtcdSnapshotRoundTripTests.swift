import Bolt
import EtcdProto
import EtcdSnapshot
import Foundation
import TestSupport
import Testing

/// What `EtcdSnapshotWriter` writes, `EtcdSnapshotReader` reads back unchanged: every revision in order, and every
/// other bucket through the model.
@Suite struct EtcdSnapshotRoundTripTests {
    func readAll(_ reader: EtcdSnapshotReader) throws -> [KeyRevision] {
        var all: [KeyRevision] = []
        try reader.forEachRevision { all.append($0) }
        return all
    }

    /// A bucket's raw entries, keys and values as text.
    func rawBucket(_ reader: EtcdSnapshotReader, _ name: [UInt8]) throws -> [String: String] {
        var cursor = try reader.database.cursor(bucket: name)
        var stored: [String: String] = [:]
        while let entry = try cursor.next() {
            stored[String(decoding: entry.key, as: UTF8.self)] = String(decoding: entry.value, as: UTF8.self)
        }
        return stored
    }

    @Test func aRandomHistoryAndAFullStateReadBackExactly() throws {
        var random = SeededRandom()
        let scratch = TemporaryDirectory()
        let history = Fixtures.history(operations: 4_000, using: &random)
        var state = Fixtures.state(clusterVersion: "3.5.0", history: history)
        state.otherEntries = [
            BackendEntry(bucket: Array("cluster".utf8), key: Array("downgrade".utf8), value: Array("{}".utf8)),
            BackendEntry(bucket: Array("future".utf8), key: Array("k".utf8), value: [1, 2, 3]),
        ]
        state.auth.enabled = true
        let path = scratch.file("snapshot.db")
        let summary = try EtcdSnapshotWriter.write(to: path, state: state, revisions: history.revisions)
        #expect(summary.revisionCount == history.revisions.count)
        #expect(summary.lastRevision == history.revisions.last?.revision)
        #expect(summary.fileSize == summary.databaseSize + 32)

        let reader = try EtcdSnapshotReader(path: path)
        #expect(reader.trailer == .verified(sha256: summary.sha256))
        #expect(try readAll(reader) == history.revisions)
        #expect(try reader.state() == state.canonical)
        let status = try reader.status()
        #expect(status.revision == history.currentRevision)
        #expect(status.totalSize == summary.databaseSize)
        // Every bucket's entries count: the revisions, 5 meta keys, 3 leases, 1 member, 1 removed member, the
        // cluster version, 1 alarm, 2 auth keys, 1 user, 1 role, and the two unknown entries.
        #expect(status.totalKey == history.revisions.count + 5 + 3 + 1 + 1 + 1 + 1 + 2 + 1 + 1 + 2)
        #expect(
            try reader.database.bucketNames().map { String(decoding: $0, as: UTF8.self) } == [
                "alarm", "auth", "authRoles", "authUsers", "cluster", "future", "key", "lease", "members",
                "members_removed", "meta",
            ])
    }

    @Test func anEmptyBackendStillHasEveryBucketEtcdCreates() throws {
        let scratch = TemporaryDirectory()
        let path = scratch.file("empty.db")
        try EtcdSnapshotWriter.write(to: path, state: BackendState(), revisions: [])
        let reader = try EtcdSnapshotReader(path: path)
        #expect(Set(try reader.database.bucketNames()) == Set(EtcdSchema.allBuckets))
        #expect(try readAll(reader).isEmpty)
        #expect(try reader.state() == BackendState())
        let status = try reader.status()
        #expect(status.revision == 0 && status.totalKey == 2)  // consistent_index and authRevision
    }

    @Test func membersAndConfStateAreStoredAsGoWouldEncodeThem() throws {
        let scratch = TemporaryDirectory()
        let path = scratch.file("members.db")
        let members = [
            BackendMember(id: UInt64.max, name: "a<b>&\"c\"\\\n\u{1}é", peerURLs: ["http://[::1]:2380"]),
            BackendMember(id: 1, name: "", peerURLs: ["http://10.0.0.1:2380", "https://h:2380"], isLearner: true),
        ]
        let confState = BackendConfState(voters: [UInt64.max], learners: [1], autoLeave: true)
        let state = BackendState(
            meta: BackendMeta(consistentIndex: 1, term: 2, confState: confState),
            cluster: BackendCluster(members: members))
        try EtcdSnapshotWriter.write(to: path, state: state, revisions: [])
        let reader = try EtcdSnapshotReader(path: path)
        let stored = try rawBucket(reader, EtcdSchema.membersBucket)
        let escapedName = #""name":"a\u003cb\u003e\u0026\"c\"\\\n\u0001é""#
        #expect(
            stored["ffffffffffffffff"]
                == #"{"id":18446744073709551615,"peerURLs":["http://[::1]:2380"],"# + escapedName + "}")
        #expect(stored["1"] == #"{"id":1,"peerURLs":["http://10.0.0.1:2380","https://h:2380"],"isLearner":true}"#)
        let meta = try rawBucket(reader, EtcdSchema.metaBucket)
        #expect(meta["confState"] == #"{"voters":[18446744073709551615],"learners":[1],"auto_leave":true}"#)
        let read = try reader.state()
        #expect(Set(read.cluster.members) == Set(members))
        #expect(read.meta.confState == confState)
    }

    @Test func revisionsOutOfOrderOrDuplicatedAreRefused() throws {
        let scratch = TemporaryDirectory()
        let writer = try EtcdSnapshotWriter(path: scratch.file("bad.db"))
        try writer.append(
            .put(Array("a".utf8), [], revision: BackendRevision(main: 5, sub: 1), createRevision: 5, version: 1))
        for revision in [BackendRevision(main: 5, sub: 1), BackendRevision(main: 5, sub: 0), BackendRevision(main: 4)] {
            let error = #expect(throws: EtcdSnapshotError.self) {
                try writer.append(.tombstone(Array("a".utf8), revision: revision))
            }
            #expect(error?.kind == .invalidArgument)
            #expect(error?.message.contains("revisions must ascend") == true)
        }
        let negative = #expect(throws: EtcdSnapshotError.self) {
            try writer.append(.tombstone(Array("a".utf8), revision: BackendRevision(main: -1)))
        }
        #expect(negative?.message.contains("negative") == true)
        var state = BackendState()
        state.leases = [BackendLease(id: 1, ttl: 5), BackendLease(id: 1, ttl: 6)]
        let duplicate = #expect(throws: EtcdSnapshotError.self) { try writer.finish(state) }
        #expect(duplicate?.kind == .invalidArgument)
        #expect(duplicate?.description.contains("bucket \"lease\"") == true)
    }

    @Test func aMillionRevisionsStreamWithAFewHundredSeparatorsInMemory() throws {
        let scratch = TemporaryDirectory()
        let path = scratch.file("million.db")
        let writer = try EtcdSnapshotWriter(path: path)
        var kv = Mvccpb_KeyValue()
        kv.key = Data("k".utf8)
        kv.value = Data("v".utf8)
        kv.version = 1
        let count = 1_000_000
        var revision = KeyRevision(revision: BackendRevision(main: 1), keyValue: kv)
        for main in 2...Int64(count + 1) {
            revision.revision.main = main
            revision.keyValue.modRevision = main
            revision.keyValue.createRevision = main
            try writer.append(revision)
        }
        // The leaf pages (about 17,000 of them) went to disk as they filled; what stays is one partly filled
        // branch page per level of the tree.
        #expect(writer.retainedSeparatorCount < 300)
        let summary = try writer.finish(BackendState())
        print("1M revisions: \(summary.databaseSize) bytes, at most \(summary.peakRetainedSeparators) separators held")
        #expect(summary.peakRetainedSeparators < 300)
        #expect(summary.databaseSize > Int64(count) * 40)
        let reader = try EtcdSnapshotReader(path: path, hashCheck: .skip)
        var cursor = try reader.revisions()
        var seen = 0
        while let next = try cursor.next(), seen < 1_000 {
            #expect(next.revision.main == Int64(seen + 2))
            seen += 1
        }
    }
}
