import Foundation
import Testing

@testable import Backup

/// Known answers for the signer. The S3 examples are the worked examples of AWS's S3 API reference ("Signature
/// Calculations for the Authorization Header: Transferring Payload in a Single Chunk"); the `service` ones come from
/// the Signature Version 4 test suite of the AWS General Reference; the signing key is the derivation example of the
/// same reference. The last two were produced by botocore 1.43 (the AWS SDK for Python) for requests shaped like the
/// ones `S3Client` sends: temporary credentials, a non-default port, an escaped key, a continuation token.
@Suite struct SigV4Tests {
    static let s3Credentials = AWSCredentials(
        accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    static let suiteCredentials = AWSCredentials(
        accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    /// 2013-05-24T00:00:00Z, the S3 examples' time.
    static let s3Date = Date(timeIntervalSince1970: 1_369_353_600)
    /// 2015-08-30T12:36:00Z, the test suite's time.
    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)

    @Test func derivesTheDocumentedSigningKey() {
        let key = SigV4.signingKey(
            secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", dateStamp: "20120215", region: "us-east-1",
            service: "iam")
        #expect(key.hexString == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d")
    }

    @Test func formatsDatesAndScope() {
        #expect(SigV4.amzDate(Self.s3Date) == "20130524T000000Z")
        #expect(SigV4.amzDate(Self.suiteDate) == "20150830T123600Z")
        #expect(
            SigV4.scope(date: Self.s3Date, region: "us-east-1", service: "s3") == "20130524/us-east-1/s3/aws4_request")
    }

    @Test func s3GetObjectExampleStepByStep() {
        let request = SigV4.Request(
            method: "GET", path: "/test.txt",
            headers: [
                ("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", SigV4.emptyPayloadHash), ("x-amz-date", "20130524T000000Z"),
            ], payloadHash: SigV4.emptyPayloadHash)
        let (canonical, signed) = SigV4.canonicalRequest(request)
        #expect(
            canonical == """
                GET
                /test.txt

                host:examplebucket.s3.amazonaws.com
                range:bytes=0-9
                x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                x-amz-date:20130524T000000Z

                host;range;x-amz-content-sha256;x-amz-date
                e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                """)
        #expect(signed == "host;range;x-amz-content-sha256;x-amz-date")
        let toSign = SigV4.stringToSign(
            canonicalRequest: canonical, date: Self.s3Date, region: "us-east-1", service: "s3")
        #expect(
            toSign == """
                AWS4-HMAC-SHA256
                20130524T000000Z
                20130524/us-east-1/s3/aws4_request
                7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
                """)
        let key = SigV4.signingKey(
            secretAccessKey: Self.s3Credentials.secretAccessKey, dateStamp: "20130524", region: "us-east-1",
            service: "s3")
        #expect(
            SigV4.signature(stringToSign: toSign, signingKey: key)
                == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    /// The same example through `signedHeaders`, which adds `x-amz-date` and `x-amz-content-sha256` itself.
    @Test func s3GetObjectExampleThroughSignedHeaders() {
        let request = SigV4.Request(
            method: "GET", path: "/test.txt",
            headers: [("host", "examplebucket.s3.amazonaws.com"), ("range", "bytes=0-9")],
            payloadHash: SigV4.emptyPayloadHash)
        let headers = SigV4.signedHeaders(
            for: request, credentials: Self.s3Credentials, region: "us-east-1", date: Self.s3Date)
        #expect(headers.first { $0.0 == "x-amz-date" }?.1 == "20130524T000000Z")
        #expect(headers.first { $0.0 == "x-amz-content-sha256" }?.1 == SigV4.emptyPayloadHash)
        #expect(
            headers.first { $0.0 == "Authorization" }?.1
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func s3PutObjectExample() {
        let body = Array("Welcome to Amazon S3.".utf8)
        let hash = S3Client.sha256(body)
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let path = "/" + SigV4.uriEncode("test$file.text", encodeSlash: false)
        #expect(path == "/test%24file.text")
        let request = SigV4.Request(
            method: "PUT", path: path,
            headers: [
                ("Host", "examplebucket.s3.amazonaws.com"), ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ], payloadHash: hash)
        let auth = SigV4.signedHeaders(
            for: request, credentials: Self.s3Credentials, region: "us-east-1", date: Self.s3Date
        ).first { $0.0 == "Authorization" }?.1
        #expect(auth?.contains("SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,") == true)
        #expect(auth?.hasSuffix("Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd") == true)
    }

    @Test(arguments: [
        ([("lifecycle", "")], "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        // Given out of order: the canonical query sorts it.
        ([("prefix", "J"), ("max-keys", "2")], "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ])
    func s3BucketExamples(query: [(String, String)], signature: String) {
        let request = SigV4.Request(
            method: "GET", path: "/", query: query, headers: [("host", "examplebucket.s3.amazonaws.com")],
            payloadHash: SigV4.emptyPayloadHash)
        let auth = SigV4.signedHeaders(
            for: request, credentials: Self.s3Credentials, region: "us-east-1", date: Self.s3Date
        ).first { $0.0 == "Authorization" }?.1
        #expect(auth?.hasSuffix("Signature=\(signature)") == true, "got \(auth ?? "nil")")
    }

    @Test func testSuiteGetVanilla() {
        let request = SigV4.Request(
            method: "GET", path: "/", headers: [("Host", "example.amazonaws.com")], payloadHash: SigV4.emptyPayloadHash)
        let headers = SigV4.signedHeaders(
            for: request, credentials: Self.suiteCredentials, region: "us-east-1", service: "service",
            date: Self.suiteDate)
        // The generic suite has no x-amz-content-sha256 header; that one is S3's.
        #expect(!headers.contains { $0.0 == "x-amz-content-sha256" })
        #expect(
            headers.first { $0.0 == "Authorization" }?.1
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                + "SignedHeaders=host;x-amz-date, "
                + "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    @Test func testSuiteQueryOrder() {
        let request = SigV4.Request(
            method: "GET", path: "/", query: [("Param2", "value2"), ("Param1", "value1")],
            headers: [("Host", "example.amazonaws.com")], payloadHash: SigV4.emptyPayloadHash)
        let auth = SigV4.signedHeaders(
            for: request, credentials: Self.suiteCredentials, region: "us-east-1", service: "service",
            date: Self.suiteDate
        ).first { $0.0 == "Authorization" }?.1
        #expect(auth?.hasSuffix("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500") == true)
    }

    /// 2026-12-06T04:04:19Z, the time botocore signed at.
    static let botocoreDate = Date(timeIntervalSince1970: 1_796_529_859)

    @Test func matchesBotocoreForAPathStylePutWithSessionToken() {
        let credentials = AWSCredentials(
            accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            sessionToken: "FQoGZXIvYXdzEXAMPLETOKEN/+=")
        let client = S3Client(
            bucket: "quorum-backups", endpoint: HTTPEndpoint(useTLS: false, host: "127.0.0.1", port: 9000),
            pathStyle: true, credentials: credentials, region: "eu-west-1", http: MiniHTTPClient(), maxAttempts: 1,
            listPageSize: nil)
        let path = client.path(for: "prod cluster/2026-12-06T03-15-00Z-42/snapshot.db")
        #expect(path == "/quorum-backups/prod%20cluster/2026-12-06T03-15-00Z-42/snapshot.db")
        let body = Array("hello backup".utf8)
        let request = SigV4.Request(
            method: "PUT", path: path,
            headers: [("host", "127.0.0.1:9000"), ("content-type", "application/octet-stream")],
            payloadHash: S3Client.sha256(body))
        let headers = SigV4.signedHeaders(
            for: request, credentials: credentials, region: "eu-west-1", date: Self.botocoreDate)
        #expect(headers.first { $0.0 == "x-amz-date" }?.1 == "20261206T040419Z")
        #expect(headers.first { $0.0 == "x-amz-security-token" }?.1 == "FQoGZXIvYXdzEXAMPLETOKEN/+=")
        #expect(
            headers.first { $0.0 == "Authorization" }?.1
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/eu-west-1/s3/aws4_request, "
                + "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
                + "Signature=751f25ff78458db62d3c5dea3782fd21e47c76805d2a12eb976890d0357fc8b7")
    }

    @Test func matchesBotocoreForAListWithContinuationToken() {
        let request = SigV4.Request(
            method: "GET", path: "/",
            query: [("list-type", "2"), ("prefix", "prod/cluster/"), ("continuation-token", "1/ab==")],
            headers: [("host", "quorum-backups.s3.us-east-1.amazonaws.com")], payloadHash: SigV4.emptyPayloadHash)
        #expect(
            SigV4.canonicalQuery(request.query)
                == "continuation-token=1%2Fab%3D%3D&list-type=2&prefix=prod%2Fcluster%2F")
        let auth = SigV4.signedHeaders(
            for: request, credentials: Self.suiteCredentials, region: "us-east-1", date: Self.botocoreDate
        ).first { $0.0 == "Authorization" }?.1
        #expect(auth?.hasSuffix("Signature=5cf832cf6ad33b2ef53ba82828aa805f47c256166dbdc624576108ee17627054") == true)
    }

    @Test func uriEncoding() {
        #expect(SigV4.uriEncode("a b/c~d._-*") == "a%20b%2Fc~d._-%2A")
        #expect(SigV4.uriEncode("a b/c", encodeSlash: false) == "a%20b/c")
        #expect(SigV4.uriEncode("ü+=") == "%C3%BC%2B%3D")
    }

    @Test func canonicalHeadersTrimAndMerge() {
        let (canonical, signed) = SigV4.canonicalHeaders([
            ("My-Header", "  a   b  "), ("my-header", "c"), ("Host", "h"),
        ])
        #expect(canonical == "host:h\nmy-header:a b,c\n")
        #expect(signed == "host;my-header")
    }

    @Test func credentialsNeverPrintSecrets() {
        let c = AWSCredentials(accessKeyID: "AKID", secretAccessKey: "very-secret", sessionToken: "FQoGZXIvYXdz")
        #expect("\(c)".contains("AKID"))
        #expect(!"\(c)".contains("very-secret"))
        #expect(!"\(c)".contains("FQoGZXIvYXdz"))
    }

    @Test func readsTheEnvironment() throws {
        let full = try AWSEnvironment.read(from: [
            "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token",
            "AWS_REGION": "eu-central-1",
        ])
        #expect(
            full.credentials == AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret", sessionToken: "token"))
        #expect(full.region == "eu-central-1")
        let minimal = try AWSEnvironment.read(from: ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"])
        #expect(minimal.region == "us-east-1")
        #expect(minimal.credentials.sessionToken == nil)
        let fallback = try AWSEnvironment.read(from: [
            "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": "ap-south-1",
        ])
        #expect(fallback.region == "ap-south-1")
        #expect(throws: BackupError.invalidConfiguration("AWS_SECRET_ACCESS_KEY is not set (needed for S3 backups)")) {
            try AWSEnvironment.read(from: ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": " "])
        }
        #expect(throws: BackupError.self) { try AWSEnvironment.read(from: [:]) }
    }
}
