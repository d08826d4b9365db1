import Crypto
import Foundation

/// AWS Signature Version 4, as pure functions: canonical request, string to sign, signing key, signature and the
/// headers to send. Nothing here performs I/O or reads a clock (the time is an argument), so every step is checked in
/// tests against the values AWS publishes for its examples.
///
/// Reference: "Authenticating Requests: Using the Authorization Header (AWS Signature Version 4)" in the S3 API
/// reference, and the Signature Version 4 test suite of the AWS General Reference.
public enum SigV4 {
    public static let algorithm = "AWS4-HMAC-SHA256"
    /// SHA-256 of the empty string: the payload hash of requests without a body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// The payload hash value that tells S3 the body is not covered by the signature.
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// A request to sign. `path` is the URI path exactly as it will be sent (already percent-encoded, e.g. with
    /// `uriEncode(_:encodeSlash: false)`); query values are raw (they are encoded here).
    public struct Request: Sendable, Equatable {
        public var method: String
        public var path: String
        public var query: [(String, String)]
        /// Headers to sign, `host` included. Names are matched case-insensitively.
        public var headers: [(String, String)]
        /// Hex SHA-256 of the body, `UNSIGNED-PAYLOAD`, or `emptyPayloadHash`.
        public var payloadHash: String

        public init(
            method: String, path: String, query: [(String, String)] = [], headers: [(String, String)],
            payloadHash: String
        ) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadHash = payloadHash
        }

        public static func == (a: Request, b: Request) -> Bool {
            a.method == b.method && a.path == b.path && a.query.elementsEqual(b.query, by: ==)
                && a.headers.elementsEqual(b.headers, by: ==) && a.payloadHash == b.payloadHash
        }
    }

    /// Percent-encodes everything but the unreserved characters `A–Z a–z 0–9 - _ . ~` (and `/` when `encodeSlash` is
    /// false), upper-case hex, as SigV4 requires (RFC 3986; space is `%20`, never `+`).
    public static func uriEncode(_ text: String, encodeSlash: Bool = true) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for c in text.utf8 {
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                out.append(c)
            case UInt8(ascii: "/") where !encodeSlash:
                out.append(c)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(c >> 4)])
                out.append(hex[Int(c & 0x0f)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Query parameters encoded and sorted by name, then value: `a=1&b=&c=x%20y`.
    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (uriEncode($0.0), uriEncode($0.1)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// Lower-cased names, sorted; values trimmed with inner runs of spaces collapsed; repeated names joined by commas.
    static func canonicalHeaders(_ headers: [(String, String)]) -> (canonical: String, signed: String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            let trimmed = value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            merged[name.lowercased(), default: []].append(trimmed)
        }
        let names = merged.keys.sorted()
        let canonical = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        return (canonical, names.joined(separator: ";"))
    }

    /// The canonical request and the signed-headers list.
    public static func canonicalRequest(_ request: Request) -> (canonical: String, signedHeaders: String) {
        let headers = canonicalHeaders(request.headers)
        let canonical = [
            request.method,
            request.path.isEmpty ? "/" : request.path,
            canonicalQuery(request.query),
            headers.canonical,
            headers.signed,
            request.payloadHash,
        ].joined(separator: "\n")
        return (canonical, headers.signed)
    }

    /// `20130524T000000Z`.
    public static func amzDate(_ date: Date) -> String {
        let c = RFC3339.civil(date)
        let p = RFC3339.pad
        return "\(p(c.year, 4))\(p(c.month, 2))\(p(c.day, 2))T\(p(c.hour, 2))\(p(c.minute, 2))\(p(c.second, 2))Z"
    }

    /// `20130524/us-east-1/s3/aws4_request`.
    public static func scope(date: Date, region: String, service: String) -> String {
        "\(amzDate(date).prefix(8))/\(region)/\(service)/aws4_request"
    }

    public static func stringToSign(canonicalRequest: String, date: Date, region: String, service: String) -> String {
        [
            algorithm,
            amzDate(date),
            scope(date: date, region: region, service: service),
            Array(SHA256.hash(data: Array(canonicalRequest.utf8))).hexString,
        ].joined(separator: "\n")
    }

    /// HMAC chain `AWS4<secret>` → date (yyyymmdd) → region → service → `aws4_request`.
    public static func signingKey(secretAccessKey: String, dateStamp: String, region: String, service: String)
        -> [UInt8]
    {
        var key = Array("AWS4\(secretAccessKey)".utf8)
        for part in [dateStamp, region, service, "aws4_request"] {
            key = Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: SymmetricKey(data: key)))
        }
        return key
    }

    public static func signature(stringToSign: String, signingKey: [UInt8]) -> String {
        Array(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: SymmetricKey(data: signingKey)))
            .hexString
    }

    /// The `Authorization` header value for `request` (whose headers must already include everything to be signed:
    /// `host`, `x-amz-date`, and for S3 `x-amz-content-sha256`, plus `x-amz-security-token` with temporary credentials).
    public static func authorization(
        _ request: Request, credentials: AWSCredentials, region: String, service: String, date: Date
    ) -> String {
        let (canonical, signedHeaders) = canonicalRequest(request)
        let toSign = stringToSign(canonicalRequest: canonical, date: date, region: region, service: service)
        let key = signingKey(
            secretAccessKey: credentials.secretAccessKey, dateStamp: String(amzDate(date).prefix(8)), region: region,
            service: service)
        let credential = "\(credentials.accessKeyID)/\(scope(date: date, region: region, service: service))"
        let signature = signature(stringToSign: toSign, signingKey: key)
        return "\(algorithm) Credential=\(credential), SignedHeaders=\(signedHeaders), Signature=\(signature)"
    }

    /// Adds `x-amz-date`, `x-amz-content-sha256` (S3 only), `x-amz-security-token` (temporary credentials) and
    /// `Authorization` to the request's headers and returns them all, ready to send.
    public static func signedHeaders(
        for request: Request, credentials: AWSCredentials, region: String, service: String = "s3", date: Date
    ) -> [(String, String)] {
        var request = request
        request.headers.append(("x-amz-date", amzDate(date)))
        if service == "s3" { request.headers.append(("x-amz-content-sha256", request.payloadHash)) }
        if let token = credentials.sessionToken { request.headers.append(("x-amz-security-token", token)) }
        let auth = authorization(request, credentials: credentials, region: region, service: service, date: date)
        return request.headers + [("Authorization", auth)]
    }
}

/// AWS credentials. `description` never shows the secret or the token.
public struct AWSCredentials: Sendable, Equatable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String {
        "AWSCredentials(accessKeyID: \(accessKeyID), secret: <redacted>\(sessionToken == nil ? "" : ", session token: <redacted>"))"
    }
}

/// What the standard AWS environment variables say: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN` (optional), `AWS_REGION` (falling back to `AWS_DEFAULT_REGION`, then `us-east-1`).
public struct AWSEnvironment: Sendable, Equatable {
    public var credentials: AWSCredentials
    public var region: String

    public init(credentials: AWSCredentials, region: String) {
        self.credentials = credentials
        self.region = region
    }

    /// Reads the variables from `environment` (the process environment by default). Throws naming the missing
    /// variable; empty values count as missing.
    public static func read(from environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> AWSEnvironment
    {
        func value(_ name: String) -> String? {
            guard let v = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else {
                return nil
            }
            return v
        }
        guard let key = value("AWS_ACCESS_KEY_ID") else {
            throw BackupError.invalidConfiguration("AWS_ACCESS_KEY_ID is not set (needed for S3 backups)")
        }
        guard let secret = value("AWS_SECRET_ACCESS_KEY") else {
            throw BackupError.invalidConfiguration("AWS_SECRET_ACCESS_KEY is not set (needed for S3 backups)")
        }
        return AWSEnvironment(
            credentials: AWSCredentials(
                accessKeyID: key, secretAccessKey: secret, sessionToken: value("AWS_SESSION_TOKEN")),
            region: value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? "us-east-1")
    }
}
