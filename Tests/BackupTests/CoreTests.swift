import Foundation
import TestSupport
import Testing

@testable import Backup

@Suite struct RFC3339Tests {
    @Test func formatsUTCWholeSeconds() {
        #expect(RFC3339.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        #expect(RFC3339.format(referenceTime) == "2026-12-06T03:15:00Z")
        #expect(RFC3339.format(referenceTime.addingTimeInterval(0.999)) == "2026-12-06T03:15:00Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: -1)) == "1969-12-31T23:59:59Z")
    }

    @Test func parsesWhatOthersWrite() {
        #expect(RFC3339.parse("2026-12-06T03:15:00Z") == referenceTime)
        #expect(RFC3339.parse("2026-12-06t03:15:00z") == referenceTime)
        #expect(RFC3339.parse("2026-12-06T04:15:00+01:00") == referenceTime)
        #expect(RFC3339.parse("2026-12-05T22:45:00-04:30") == referenceTime)
        #expect(RFC3339.parse("2026-12-06T03:15:00.250Z") == referenceTime.addingTimeInterval(0.25))
        // S3's LastModified.
        #expect(RFC3339.parse("2026-12-06T03:15:00.000Z") == referenceTime)
    }

    @Test(arguments: [
        "", "2026-12-06", "2026-12-06T03:15:00", "2026-13-06T03:15:00Z", "2026-02-29T00:00:00Z",
        "2026-12-06T24:00:00Z", "2026-12-06T03:15:00.Z", "2026-12-06T03:15:00Zjunk", "2026-12-06T03:15:00+0100",
        "２026-12-06T03:15:00Z",
    ])
    func rejectsMalformed(text: String) {
        #expect(RFC3339.parse(text) == nil)
    }

    /// Every 97th day from 1601 to 2401 (the leap-year rules of 1700, 1900, 2000, 2100 and 2400 included), checked
    /// against Foundation's Gregorian calendar and round-tripped through the parser.
    @Test func civilArithmeticAgreesWithFoundationOverFourCenturies() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var day = RFC3339.daysFromCivil(year: 1601, month: 1, day: 1)
        let end = RFC3339.daysFromCivil(year: 2401, month: 1, day: 1)
        var checked = 0
        while day < end {
            let date = Date(timeIntervalSince1970: Double(day) * 86_400 + 3723)
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
            let mine = RFC3339.civil(date)
            #expect(
                [mine.year, mine.month, mine.day, mine.hour, mine.minute, mine.second]
                    == [c.year, c.month, c.day, c.hour, c.minute, c.second])
            #expect(RFC3339.parse(RFC3339.format(date)) == date)
            day += 97
            checked += 1
        }
        #expect(checked > 3000)
    }
}

@Suite struct BackupNameTests {
    @Test func formatsAndParses() throws {
        let name = BackupName(time: referenceTime.addingTimeInterval(0.7), revision: 48213)
        #expect(name.rawValue == "2026-12-06T03-15-00Z-48213")
        #expect(name.time == referenceTime)
        let parsed = try #require(BackupName("2026-12-06T03-15-00Z-48213"))
        #expect(parsed == name)
        #expect(BackupName("1970-01-01T00-00-00Z-0")?.revision == 0)
        #expect(BackupName("2026-12-06T03-15-00Z-9223372036854775807")?.revision == Int64.max)
    }

    @Test(arguments: [
        "", "2026-12-06T03-15-00Z", "2026-12-06T03-15-00Z-", "2026-12-06T03-15-00Z-007", "2026-12-06T03-15-00Z--1",
        "2026-12-06T03:15:00Z-1", "2026-12-06T03-15-00Z-1a", "2026-12-06T03-15-00Z-99999999999999999999",
        "2026-02-30T03-15-00Z-1", "x026-12-06T03-15-00Z-1", "2026-12-06T03-15-00Z-1/..", "manifest.json",
    ])
    func rejectsNonCanonical(text: String) {
        #expect(BackupName(text) == nil)
    }

    @Test func namesSortByTime() throws {
        let seed = testSeed("namesSortByTime")
        var generator = SeededRandom(seed: seed)
        let names = (0..<200).map { _ in
            BackupName(
                time: Date(timeIntervalSince1970: Double(Int.random(in: 0..<4_000_000_000, using: &generator))),
                revision: Int64.random(in: 0..<5, using: &generator))
        }
        let byText = names.sorted { $0.rawValue < $1.rawValue }.map(\.time)
        let byTime = names.sorted().map(\.time)
        #expect(byText == byTime)
    }
}

@Suite struct BackupManifestTests {
    static func sample() -> BackupManifest {
        BackupManifest(
            name: BackupName(time: referenceTime, revision: 48213), clusterID: 0xcdf8_1819_4e3a_8c32,
            memberID: 0x8e9e_05c5_2164_694d, memberName: "etcd-a", raftIndex: 90311, quorumVersion: "0.9.0",
            etcdVersion: "3.5.0",
            snapshot: FileDigest(
                size: 2_093_056, sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"))
    }

    @Test func encodesStableReadableJSON() throws {
        let text = String(decoding: Self.sample().encoded(), as: UTF8.self)
        #expect(
            text == """
                {
                  "clusterId" : "cdf818194e3a8c32",
                  "createdAt" : "2026-12-06T03:15:00Z",
                  "etcdVersion" : "3.5.0",
                  "format" : 1,
                  "memberId" : "8e9e05c52164694d",
                  "memberName" : "etcd-a",
                  "name" : "2026-12-06T03-15-00Z-48213",
                  "quorumVersion" : "0.9.0",
                  "raftIndex" : 90311,
                  "revision" : 48213,
                  "snapshotFile" : "snapshot.db",
                  "snapshotSha256" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                  "snapshotSize" : 2093056
                }

                """)
        #expect(try BackupManifest.decode(Self.sample().encoded(), location: "x") == Self.sample())
    }

    @Test func ignoresUnknownFieldsFromNewerMinorVersions() throws {
        var text = String(decoding: Self.sample().encoded(), as: UTF8.self)
        text = text.replacingOccurrences(of: "\"format\" : 1,", with: "\"format\" : 1, \"compression\" : \"none\",")
        #expect(try BackupManifest.decode(Array(text.utf8), location: "x") == Self.sample())
    }

    static func mutated(_ change: (inout [String: Any]) -> Void) -> [UInt8] {
        var object = try! JSONSerialization.jsonObject(with: Data(sample().encoded())) as! [String: Any]
        change(&object)
        return Array(try! JSONSerialization.data(withJSONObject: object))
    }

    @Test func rejectsInconsistentManifestsWithTheReason() {
        func reason(_ bytes: [UInt8]) -> String {
            do {
                _ = try BackupManifest.decode(bytes, location: "/b/m.json")
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(reason(Array("not json".utf8)).hasPrefix("invalid backup manifest /b/m.json: not JSON"))
        #expect(reason(Self.mutated { $0["snapshotSha256"] = nil }).contains("missing field 'snapshotSha256'"))
        #expect(reason(Self.mutated { $0["revision"] = 1 }).contains("revision 1 disagrees with the name's 48213"))
        #expect(reason(Self.mutated { $0["createdAt"] = "2026-12-06T03:16:00Z" }).contains("disagrees with the name"))
        #expect(reason(Self.mutated { $0["createdAt"] = "yesterday" }).contains("not an RFC 3339 time"))
        #expect(reason(Self.mutated { $0["format"] = 2 }).contains("newer than this Quorum understands"))
        #expect(reason(Self.mutated { $0["clusterId"] = "XYZ" }).contains("clusterId 'XYZ' is not hex"))
        #expect(reason(Self.mutated { $0["snapshotSha256"] = "ABC" }).contains("not 64 lowercase hex digits"))
        #expect(reason(Self.mutated { $0["snapshotSize"] = -1 }).contains("negative"))
        #expect(reason(Self.mutated { $0["snapshotFile"] = "../etc/passwd" }).contains("is not 'snapshot.db'"))
        #expect(reason(Self.mutated { $0["name"] = "latest" }).contains("name 'latest' is not a backup name"))
        #expect(reason([UInt8](repeating: 0x20, count: 100_000)).contains("too large"))
    }
}

@Suite struct FileDigestTests {
    @Test func hashesLikeSha256sum() throws {
        let dir = TemporaryDirectory()
        let empty = dir.fileURL("empty")
        try Data().write(to: empty)
        #expect(try FileDigest.compute(file: empty) == FileDigest(size: 0, sha256: SigV4.emptyPayloadHash))
        let abc = dir.fileURL("abc")
        try Data("abc".utf8).write(to: abc)
        #expect(
            try FileDigest.compute(file: abc).sha256
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(throws: BackupError.self) { try FileDigest.compute(file: dir.fileURL("missing")) }
    }

    /// Streaming across chunk boundaries gives the same digest as hashing in one go.
    @Test func streamsAcrossChunks() throws {
        let dir = TemporaryDirectory()
        let seed = testSeed("streamsAcrossChunks")
        let size = FileIO.chunkSize * 2 + 12345
        let digest = try writeRandomFile(dir.fileURL("f"), size: size, seed: seed)
        let whole = Array(try Data(contentsOf: dir.fileURL("f")))
        #expect(digest.size == Int64(size))
        #expect(digest.sha256 == S3Client.sha256(whole))
    }
}

@Suite struct XMLTests {
    @Test func parsesAListing() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount>
              <IsTruncated>true</IsTruncated>
              <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
              <Contents><Key>p/a&amp;b</Key><LastModified>2026-12-06T03:15:00.000Z</LastModified>
                <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
              <!-- a comment -->
              <Contents><Key><![CDATA[p/<c>]]></Key><Size>0</Size></Contents>
              <Empty/>
            </ListBucketResult>
            """
        let root = try XML.parse(Array(xml.utf8))
        #expect(root.localName == "ListBucketResult")
        #expect(root.value("IsTruncated") == "true")
        #expect(root.value("NextContinuationToken") == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        let contents = root.children("Contents")
        #expect(contents.map { $0.value("Key") } == ["p/a&b", "p/<c>"])
        #expect(contents[0].value("ETag") == "\"9b2cf535f27731c974343645a3985328\"")
        #expect(root.child("Empty")?.text == "")
    }

    @Test func parsesAnError() throws {
        let xml =
            "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>"
            + "<Key>x</Key><RequestId>4442587FB7D0A2F9</RequestId></Error>"
        let error = S3Error.from(
            operation: "GET", resource: "s3://b/x", status: 404, body: Array(xml.utf8), requestID: nil)
        #expect(error.code == "NoSuchKey")
        #expect(
            error.description
                == "S3 GET s3://b/x failed: HTTP 404 NoSuchKey: The specified key does not exist. (request ID 4442587FB7D0A2F9)"
        )
        let html = S3Error.from(
            operation: "PUT", resource: "s3://b/y", status: 502, body: Array("<html>Bad Gateway</html>".utf8),
            requestID: "r")
        #expect(html.code == nil)
        #expect(html.isRetryable)
    }

    @Test(arguments: ["", "<a>", "<a></b>", "<a>&bogus;</a>", "text", "<a><b></a>"])
    func rejectsMalformed(xml: String) {
        #expect(throws: XMLParseError.self) { try XML.parse(Array(xml.utf8)) }
    }

    @Test func escapes() {
        #expect(XML.escape("\"a\"<&>'") == "&quot;a&quot;&lt;&amp;&gt;&apos;")
    }
}

/// What the client makes of S3's answers, without a server (the same functions the `s3` fuzz target drives).
@Suite struct S3ResponsesTests {
    static func listing(truncated: Bool, token: String?, keys: [String]) -> [UInt8] {
        var xml = "<ListBucketResult><IsTruncated>\(truncated)</IsTruncated>"
        if let token { xml += "<NextContinuationToken>\(token)</NextContinuationToken>" }
        for key in keys {
            xml += "<Contents><Key>\(key)</Key><LastModified>2026-12-06T03:15:00.000Z</LastModified>"
            xml += "<ETag>&quot;e&quot;</ETag><Size>12</Size></Contents>"
        }
        return Array((xml + "</ListBucketResult>").utf8)
    }

    @Test func aPageGivesItsObjectsAndTheNextToken() throws {
        let page = try S3Responses.listingPage(Self.listing(truncated: true, token: "t2", keys: ["p/a", "p/b"]))
        #expect(page.objects.map(\.key) == ["p/a", "p/b"])
        #expect(page.objects[0].size == 12)
        #expect(page.objects[0].etag == "\"e\"")
        #expect(page.objects[0].lastModified == RFC3339.parse("2026-12-06T03:15:00Z"))
        #expect(page.nextContinuationToken == "t2")
        let last = try S3Responses.listingPage(Self.listing(truncated: false, token: "ignored", keys: []))
        #expect(last == S3ListingPage(objects: [], nextContinuationToken: nil))
    }

    @Test func oddEntriesAreReadAsFarAsTheyGo() throws {
        let xml = "<r><Contents><Size>1</Size></Contents><Contents><Key>k</Key><Size>big</Size></Contents></r>"
        let page = try S3Responses.listingPage(Array(xml.utf8))
        #expect(page.objects == [S3Object(key: "k", size: -1, lastModified: nil, etag: "")])
    }

    @Test func aTruncatedPageWithoutATokenOrAnUnreadablePageIsRefused() {
        #expect(throws: S3ResponseError(description: "truncated listing without a continuation token")) {
            try S3Responses.listingPage(Self.listing(truncated: true, token: nil, keys: ["p/a"]))
        }
        #expect(throws: S3ResponseError(description: "truncated listing without a continuation token")) {
            try S3Responses.listingPage(Self.listing(truncated: true, token: "", keys: []))
        }
        #expect(throws: S3ResponseError.self) { try S3Responses.listingPage(Array("<html>".utf8)) }
    }

    @Test func anUploadIDMustBeThere() throws {
        let xml =
            "<InitiateMultipartUploadResult><Bucket>b</Bucket><UploadId>u-1</UploadId></InitiateMultipartUploadResult>"
        #expect(try S3Responses.uploadID(Array(xml.utf8)) == "u-1")
        #expect(throws: S3ResponseError(description: "no UploadId in the response")) {
            try S3Responses.uploadID(
                Array("<InitiateMultipartUploadResult><UploadId/></InitiateMultipartUploadResult>".utf8))
        }
    }

    @Test func anErrorDocumentIsRecognisedWhateverItsStatus() {
        #expect(S3Responses.isErrorDocument(Array("<Error><Code>InternalError</Code></Error>".utf8)))
        #expect(!S3Responses.isErrorDocument(Array("<CompleteMultipartUploadResult/>".utf8)))
        #expect(!S3Responses.isErrorDocument(Array("not xml".utf8)))
    }
}
