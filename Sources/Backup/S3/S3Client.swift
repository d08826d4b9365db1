import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The handful of S3 operations backups need, signed with SigV4: put (single or multipart, streaming a file), get
/// (to memory with a size cap, or streamed to a file), ListObjectsV2 with pagination, delete, and create bucket.
///
/// Uploads sign the payload with its real SHA-256 rather than `UNSIGNED-PAYLOAD`: the digest is already known (it is in
/// the manifest) or cheap to compute per part, and S3 then rejects a body that differs from what was hashed
/// (`XAmzContentSHA256Mismatch`), so a snapshot corrupted between hashing and upload never lands.
struct S3Client: Sendable {
    var bucket: String
    var endpoint: HTTPEndpoint
    var pathStyle: Bool
    var credentials: AWSCredentials
    var region: String
    var http: MiniHTTPClient
    /// Attempts per request for retryable failures (no response, 5xx, throttling).
    var maxAttempts: Int
    /// `max-keys` of listing requests; nil for S3's default (1000).
    var listPageSize: Int?
    var now: @Sendable () -> Date = { Date() }

    func resource(_ key: String?) -> String { "s3://\(bucket)/\(key ?? "")" }

    /// The request path: `/bucket/key` (path style) or `/key` (virtual-hosted), each key segment percent-encoded.
    func path(for key: String?) -> String {
        var path = pathStyle ? "/" + SigV4.uriEncode(bucket) : ""
        if let key { path += "/" + SigV4.uriEncode(key, encodeSlash: false) }
        return path.isEmpty ? "/" : path
    }

    // MARK: Operations

    func createBucket() async throws {
        var body: [UInt8] = []
        if region != "us-east-1" {
            let xml =
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + "<LocationConstraint>\(XML.escape(region))</LocationConstraint></CreateBucketConfiguration>"
            body = Array(xml.utf8)
        }
        do {
            try await send("CreateBucket", .PUT, key: nil, body: .bytes(body), payloadHash: Self.sha256(body)) {
                _, response in _ = try await response.collect(limit: 1 << 16)
            }
        } catch let error as S3Error where error.code == "BucketAlreadyOwnedByYou" {
            return
        }
    }

    /// Uploads `length` bytes of a file whose SHA-256 is `sha256`. Returns the ETag.
    @discardableResult
    func putObject(key: String, file: String, length: Int64, sha256: String) async throws -> String {
        try await send(
            "PUT", .PUT, key: key, headers: [("content-type", "application/octet-stream")],
            body: .file(path: file, offset: 0, length: length), payloadHash: sha256
        ) { head, response in
            _ = try await response.collect(limit: 1 << 16)
            return head.headers.first(name: "etag") ?? ""
        }
    }

    func putObject(key: String, bytes: [UInt8], contentType: String) async throws {
        try await send(
            "PUT", .PUT, key: key, headers: [("content-type", contentType)], body: .bytes(bytes),
            payloadHash: Self.sha256(bytes)
        ) { _, response in _ = try await response.collect(limit: 1 << 16) }
    }

    /// A small object, whole; more than `limit` bytes is an error.
    func getObject(key: String, limit: Int) async throws -> [UInt8] {
        try await send("GET", .GET, key: key, body: .empty, payloadHash: SigV4.emptyPayloadHash) { _, response in
            try await response.collect(limit: limit)
        }
    }

    /// Streams an object into a new file at `path` (created or truncated, fsynced), hashing as it goes.
    func download(key: String, to path: String) async throws -> FileDigest {
        try await send("GET", .GET, key: key, body: .empty, payloadHash: SigV4.emptyPayloadHash) { _, response in
            let writer = try FileWriter(path: path)
            var hasher = SHA256()
            var size: Int64 = 0
            while let buffer = try await response.next() {
                try buffer.withUnsafeReadableBytes { raw in
                    hasher.update(bufferPointer: raw)
                    try writer.write(raw)
                }
                size += Int64(buffer.readableBytes)
            }
            try writer.sync()
            try writer.close()
            return FileDigest(size: size, sha256: hasher.finalize().hexString)
        }
    }

    /// Every object whose key starts with `prefix`, following continuation tokens.
    func listObjects(prefix: String) async throws -> [S3Object] {
        var objects: [S3Object] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let listPageSize { query.append(("max-keys", String(listPageSize))) }
            if let token { query.append(("continuation-token", token)) }
            let body = try await send(
                "LIST", .GET, key: nil, query: query, body: .empty, payloadHash: SigV4.emptyPayloadHash
            ) { _, response in try await response.collect(limit: 16 << 20) }
            let page: S3ListingPage
            do {
                page = try S3Responses.listingPage(body)
            } catch {
                throw S3Error(
                    operation: "LIST", resource: resource(prefix), status: 200, code: nil, message: error.description)
            }
            objects += page.objects
            if let next = page.nextContinuationToken, next == token {
                throw S3Error(
                    operation: "LIST", resource: resource(prefix), status: 200, code: nil,
                    message: "the listing repeats its continuation token")
            }
            token = page.nextContinuationToken
        } while token != nil
        return objects
    }

    /// Deletes an object; one that does not exist is not an error.
    func deleteObject(key: String) async throws {
        do {
            try await send("DELETE", .DELETE, key: key, body: .empty, payloadHash: SigV4.emptyPayloadHash) {
                _, response in _ = try await response.collect(limit: 1 << 16)
            }
        } catch let error as S3Error where error.status == 404 {
            return
        }
    }

    func createMultipartUpload(key: String) async throws -> String {
        let body = try await send(
            "CreateMultipartUpload", .POST, key: key, query: [("uploads", "")],
            headers: [("content-type", "application/octet-stream")], body: .empty,
            payloadHash: SigV4.emptyPayloadHash
        ) { _, response in try await response.collect(limit: 1 << 16) }
        do {
            return try S3Responses.uploadID(body)
        } catch {
            throw S3Error(
                operation: "CreateMultipartUpload", resource: resource(key), status: 200, code: nil,
                message: error.description)
        }
    }

    /// Uploads one part; returns its ETag.
    func uploadPart(
        key: String, uploadID: String, partNumber: Int, file: String, offset: Int64, length: Int64, sha256: String
    ) async throws -> String {
        try await send(
            "UploadPart", .PUT, key: key, query: [("partNumber", String(partNumber)), ("uploadId", uploadID)],
            body: .file(path: file, offset: offset, length: length), payloadHash: sha256
        ) { head, response in
            _ = try await response.collect(limit: 1 << 16)
            guard let etag = head.headers.first(name: "etag"), !etag.isEmpty else {
                throw S3Error(
                    operation: "UploadPart", resource: resource(key), status: Int(head.status.code), code: nil,
                    message: "no ETag for part \(partNumber)")
            }
            return etag
        }
    }

    func completeMultipartUpload(key: String, uploadID: String, parts: [(number: Int, etag: String)]) async throws {
        let xml =
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            + parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\(XML.escape($0.etag))</ETag></Part>" }
            .joined() + "</CompleteMultipartUpload>"
        let body = Array(xml.utf8)
        let response = try await send(
            "CompleteMultipartUpload", .POST, key: key, query: [("uploadId", uploadID)],
            headers: [("content-type", "application/xml")], body: .bytes(body), payloadHash: Self.sha256(body)
        ) { head, response in (head, try await response.collect(limit: 1 << 20)) }
        // S3 may answer 200 and report the failure in the body.
        if S3Responses.isErrorDocument(response.1) {
            throw S3Error.from(
                operation: "CompleteMultipartUpload", resource: resource(key), status: Int(response.0.status.code),
                body: response.1, requestID: nil)
        }
    }

    func abortMultipartUpload(key: String, uploadID: String) async throws {
        try await send(
            "AbortMultipartUpload", .DELETE, key: key, query: [("uploadId", uploadID)], body: .empty,
            payloadHash: SigV4.emptyPayloadHash
        ) { _, response in _ = try await response.collect(limit: 1 << 16) }
    }

    // MARK: Transport

    /// Signs and sends one request, retrying retryable failures with a short exponential delay; non-2xx responses
    /// become `S3Error`s carrying S3's code and message.
    func send<Result>(
        _ operation: String, _ method: HTTPMethod, key: String?, query: [(String, String)] = [],
        headers: [(String, String)] = [], body: HTTPRequestBody, payloadHash: String,
        handler: (HTTPResponseHead, HTTPResponseBody) async throws -> Result
    ) async throws -> Result {
        var attempt = 1
        while true {
            do {
                return try await sendOnce(
                    operation, method, key: key, query: query, headers: headers, body: body,
                    payloadHash: payloadHash, handler: handler)
            } catch let error as S3Error where error.isRetryable && attempt < maxAttempts {
                attempt += 1
                try await Task.sleep(for: .milliseconds(100 << (2 * attempt)))
            }
        }
    }

    private func sendOnce<Result>(
        _ operation: String, _ method: HTTPMethod, key: String?, query: [(String, String)],
        headers extra: [(String, String)], body: HTTPRequestBody, payloadHash: String,
        handler: (HTTPResponseHead, HTTPResponseBody) async throws -> Result
    ) async throws -> Result {
        let path = path(for: key)
        let request = SigV4.Request(
            method: method.rawValue, path: path, query: query, headers: [("host", endpoint.hostHeader)] + extra,
            payloadHash: payloadHash)
        var headers = HTTPHeaders(
            SigV4.signedHeaders(for: request, credentials: credentials, region: region, date: now()))
        if method == .PUT || method == .POST || body.length > 0 {
            headers.add(name: "content-length", value: String(body.length))
        }
        headers.add(name: "connection", value: "close")
        headers.add(name: "user-agent", value: "quorum-backup")
        let queryString = SigV4.canonicalQuery(query)
        let head = HTTPRequestHead(
            version: .http1_1, method: method, uri: queryString.isEmpty ? path : path + "?" + queryString,
            headers: headers)
        let resource = resource(key ?? (query.isEmpty ? nil : query.first { $0.0 == "prefix" }?.1))
        do {
            return try await http.execute(endpoint, head: head, body: body) { responseHead, response in
                let status = Int(responseHead.status.code)
                guard (200..<300).contains(status) else {
                    let bytes = (try? await response.collect(limit: 1 << 16)) ?? []
                    throw S3Error.from(
                        operation: operation, resource: resource, status: status, body: bytes,
                        requestID: responseHead.headers.first(name: "x-amz-request-id"))
                }
                return try await handler(responseHead, response)
            }
        } catch let error as S3Error {
            throw error
        } catch let error as BackupError {
            throw error
        } catch HTTPTransportError.bodyTooLarge(let limit) {
            throw S3Error(
                operation: operation, resource: resource, status: nil, code: S3Error.responseTooLarge,
                message: "response body larger than \(limit) bytes")
        } catch {
            if Task.isCancelled || error is CancellationError { throw CancellationError() }
            throw S3Error(
                operation: operation, resource: resource, status: nil, code: nil,
                message:
                    "\(Self.describe(transportError: error)) (endpoint \(endpoint.useTLS ? "https" : "http")://\(endpoint.hostHeader))"
            )
        }
    }

    /// Plain words for the transport failures NIO describes in its own terms.
    static func describe(transportError error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let failure = error.connectionErrors.first {
                if let io = failure.error as? IOError {
                    return "cannot connect to \(failure.target): \(String(cString: strerror(io.errnoCode)))"
                }
                return "cannot connect to \(failure.target): \(failure.error)"
            }
            if let dns = error.dnsAError ?? error.dnsAAAAError {
                return "cannot resolve \(error.host): \(dns)"
            }
            return "cannot connect to \(error.host):\(error.port)"
        }
        if let error = error as? HTTPParserError, error == .invalidEOFState {
            return "the connection closed before the response ended"
        }
        if let error = error as? ChannelError, case .connectTimeout(let limit) = error {
            return "no connection within \(limit.nanoseconds / 1_000_000_000)s"
        }
        return "\(error)"
    }

    static func sha256(_ bytes: [UInt8]) -> String {
        Array(SHA256.hash(data: bytes)).hexString
    }
}
