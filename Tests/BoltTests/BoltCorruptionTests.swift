import Bolt
import Foundation
import TestSupport
import Testing

/// Damaged and foreign files produce a `BoltError` that names the file, says what is wrong and where — never a
/// crash, never a hang, never silently wrong structure.
@Suite struct BoltCorruptionTests {
    /// A file with an inline bucket and a bucket of 5000 keys (a branch root over leaves), and its bytes.
    struct Sample {
        let scratch: TemporaryDirectory
        let path: String
        let bytes: [UInt8]
        let pageSize = 4096
        /// The root page of bucket "many" (a branch page).
        let manyRoot: Int

        init(_ test: String = #function) throws {
            scratch = TemporaryDirectory(test)
            path = scratch.file("db")
            let writer = try BoltWriter(path: path)
            try writer.writeBucket([UInt8]("few"), [([UInt8]("k"), [UInt8]("v"))])
            try writer.writeBucket(
                [UInt8]("many"), (0..<5000).map { ([UInt8]("key-\(100_000 + $0)"), [UInt8]("value-\($0)")) })
            _ = try writer.finish()
            bytes = try Bytes.read(path)
            var root = try BoltReader(path: path).rootCursor()
            var many = 0
            while let entry = try root.next() {
                if entry.key == [UInt8]("many") {
                    many = Int(entry.value.prefix(8).reversed().reduce(0) { $0 << 8 | UInt64($1) })
                }
            }
            manyRoot = many
        }

        /// Writes a damaged copy and returns its path.
        func damaged(_ name: String, _ change: (inout [UInt8]) -> Void) throws -> String {
            var copy = bytes
            change(&copy)
            let target = scratch.file(name)
            try Bytes.write(copy, to: target)
            return target
        }

        func u16(_ bytes: [UInt8], _ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
            (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }
        }
        func put64(_ value: UInt64, _ bytes: inout [UInt8], _ at: Int) {
            for i in 0..<8 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
        /// The child page id of branch element `index` of the page at `page`.
        func child(of page: Int, _ index: Int) -> UInt64 { u64(bytes, page * pageSize + 16 + index * 16 + 8) }
    }

    func expectFailure(
        _ path: String, kind: BoltError.Kind, mentioning words: [String] = [], page: UInt64? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let error = readEverything(path)
        #expect(error != nil, "reading \(path) should fail", sourceLocation: sourceLocation)
        guard let error else { return }
        print("  \(kind) → \(error)")
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        #expect(error.path == path && error.description.hasPrefix(path), sourceLocation: sourceLocation)
        for word in words {
            #expect(error.description.contains(word), "\(error) should mention \(word)", sourceLocation: sourceLocation)
        }
        if let page { #expect(error.pageID == page, "\(error)", sourceLocation: sourceLocation) }
    }

    @Test func anEmptyFileIsReportedAsTruncated() throws {
        let scratch = TemporaryDirectory()
        let path = scratch.file("empty")
        try Bytes.write([], to: path)
        expectFailure(path, kind: .truncated, mentioning: ["empty"])
    }

    @Test func aFileThatIsNotBboltIsRecognisedAsSuch() throws {
        var random = SeededRandom()
        let scratch = TemporaryDirectory()
        let noise = scratch.file("noise")
        try Bytes.write(random.bytes(3 * 4096 + 17), to: noise)
        expectFailure(noise, kind: .notBolt, mentioning: ["not a bbolt file", "bad magic"])
        let text = scratch.file("text")
        try Bytes.write([UInt8](String(repeating: "just some text\n", count: 1000).utf8), to: text)
        expectFailure(text, kind: .notBolt, mentioning: ["meta page 0", "meta page 1"])
        let missing = scratch.file("missing")
        expectFailure(missing, kind: .io, mentioning: ["cannot open"])
    }

    @Test func aTruncatedFileIsReportedWithTheSizesInvolved() throws {
        let sample = try Sample()
        let size = sample.bytes.count
        for cut in [10, 79, 4095, 4096 + 100, 8192, 8192 + 4096 * 3 + 5, size / 2, size - 4096, size - 1] {
            let path = try sample.damaged("cut-\(cut)") { $0.removeLast(size - cut) }
            expectFailure(path, kind: .truncated, mentioning: cut < 80 ? ["too short"] : ["truncated", "\(cut) bytes"])
        }
    }

    @Test func aBitFlipInOneMetaPageFallsBackToTheOtherAsBboltDoes() throws {
        let sample = try Sample()
        let expected = try dumpAll(try BoltReader(path: sample.path))
        // Page 0 holds the newer meta (txid 2), page 1 the same tree at txid 1.
        let first = try sample.damaged("meta0") { $0[16 + 40] ^= 0x04 }  // a bit of the freelist page id
        let reader = try BoltReader(path: first)
        #expect(reader.metaPageID == 1 && reader.meta.transactionID == 1)
        #expect(reader.rejectedMeta?.kind == .checksumMismatch)
        #expect(reader.rejectedMeta?.description.contains("meta page 0: meta checksum mismatch") == true)
        #expect(try dumpAll(reader) == expected)

        let second = try sample.damaged("meta1") { $0[4096 + 16 + 48] ^= 0x80 }  // a bit of the high-water mark
        let other = try BoltReader(path: second)
        #expect(other.metaPageID == 0 && other.rejectedMeta?.pageID == 1)

        let both = try sample.damaged("both") {
            $0[16 + 8] ^= 0x01
            $0[4096 + 16 + 32] ^= 0x10
        }
        expectFailure(both, kind: .checksumMismatch, mentioning: ["no valid meta page", "meta page 0", "meta page 1"])
        let version = try sample.damaged("version") {
            $0[16 + 4] = 9
            $0[4096 + 16 + 4] = 9
        }
        expectFailure(version, kind: .unsupportedVersion, mentioning: ["format version 9"])
    }

    @Test func damagedPageStructureIsCaughtWithThePageNamed() throws {
        let sample = try Sample()
        let root = sample.manyRoot
        let rootOffset = root * sample.pageSize
        #expect(sample.u16(sample.bytes, rootOffset + 8) == 0x01, "bucket 'many' should have a branch root")
        let firstLeaf = Int(sample.child(of: root, 0))
        let leafOffset = firstLeaf * sample.pageSize

        let wrongID = try sample.damaged("id") { $0[leafOffset] ^= 0x01 }
        expectFailure(wrongID, kind: .corrupt, mentioning: ["page header says it is page"], page: UInt64(firstLeaf))

        let wrongType = try sample.damaged("type") { $0[leafOffset + 8] = 0x10 }
        expectFailure(
            wrongType, kind: .corrupt, mentioning: ["freelist page", "branch or leaf"], page: UInt64(firstLeaf))

        let manyElements = try sample.damaged("count") {
            $0[leafOffset + 10] = 0xFF
            $0[leafOffset + 11] = 0x7F
        }
        expectFailure(manyElements, kind: .corrupt, mentioning: ["claims 32767 elements"], page: UInt64(firstLeaf))

        let farPosition = try sample.damaged("pos") { $0[leafOffset + 16 + 16 * 3 + 4 + 2] = 0x40 }
        expectFailure(
            farPosition, kind: .corrupt, mentioning: ["leaf element 3", "runs past"], page: UInt64(firstLeaf))

        let beyond = try sample.damaged("beyond") { sample.put64(1 << 40, &$0, rootOffset + 16 + 8) }
        expectFailure(beyond, kind: .corrupt, mentioning: ["refers to page 1099511627776", "high-water mark"])

        let overflow = try sample.damaged("overflow") { $0[leafOffset + 15] = 0x01 }
        expectFailure(overflow, kind: .corrupt, mentioning: ["overflow pages"], page: UInt64(firstLeaf))

        let intoMeta = try sample.damaged("meta") { sample.put64(1, &$0, rootOffset + 16 + 8) }
        expectFailure(intoMeta, kind: .corrupt, mentioning: ["refers to page 1"])

        let freelist = try BoltReader(path: sample.path).meta.freelistPageID
        let toFreelist = try sample.damaged("freelist") { sample.put64(freelist, &$0, rootOffset + 16 + 16 + 8) }
        expectFailure(toFreelist, kind: .corrupt, mentioning: ["freelist page where bucket \"many\" needs"])
    }

    @Test func aCycleOrARepeatedPageEndsInAnErrorNotALoop() throws {
        let sample = try Sample()
        let root = sample.manyRoot
        let rootOffset = root * sample.pageSize
        let selfLoop = try sample.damaged("cycle") { sample.put64(UInt64(root), &$0, rootOffset + 16 + 16 + 8) }
        expectFailure(selfLoop, kind: .corrupt, mentioning: ["cycle", "points back to page \(root)"])
        // Two branch elements pointing at the same leaf: the second visit repeats keys.
        let first = sample.child(of: root, 0)
        let repeated = try sample.damaged("repeat") { sample.put64(first, &$0, rootOffset + 16 + 16 + 8) }
        expectFailure(repeated, kind: .corrupt, mentioning: ["keys out of order"])
        // bbolt's check says the same thing its way.
        let reader = try BoltReader(path: repeated)
        let problems = try reader.check()
        #expect(problems.contains("page \(first): multiple references"))
        #expect(problems.contains("page \(sample.child(of: root, 1)): unreachable unfreed"))
    }

    @Test func randomDamageAnywhereNeverCrashesOrHangs() throws {
        var random = SeededRandom()
        let sample = try Sample()
        let pages = sample.bytes.count / sample.pageSize
        var failures = 0
        for round in 0..<300 {
            let path = try sample.damaged("random-\(round)") { bytes in
                for _ in 0..<Int.random(in: 1...6, using: &random) {
                    // Mostly page headers and element headers, where structure lives; sometimes anywhere.
                    let page = Int.random(in: 0..<pages, using: &random)
                    let within =
                        Bool.random(using: &random)
                        ? Int.random(in: 0..<200, using: &random)
                        : Int.random(in: 0..<sample.pageSize, using: &random)
                    bytes[page * sample.pageSize + within] ^= UInt8.random(in: 1...255, using: &random)
                }
            }
            if let error = readEverything(path) {
                failures += 1
                #expect(error.description.hasPrefix(path))
            }
            try FileManager.default.removeItem(atPath: path)
        }
        print("  \(failures) of 300 damaged copies were rejected; the rest only changed data bytes")
        #expect(failures > 0)
    }
}
