import Bolt
import EtcdProto
import EtcdSnapshot
import Foundation
import TestSupport
import Testing

/// Damaged snapshots fail with an `EtcdSnapshotError` that names the file and says what is wrong and where. The
/// sha256 trailer catches any change to the database; with the check skipped, bbolt's own structure checks still
/// refuse what they can see.
@Suite struct EtcdSnapshotCorruptionTests {
    /// A written snapshot of a few hundred revisions, and its bytes.
    struct Sample {
        let scratch: TemporaryDirectory
        let path: String
        let bytes: [UInt8]
        let revisions: [KeyRevision]

        init(_ test: String = #function) throws {
            var random = SeededRandom(test)
            scratch = TemporaryDirectory(test)
            path = scratch.file("snapshot.db")
            let history = Fixtures.history(operations: 600, using: &random)
            try EtcdSnapshotWriter.write(
                to: path, state: Fixtures.state(clusterVersion: "3.5.0", history: history), revisions: history.revisions
            )
            bytes = try Bytes.read(path)
            revisions = history.revisions
        }

        func damaged(_ name: String, _ change: (inout [UInt8]) -> Void) throws -> String {
            var copy = bytes
            change(&copy)
            let target = scratch.file(name)
            try Bytes.write(copy, to: target)
            return target
        }
    }

    /// Opens the snapshot and reads all of it; returns the error.
    func failure(_ path: String, _ check: EtcdSnapshotReader.HashCheck = .verifyIfPresent) -> EtcdSnapshotError? {
        do throws(EtcdSnapshotError) {
            let reader = try EtcdSnapshotReader(path: path, hashCheck: check)
            _ = try reader.state()
            var cursor = try reader.revisions()
            while try cursor.next() != nil {}
            _ = try reader.status()
            return nil
        } catch {
            print("  \(error.kind) → \(error)")
            return error
        }
    }

    func expectFailure(
        _ path: String, _ check: EtcdSnapshotReader.HashCheck = .verifyIfPresent, kind: EtcdSnapshotError.Kind,
        mentioning words: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let error = failure(path, check) else {
            Issue.record("reading \(path) should fail with \(kind)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.hasPrefix(path + ": "), sourceLocation: sourceLocation)
        for word in words {
            #expect(error.description.contains(word), "\(error) should mention \(word)", sourceLocation: sourceLocation)
        }
    }

    @Test func anEmptyFileAndAForeignFileAreRefused() throws {
        var random = SeededRandom()
        let scratch = TemporaryDirectory()
        let empty = scratch.file("empty")
        try Bytes.write([], to: empty)
        expectFailure(empty, kind: .database(.truncated), mentioning: ["empty"])
        let noise = scratch.file("noise")
        try Bytes.write(random.bytes(10_000), to: noise)
        expectFailure(noise, kind: .database(.notBolt), mentioning: ["not a bbolt file"])
        // Random bytes of a snapshot's size: the last 32 bytes are taken for a trailer, and do not match.
        let sized = scratch.file("sized")
        try Bytes.write(random.bytes(3 * 4096 + 32), to: sized)
        expectFailure(sized, kind: .hashMismatch, mentioning: ["sha256 mismatch"])
        expectFailure(sized, .skip, kind: .database(.notBolt))
    }

    @Test func aTruncatedSnapshotIsRefusedWhereverItWasCut() throws {
        let sample = try Sample()
        let size = sample.bytes.count
        let database = size - 32
        // Into the trailer: neither whole pages nor pages plus a trailer.
        let intoTrailer = try sample.damaged("into-trailer") { $0.removeLast(16) }
        expectFailure(intoTrailer, kind: .unexpectedSize, mentioning: ["neither whole 4096-byte pages"])
        // At a page boundary plus 32 bytes: looks like a snapshot, but the "trailer" is database bytes.
        let pageAligned = try sample.damaged("page-aligned") { $0.removeLast(size - (database - 4096 * 3 + 32)) }
        expectFailure(pageAligned, kind: .hashMismatch)
        expectFailure(pageAligned, .skip, kind: .database(.truncated), mentioning: ["truncated"])
        // Anywhere else: bbolt finds fewer pages than its meta page promises.
        for cut in [100, 4096 + 7, 8192 + 100, database / 2 + 1] {
            let path = try sample.damaged("cut-\(cut)") { $0.removeLast(size - cut) }
            expectFailure(path, kind: .database(.truncated), mentioning: ["\(cut) bytes"])
        }
        // Without the trailer it is a bare database: fine unless a trailer is required.
        let bare = try sample.damaged("bare") { $0.removeLast(32) }
        #expect(failure(bare) == nil)
        #expect(try EtcdSnapshotReader(path: bare).trailer == .absent)
        expectFailure(bare, .require, kind: .missingHash, mentioning: ["--skip-hash-check"])
    }

    @Test func aFlippedBitAnywhereIsCaughtByTheTrailer() throws {
        var random = SeededRandom()
        let sample = try Sample()
        let database = sample.bytes.count - 32
        for (name, offset) in [
            ("meta page 0", 16 + 8), ("meta page 1", 4096 + 40), ("a data page", 4096 * 2 + 100),
            ("a random byte", Int.random(in: 0..<database, using: &random)), ("the trailer", database + 5),
        ] {
            let path = try sample.damaged(name) { $0[offset] ^= 0x10 }
            expectFailure(path, kind: .hashMismatch, mentioning: ["sha256 mismatch", "offset \(database)", name])
        }
        // Skipping the hash check, bbolt still falls back to the intact meta page, as bbolt would...
        let oneMeta = try sample.damaged("one-meta") { $0[16 + 8] ^= 0x10 }
        let reader = try EtcdSnapshotReader(path: oneMeta, hashCheck: .skip)
        #expect(reader.database.metaPageID == 1)
        var cursor = try reader.revisions()
        var count = 0
        while try cursor.next() != nil { count += 1 }
        #expect(count == sample.revisions.count)
        // ...and refuses when both are damaged.
        let bothMetas = try sample.damaged("both-metas") {
            $0[16 + 8] ^= 0x10
            $0[4096 + 16 + 8] ^= 0x10
        }
        expectFailure(bothMetas, .skip, kind: .database(.checksumMismatch), mentioning: ["meta page 0", "meta page 1"])
    }

    @Test func recordsThatBreakEtcdsSchemaAreReportedWithBucketAndKey() throws {
        let scratch = TemporaryDirectory()
        func database(_ name: String, _ bucket: String, _ entries: [([UInt8], [UInt8])]) throws -> String {
            let path = scratch.file(name)
            let writer = try BoltWriter(path: path)
            try writer.writeBucket(Array(bucket.utf8), entries.map { (key: $0.0, value: $0.1) })
            _ = try writer.finish()
            return path
        }
        let notARevision = try database("revision", "key", [(Array("hello".utf8), [])])
        expectFailure(
            notARevision, kind: .invalidRecord, mentioning: ["not a revision", "bucket \"key\"", "key \"hello\""])
        let notAKeyValue = try database("kv", "key", [(BackendRevision(main: 2).keyBytes(), [0xFF, 0xFF, 0xFF])])
        expectFailure(notAKeyValue, kind: .invalidRecord, mentioning: ["revision 2.0", "mvccpb.KeyValue"])
        let shortIndex = try database("meta", "meta", [(Array("consistent_index".utf8), [1, 2, 3])])
        expectFailure(shortIndex, kind: .invalidRecord, mentioning: ["8 big-endian bytes", "key \"consistent_index\""])
        let badMember = try database("member", "members", [(Array("1".utf8), Array("{not json".utf8))])
        expectFailure(badMember, kind: .invalidRecord, mentioning: ["member JSON", "bucket \"members\""])
        let misfiled = try database("lease", "lease", [([UInt8](repeating: 0, count: 8), [0x08, 0x05, 0x10, 0x0A])])
        expectFailure(misfiled, kind: .invalidRecord, mentioning: ["lease 5 is stored under another ID"])
        let badCompaction = try database(
            "compact", "meta", [(Array("finishedCompactRev".utf8), Array("seventeen bytes!!".utf8))])
        expectFailure(badCompaction, kind: .invalidRecord, mentioning: ["17-byte revision"])
    }
}
