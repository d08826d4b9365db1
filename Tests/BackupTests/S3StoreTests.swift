import Foundation
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

@testable import Backup

/// `S3Store` against a real S3-protocol server: moto's standalone server, one per test, on a loopback port.
@Suite(.serialized) struct S3StoreTests {
    static let credentials = AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "test-secret")

    /// Starts moto, creates a bucket, runs `body` with a store on `s3://<bucket>/clusters/prod`, stops moto.
    static func withMoto(
        configure: (inout S3Store.Configuration) -> Void = { _ in },
        _ body: (MotoServer, S3Store) async throws -> Void
    ) async throws {
        let server = try await MotoServer.start()
        defer { server.stop() }
        var configuration = try S3Store.Configuration(
            url: "s3://quorum-backups/clusters/prod/", region: "us-east-1", endpoint: server.endpoint)
        configure(&configuration)
        let store = try S3Store(configuration: configuration, credentials: credentials)
        try await store.createBucket()
        do {
            try await body(server, store)
        } catch {
            Issue.record("\(error)\nmoto's recent output:\n\(server.recentOutput)")
        }
    }

    static func keys(_ store: S3Store) async throws -> [String] {
        try await store.client.listObjects(prefix: "").map(\.key).sorted()
    }

    static func message(_ body: () async throws -> Void) async -> String {
        do {
            try await body()
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func roundTripWithASinglePut() async throws {
        try await Self.withMoto { _, store in
            let scratch = TemporaryDirectory()
            let seed = testSeed("s3 roundTripWithASinglePut")
            let source = scratch.fileURL("snapshot.db")
            let digest = try writeRandomFile(source, size: 3 << 20 + 777, seed: seed)
            let name = BackupName(time: referenceTime, revision: 4242)
            let manifest = try makeManifest(name: name, file: source)
            try await store.put(name: name, snapshotFile: source, manifest: manifest)

            #expect(
                try await Self.keys(store) == [
                    "clusters/prod/\(name)/manifest.json", "clusters/prod/\(name)/snapshot.db",
                ])
            #expect(try await store.list() == [manifest])
            #expect(try await store.orphans().isEmpty)

            let restored = scratch.fileURL("restored.db")
            #expect(try await store.fetch(name: name, to: restored) == manifest)
            #expect(try FileDigest.compute(file: restored) == digest)
            #expect(!FileManager.default.fileExists(atPath: restored.path + ".partial"))

            #expect(
                await Self.message { try await store.put(name: name, snapshotFile: source, manifest: manifest) }
                    == "backup \(name) already exists in s3://quorum-backups/clusters/prod; backups are never overwritten"
            )

            try await store.delete(name: name)
            #expect(try await Self.keys(store).isEmpty)
            #expect(try await store.list().isEmpty)
            try await store.delete(name: name)  // idempotent
            #expect(
                await Self.message { try await store.fetch(name: name, to: restored) }
                    == "no complete backup named \(name) in s3://quorum-backups/clusters/prod")
        }
    }

    /// Above the threshold the snapshot goes up in parts (5 MiB here, S3's minimum); S3 marks such objects with a
    /// `-<parts>` ETag.
    @Test func roundTripWithAMultipartUpload() async throws {
        try await Self.withMoto(configure: {
            $0.multipartThreshold = 5 << 20
            $0.partSize = 5 << 20
        }) { _, store in
            let scratch = TemporaryDirectory()
            let seed = testSeed("s3 roundTripWithAMultipartUpload")
            let source = scratch.fileURL("snapshot.db")
            let digest = try writeRandomFile(source, size: 12 << 20 + 12345, seed: seed)
            let name = BackupName(time: referenceTime, revision: 7)
            let manifest = try makeManifest(name: name, file: source)
            try await store.put(name: name, snapshotFile: source, manifest: manifest)

            let objects = try await store.client.listObjects(prefix: "clusters/prod/")
            let snapshot = try #require(objects.first { $0.key.hasSuffix("/snapshot.db") })
            #expect(snapshot.size == digest.size)
            #expect(snapshot.etag.hasSuffix("-3\""), "ETag \(snapshot.etag) is not a three-part upload's")
            #expect(try await store.list() == [manifest])

            let restored = scratch.fileURL("restored.db")
            try await store.fetch(name: name, to: restored)
            #expect(try FileDigest.compute(file: restored) == digest)
        }
    }

    /// A snapshot that changed after it was hashed is refused before the multipart upload completes, and the upload
    /// is aborted: nothing is listed, no object appears.
    @Test func multipartRefusesAChangedSnapshot() async throws {
        try await Self.withMoto(configure: {
            $0.multipartThreshold = 5 << 20
            $0.partSize = 5 << 20
        }) { _, store in
            let scratch = TemporaryDirectory()
            let source = scratch.fileURL("snapshot.db")
            try writeRandomFile(source, size: 6 << 20, seed: 1)
            let name = BackupName(time: referenceTime, revision: 8)
            let manifest = try makeManifest(name: name, file: source)
            try writeRandomFile(source, size: 6 << 20, seed: 2)
            let error = await Self.message { try await store.put(name: name, snapshotFile: source, manifest: manifest) }
            #expect(error.hasPrefix("snapshot \(source.path) has sha256 "), "\(error)")
            #expect(try await Self.keys(store).isEmpty)
        }
    }

    /// Listing follows continuation tokens (two keys per page here) and returns newest first.
    @Test func listingPaginates() async throws {
        try await Self.withMoto(configure: { $0.listPageSize = 2 }) { _, store in
            let scratch = TemporaryDirectory()
            var expected: [BackupManifest] = []
            for i in 0..<5 {
                let (_, manifest) = try await LocalDirectoryStoreTests.putBackup(
                    store, scratch: scratch, time: referenceTime.addingTimeInterval(Double(i) * 900),
                    revision: Int64(100 + i), size: 100 + i)
                expected.append(manifest)
            }
            // Something that is not a backup, under the prefix and outside it.
            try await store.client.putObject(
                key: "clusters/prod/README", bytes: Array("hi".utf8), contentType: "text/plain")
            try await store.client.putObject(key: "other/x", bytes: Array("x".utf8), contentType: "text/plain")
            #expect(try await store.client.listObjects(prefix: "clusters/prod/").count == 11)
            #expect(try await store.list() == expected.reversed())
            // Listing again uses the manifests it already read (same ETags) and sees the same.
            #expect(try await store.list() == expected.reversed())
        }
    }

    /// Interrupted and damaged backups: not listed, reported with the reason, removed by pruning after the grace
    /// period; a manifest whose digest is wrong is listed but its fetch fails naming the object.
    @Test func orphansDamageAndPruning() async throws {
        try await Self.withMoto { _, store in
            let scratch = TemporaryDirectory()
            let (good, _) = try await LocalDirectoryStoreTests.putBackup(
                store, scratch: scratch, time: referenceTime, revision: 1, size: 2000)
            // Crash after the snapshot upload: no manifest.
            let crashed = BackupName(time: referenceTime.addingTimeInterval(900), revision: 2)
            try await store.client.putObject(
                key: "clusters/prod/\(crashed)/snapshot.db", bytes: [UInt8](repeating: 7, count: 1000),
                contentType: "application/octet-stream")
            // Truncated snapshot.
            let source = scratch.fileURL("t.db")
            try writeRandomFile(source, size: 4000, seed: 3)
            let truncated = BackupName(time: referenceTime.addingTimeInterval(1800), revision: 3)
            try await store.client.putObject(
                key: "clusters/prod/\(truncated)/snapshot.db", bytes: [UInt8](repeating: 1, count: 10),
                contentType: "application/octet-stream")
            try await store.client.putObject(
                key: "clusters/prod/\(truncated)/manifest.json",
                bytes: try makeManifest(name: truncated, file: source).encoded(), contentType: "application/json")
            // Wrong digest in an otherwise complete backup.
            let (wrong, manifest) = try await LocalDirectoryStoreTests.putBackup(
                store, scratch: scratch, time: referenceTime.addingTimeInterval(2700), revision: 4, size: 3000)
            var tampered = manifest
            tampered.snapshotSHA256 = String(repeating: "0", count: 64)
            try await store.client.putObject(
                key: "clusters/prod/\(wrong)/manifest.json", bytes: tampered.encoded(), contentType: "application/json")

            #expect(try await store.list().map(\.name) == [wrong.rawValue, good.rawValue])
            let orphans = try await store.orphans()
            #expect(orphans.map(\.name) == [truncated, crashed])
            #expect(
                orphans.map(\.reason) == [
                    "snapshot is 10 bytes, manifest says 4000", "snapshot without manifest (interrupted backup)",
                ])

            let restored = scratch.fileURL("r.db")
            #expect(
                await Self.message { try await store.fetch(name: wrong, to: restored) }
                    == "snapshot s3://quorum-backups/clusters/prod/\(wrong)/snapshot.db has sha256 \(manifest.snapshotSHA256) "
                    + "but its manifest says \(tampered.snapshotSHA256) (corrupt or replaced)")
            #expect(!FileManager.default.fileExists(atPath: restored.path))
            #expect(
                await Self.message { try await store.fetch(name: truncated, to: restored) }
                    == "snapshot s3://quorum-backups/clusters/prod/\(truncated)/snapshot.db is 10 bytes "
                    + "but its manifest says 4000 (truncated or replaced)")

            // Orphans were just written: within the grace period nothing goes.
            let now = Date()
            let young = try await BackupPruner.prune(
                store: store, policy: .default, orphanGracePeriod: 3600, now: now)
            #expect(young.orphansDeleted.isEmpty)
            #expect(young.deleted.isEmpty, "both complete backups are within their first hour... of \(young)")
            let later = try await BackupPruner.prune(
                store: store, policy: .default, orphanGracePeriod: 3600, now: now.addingTimeInterval(7200))
            #expect(Set(later.orphansDeleted) == [crashed.rawValue, truncated.rawValue])
            #expect(try await store.orphans().isEmpty)
            #expect(try await Self.keys(store).allSatisfy { $0.contains(good.rawValue) || $0.contains(wrong.rawValue) })
        }
    }

    /// Retention over S3: a day of quarter-hourly backups pruned at the end keeps the last hour and one per hour.
    @Test func pruneAppliesTheRetentionPolicy() async throws {
        try await Self.withMoto { _, store in
            let scratch = TemporaryDirectory()
            var manifests: [BackupManifest] = []
            for i in 0..<12 {
                let (_, m) = try await LocalDirectoryStoreTests.putBackup(
                    store, scratch: scratch, time: referenceTime.addingTimeInterval(Double(i) * 900),
                    revision: Int64(i), size: 64)
                manifests.append(m)
            }
            let now = referenceTime.addingTimeInterval(11 * 900)
            let report = try await BackupPruner.prune(
                store: store, policy: .default, orphanGracePeriod: 3600, now: now)
            // 03:15 ... 06:00: the last hour (05:15 05:30 05:45 06:00), hour 03's first (03:15), 04:00, 05:00.
            let remaining = try await store.list().map { RFC3339.format($0.createdAt) }
            #expect(
                remaining == [
                    "2026-12-06T06:00:00Z", "2026-12-06T05:45:00Z", "2026-12-06T05:30:00Z", "2026-12-06T05:15:00Z",
                    "2026-12-06T05:00:00Z", "2026-12-06T04:00:00Z", "2026-12-06T03:15:00Z",
                ])
            #expect(report.deleted.count == 5)
            #expect(report.newestBackup == now)
            #expect(try await Self.keys(store).count == 14)
        }
    }

    @Test func errorsNameTheObjectAndTheCause() async throws {
        let server = try await MotoServer.start()
        var stopped = false
        defer { if !stopped { server.stop() } }
        let configuration = try S3Store.Configuration(
            url: "s3://no-such-bucket/p", region: "us-east-1", endpoint: server.endpoint)
        let store = try S3Store(configuration: configuration, credentials: Self.credentials)
        let noBucket = await Self.message { _ = try await store.list() }
        #expect(noBucket.hasPrefix("S3 LIST s3://no-such-bucket/p/ failed: HTTP 404 NoSuchBucket: "), "\(noBucket)")

        server.stop()
        stopped = true
        var quick = configuration
        quick.maxAttempts = 1
        let down = try S3Store(configuration: quick, credentials: Self.credentials)
        let refused = await Self.message { _ = try await down.list() }
        print("with the server down: \(refused)")
        #expect(refused.hasPrefix("S3 LIST s3://no-such-bucket/p/ failed: "), "\(refused)")
        #expect(
            refused
                == "S3 LIST s3://no-such-bucket/p/ failed: cannot connect to [IPv4]127.0.0.1/127.0.0.1:\(server.port): "
                + "Connection refused (endpoint \(server.endpoint))")
    }

    @Test func configuration() throws {
        let aws = try S3Store(
            configuration: .init(url: "s3://my-bucket/a//b/", region: "eu-west-1"), credentials: Self.credentials)
        #expect(aws.configuration.prefix == "a/b")
        #expect(
            aws.client.endpoint == HTTPEndpoint(useTLS: true, host: "my-bucket.s3.eu-west-1.amazonaws.com", port: 443))
        #expect(!aws.client.pathStyle)
        #expect(aws.client.path(for: "a/b/x y") == "/a/b/x%20y")
        let dotted = try S3Store(
            configuration: .init(url: "s3://my.bucket", region: "us-east-1"), credentials: Self.credentials)
        #expect(dotted.client.pathStyle)
        #expect(dotted.client.endpoint.host == "s3.us-east-1.amazonaws.com")
        #expect(dotted.location == "s3://my.bucket")
        let minio = try S3Store(
            configuration: .init(url: "s3://bk1/x", region: "us-east-1", endpoint: "https://minio.local:9000"),
            credentials: Self.credentials)
        #expect(minio.client.endpoint == HTTPEndpoint(useTLS: true, host: "minio.local", port: 9000))
        #expect(minio.client.endpoint.hostHeader == "minio.local:9000")
        #expect(minio.client.pathStyle)
        #expect(minio.client.path(for: nil) == "/bk1")
        #expect(HTTPEndpoint(useTLS: false, host: "::1", port: 80).hostHeader == "[::1]")
        for bad in ["b", "s3://", "s3://UPPER", "s3://ab", "http://bucket/x", "s3://-bucket"] {
            #expect(throws: BackupError.self, "\(bad)") {
                _ = try S3Store.Configuration(url: bad, region: "us-east-1")
            }
        }
        for endpoint in ["ftp://h", "http://h/path", "not a url", "http://"] {
            #expect(throws: BackupError.self, "\(endpoint)") {
                _ = try S3Store(
                    configuration: .init(url: "s3://bucket", region: "us-east-1", endpoint: endpoint),
                    credentials: Self.credentials)
            }
        }
    }
}

/// With moto's authentication switched on, moto recomputes every request's SigV4 signature (with botocore) and
/// checks it: the client's signatures are accepted, and a wrong secret or an unknown key is refused with S3's code.
///
/// One gap, moto's: it rebuilds the canonical query from a decoded URL, so it rejects every signed request whose query
/// holds a `/` — boto3's own `list_objects_v2(Prefix="a/")` included (checked with boto3 1.43 and moto 5.2.1). Listing
/// with a prefix therefore runs only without authentication here; its query encoding is covered by the SigV4 vectors
/// (one of them computed by botocore for exactly such a listing).
@Suite struct S3SignatureVerificationTests {
    /// Sends a form-encoded AWS query-protocol request (IAM) signed for `service`, or an unsigned POST.
    static func post(
        _ server: MotoServer, path: String = "/", form: [(String, String)]? = nil, raw: String? = nil
    ) async throws -> (status: Int, body: XMLElement?) {
        let endpoint = HTTPEndpoint(useTLS: false, host: "127.0.0.1", port: server.port)
        let text = raw ?? form!.map { "\(SigV4.uriEncode($0.0))=\(SigV4.uriEncode($0.1))" }.joined(separator: "&")
        let bytes = Array(text.utf8)
        var headers = HTTPHeaders()
        if form != nil {
            let request = SigV4.Request(
                method: "POST", path: path,
                headers: [("host", endpoint.hostHeader), ("content-type", "application/x-www-form-urlencoded")],
                payloadHash: S3Client.sha256(bytes))
            headers = HTTPHeaders(
                SigV4.signedHeaders(
                    for: request,
                    credentials: AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "x"),
                    region: "us-east-1", service: "iam", date: Date()))
        } else {
            headers.add(name: "host", value: endpoint.hostHeader)
        }
        headers.add(name: "content-length", value: String(bytes.count))
        headers.add(name: "connection", value: "close")
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)
        return try await MiniHTTPClient().execute(endpoint, head: head, body: .bytes(bytes)) { head, body in
            let data = try await body.collect(limit: 1 << 20)
            return (Int(head.status.code), try? XML.parse(data))
        }
    }

    @Test func motoAcceptsOurSignaturesAndRefusesBadOnes() async throws {
        let server = try await MotoServer.start()
        defer { server.stop() }
        // While authentication is still off: an IAM user with an S3 policy and an access key.
        let user = try await Self.post(
            server, form: [("Action", "CreateUser"), ("UserName", "quorum"), ("Version", "2010-05-08")])
        #expect(user.status == 200)
        let policy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#
        let attached = try await Self.post(
            server,
            form: [
                ("Action", "PutUserPolicy"), ("UserName", "quorum"), ("PolicyName", "s3"), ("PolicyDocument", policy),
                ("Version", "2010-05-08"),
            ])
        #expect(attached.status == 200)
        let key = try await Self.post(
            server, form: [("Action", "CreateAccessKey"), ("UserName", "quorum"), ("Version", "2010-05-08")])
        let accessKey = try #require(key.body?.child("CreateAccessKeyResult")?.child("AccessKey"))
        let credentials = AWSCredentials(
            accessKeyID: try #require(accessKey.value("AccessKeyId")),
            secretAccessKey: try #require(accessKey.value("SecretAccessKey")))
        // From now on moto checks every request.
        #expect(try await Self.post(server, path: "/moto-api/reset-auth", raw: "0").status == 200)

        var configuration = try S3Store.Configuration(
            url: "s3://signed-bucket/q", region: "us-east-1", endpoint: server.endpoint)
        configuration.partSize = 5 << 20
        let store = try S3Store(configuration: configuration, credentials: credentials)
        do {
            try await store.createBucket()
            let scratch = TemporaryDirectory()
            let source = scratch.fileURL("s.db")
            let digest = try writeRandomFile(source, size: 11 << 20 + 5, seed: 11)
            let name = BackupName(time: referenceTime, revision: 11)
            let manifest = try makeManifest(name: name, file: source)
            // The put path without its listing: a signed multipart upload (3 signed parts) and a signed manifest.
            try await store.uploadMultipart(key: store.key(name, "snapshot.db"), file: source.path, manifest: manifest)
            try await store.client.putObject(
                key: store.key(name, "manifest.json"), bytes: manifest.encoded(), contentType: "application/json")
            // A single signed PUT of a file, with its SHA-256 as the signed payload hash.
            try await store.client.putObject(
                key: "q/single.db", file: source.path, length: digest.size, sha256: digest.sha256)
            #expect(
                try await store.client.listObjects(prefix: "").map(\.key).sorted() == [
                    "q/\(name)/manifest.json", "q/\(name)/snapshot.db", "q/single.db",
                ])
            #expect(try await store.fetch(name: name, to: scratch.fileURL("r.db")) == manifest)
            #expect(try FileDigest.compute(file: scratch.fileURL("r.db")) == digest)
            for key in ["q/\(name)/manifest.json", "q/\(name)/snapshot.db", "q/single.db"] {
                try await store.client.deleteObject(key: key)
            }
            #expect(try await store.client.listObjects(prefix: "").isEmpty)
        } catch {
            Issue.record("\(error)\nmoto's recent output:\n\(server.recentOutput)")
        }

        var wrong = credentials
        wrong.secretAccessKey += "x"
        let refused = await S3StoreTests.message {
            _ = try await S3Store(configuration: configuration, credentials: wrong).client.listObjects(prefix: "")
        }
        #expect(refused.contains("HTTP 403 SignatureDoesNotMatch"), "\(refused)")
        let unknown = await S3StoreTests.message {
            _ = try await S3Store(
                configuration: configuration,
                credentials: AWSCredentials(accessKeyID: "AKIANOTAKEY", secretAccessKey: "s")
            ).client.listObjects(prefix: "")
        }
        #expect(unknown.contains("InvalidAccessKeyId"), "\(unknown)")
    }
}
