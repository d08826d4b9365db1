import Crypto
import Foundation
import NIOCore
import Synchronization

/// Backups in S3 (or anything speaking its protocol: MinIO, Ceph RGW, moto):
/// `s3://bucket/prefix/<name>/snapshot.db` and `s3://bucket/prefix/<name>/manifest.json`.
///
/// Atomic visibility: the snapshot object is uploaded first (multipart above `multipartThreshold`) and the manifest
/// object last; S3 has read-after-write consistency, so a backup is listed exactly when its manifest exists. A crash or
/// error in between leaves a snapshot without a manifest, reported by `orphans` and removed by pruning after the grace
/// period. Deletion removes the manifest first. A failed multipart upload is aborted; one interrupted by a crash stays
/// invisible but billed until a bucket lifecycle rule (`AbortIncompleteMultipartUpload`) removes it.
///
/// Listing reads every manifest once (bounded parallelism) and then remembers it by ETag: manifests never change, and a
/// year of retention is ~530 backups, so only new backups cost a GET on later listings.
public final class S3Store: BackupStore {
    public struct Configuration: Sendable, Equatable {
        public var bucket: String
        /// Key prefix without leading or trailing slashes; may be empty.
        public var prefix: String
        public var region: String
        /// `http(s)://host[:port]` of an S3-compatible server; nil for AWS.
        public var endpoint: String?
        /// Path-style (`host/bucket/key`) rather than virtual-hosted (`bucket.host/key`) addressing. Default: path
        /// style when an endpoint is given (MinIO and test servers), virtual-hosted for AWS unless the bucket name has
        /// dots (which break TLS certificate matching).
        public var pathStyle: Bool?
        /// PEM file of an extra CA to trust (a private MinIO), in addition to the system's.
        public var caFile: String?
        /// Snapshots at least this large are uploaded in parts.
        public var multipartThreshold: Int64 = 64 << 20
        /// Part size of multipart uploads (S3 requires at least 5 MiB except for the last part).
        public var partSize: Int64 = 64 << 20
        /// A request fails when nothing was sent or received for this long.
        public var idleTimeout: TimeInterval = 60
        public var connectTimeout: TimeInterval = 10
        /// Attempts per request for retryable failures.
        public var maxAttempts = 3
        /// Manifests fetched in parallel when listing.
        public var listConcurrency = 8
        /// Keys per listing page; nil for S3's default of 1000 (tests set it small to exercise pagination).
        public var listPageSize: Int?

        /// `url` is `s3://bucket` or `s3://bucket/prefix`.
        public init(url: String, region: String, endpoint: String? = nil) throws {
            guard url.hasPrefix("s3://") else {
                throw BackupError.invalidConfiguration("'\(url)' is not an s3://bucket/prefix URL")
            }
            let rest = url.dropFirst(5)
            let bucket = rest.prefix { $0 != "/" }
            guard Self.isValidBucket(String(bucket)) else {
                throw BackupError.invalidConfiguration("'\(bucket)' in '\(url)' is not a valid S3 bucket name")
            }
            self.bucket = String(bucket)
            prefix = rest.dropFirst(bucket.count).split(separator: "/").joined(separator: "/")
            self.region = region
            self.endpoint = endpoint
        }

        /// The backups' location as a URL, for logs.
        public var url: String { prefix.isEmpty ? "s3://\(bucket)" : "s3://\(bucket)/\(prefix)" }

        static func isValidBucket(_ name: String) -> Bool {
            (3...63).contains(name.count)
                && name.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") }
                && name.first!.isLowercaseLetterOrDigit && name.last!.isLowercaseLetterOrDigit
        }
    }

    public let configuration: Configuration
    let client: S3Client
    private let keyPrefix: String
    private let manifestCache = Mutex<[String: (etag: String, manifest: BackupManifest)]>([:])

    public init(configuration: Configuration, credentials: AWSCredentials) throws {
        guard configuration.partSize >= 5 << 20 else {
            throw BackupError.invalidConfiguration("S3 part size \(configuration.partSize) is below S3's 5 MiB minimum")
        }
        self.configuration = configuration
        let endpoint: HTTPEndpoint
        let pathStyle: Bool
        if let text = configuration.endpoint {
            endpoint = try Self.parseEndpoint(text)
            pathStyle = configuration.pathStyle ?? true
        } else {
            pathStyle = configuration.pathStyle ?? configuration.bucket.contains(".")
            let base = "s3.\(configuration.region).amazonaws.com"
            endpoint = HTTPEndpoint(
                useTLS: true, host: pathStyle ? base : "\(configuration.bucket).\(base)", port: 443)
        }
        var http = MiniHTTPClient()
        http.idleTimeout = .nanoseconds(Int64(configuration.idleTimeout * 1e9))
        http.connectTimeout = .nanoseconds(Int64(configuration.connectTimeout * 1e9))
        if endpoint.useTLS {
            do {
                http.tlsContext = try MiniHTTPClient.makeTLSContext(caFile: configuration.caFile)
            } catch {
                throw BackupError.invalidConfiguration("TLS for \(endpoint.host): \(error)")
            }
        }
        client = S3Client(
            bucket: configuration.bucket, endpoint: endpoint, pathStyle: pathStyle, credentials: credentials,
            region: configuration.region, http: http, maxAttempts: max(1, configuration.maxAttempts),
            listPageSize: configuration.listPageSize)
        keyPrefix = configuration.prefix.isEmpty ? "" : configuration.prefix + "/"
    }

    /// A store for `url` (`s3://bucket/prefix`) with credentials and region from the environment.
    public convenience init(url: String, endpoint: String? = nil, environment: AWSEnvironment) throws {
        try self.init(
            configuration: Configuration(url: url, region: environment.region, endpoint: endpoint),
            credentials: environment.credentials)
    }

    public var location: String { configuration.url }

    func key(_ name: BackupName, _ file: String) -> String { keyPrefix + name.rawValue + "/" + file }
    func url(_ key: String) -> String { "s3://\(configuration.bucket)/\(key)" }

    /// Creates the bucket if it does not exist (for tests and first-time setup; production buckets are usually made
    /// by whoever provisions the cluster).
    public func createBucket() async throws {
        try await wrap { try await client.createBucket() }
    }

    // MARK: BackupStore

    public func put(name: BackupName, snapshotFile: URL, manifest: BackupManifest) async throws {
        try checkPut(name: name, snapshotFile: snapshotFile, manifest: manifest)
        try await wrap {
            let existing = try await client.listObjects(prefix: keyPrefix + name.rawValue + "/")
            if existing.contains(where: { $0.key == key(name, BackupManifest.fileName) }) {
                throw BackupError.alreadyExists(name: name.rawValue, location: location)
            }
            let snapshotKey = key(name, BackupManifest.snapshotFileName)
            if manifest.snapshotSize >= configuration.multipartThreshold {
                try await uploadMultipart(key: snapshotKey, file: snapshotFile.path, manifest: manifest)
            } else {
                try await client.putObject(
                    key: snapshotKey, file: snapshotFile.path, length: manifest.snapshotSize,
                    sha256: manifest.snapshotSHA256)
            }
            try Task.checkCancellation()
            try await client.putObject(
                key: key(name, BackupManifest.fileName), bytes: manifest.encoded(), contentType: "application/json")
        }
    }

    public func list() async throws -> [BackupManifest] {
        try await scan().complete
    }

    public func orphans() async throws -> [OrphanedBackup] {
        try await scan().orphans
    }

    @discardableResult
    public func fetch(name: BackupName, to file: URL) async throws -> BackupManifest {
        try await wrap {
            let manifestKey = key(name, BackupManifest.fileName)
            let bytes: [UInt8]
            do {
                bytes = try await client.getObject(key: manifestKey, limit: BackupManifest.maximumSize)
            } catch let error as S3Error where error.status == 404 {
                throw BackupError.notFound(name: name.rawValue, location: location)
            }
            let manifest = try BackupManifest.decode(bytes, location: url(manifestKey))
            guard manifest.name == name.rawValue else {
                throw BackupError.invalidManifest(
                    location: url(manifestKey), detail: "it names backup \(manifest.name)")
            }
            let snapshotKey = key(name, BackupManifest.snapshotFileName)
            let temporary = file.path + ".partial"
            let digest: FileDigest
            do {
                digest = try await client.download(key: snapshotKey, to: temporary)
            } catch {
                try? FileIO.removeFile(temporary)
                throw error
            }
            guard digest.size == manifest.snapshotSize else {
                try? FileIO.removeFile(temporary)
                throw BackupError.sizeMismatch(
                    location: url(snapshotKey), expected: manifest.snapshotSize, actual: digest.size)
            }
            guard digest.sha256 == manifest.snapshotSHA256 else {
                try? FileIO.removeFile(temporary)
                throw BackupError.checksumMismatch(
                    location: url(snapshotKey), expected: manifest.snapshotSHA256, actual: digest.sha256)
            }
            try FileIO.rename(temporary, file.path)
            try FileIO.syncDirectory(file.deletingLastPathComponent().path)
            return manifest
        }
    }

    public func delete(name: BackupName) async throws {
        try await wrap {
            let objects = try await client.listObjects(prefix: keyPrefix + name.rawValue + "/")
            let manifestKey = key(name, BackupManifest.fileName)
            // The manifest first: from then on the backup is not listed, whatever happens to the rest.
            if objects.contains(where: { $0.key == manifestKey }) {
                try await client.deleteObject(key: manifestKey)
            }
            for object in objects where object.key != manifestKey {
                try await client.deleteObject(key: object.key)
            }
        }
    }

    // MARK: Internals

    /// Classifies every backup-named key prefix as complete or orphaned.
    func scan() async throws -> (complete: [BackupManifest], orphans: [OrphanedBackup]) {
        try await wrap {
            let objects = try await client.listObjects(prefix: keyPrefix)
            var groups: [BackupName: [String: S3Object]] = [:]
            for object in objects {
                let rest = object.key.dropFirst(keyPrefix.count)
                guard let slash = rest.firstIndex(of: "/"), let name = BackupName(String(rest[..<slash])) else {
                    continue
                }
                groups[name, default: [:]][String(rest[rest.index(after: slash)...])] = object
            }

            var orphans: [OrphanedBackup] = []
            var candidates: [(BackupName, S3Object)] = []
            for (name, files) in groups {
                if let manifest = files[BackupManifest.fileName] {
                    candidates.append((name, manifest))
                } else {
                    orphans.append(
                        OrphanedBackup(
                            name: name,
                            reason: files[BackupManifest.snapshotFileName] != nil
                                ? "snapshot without manifest (interrupted backup)" : "no manifest and no snapshot",
                            lastModified: Self.newest(files)))
                }
            }

            let manifests = try await readManifests(candidates)
            var complete: [BackupManifest] = []
            for (name, _) in candidates {
                let files = groups[name]!
                func orphan(_ reason: String) {
                    orphans.append(OrphanedBackup(name: name, reason: reason, lastModified: Self.newest(files)))
                }
                switch manifests[name]! {
                case .failure(let error):
                    orphan("\(error)")
                case .success(let manifest):
                    guard manifest.name == name.rawValue else {
                        orphan("manifest names backup \(manifest.name)")
                        continue
                    }
                    guard let snapshot = files[BackupManifest.snapshotFileName] else {
                        orphan("manifest without snapshot")
                        continue
                    }
                    guard snapshot.size == manifest.snapshotSize else {
                        orphan("snapshot is \(snapshot.size) bytes, manifest says \(manifest.snapshotSize)")
                        continue
                    }
                    complete.append(manifest)
                }
            }
            return (complete.sorted(by: newestFirst), orphans.sorted { $0.name > $1.name })
        }
    }

    /// Reads (or recalls by ETag) each candidate's manifest, `listConcurrency` at a time. A manifest that cannot be
    /// read or parsed is a per-backup failure; an S3 error that is not about that object (no response, access denied
    /// to the bucket...) fails the whole listing, since nothing can be concluded from it.
    private func readManifests(_ candidates: [(BackupName, S3Object)]) async throws
        -> [BackupName: Result<BackupManifest, BackupError>]
    {
        var results: [BackupName: Result<BackupManifest, BackupError>] = [:]
        var fresh: [String: (etag: String, manifest: BackupManifest)] = [:]
        var pending: [(BackupName, S3Object)] = []
        let cached = manifestCache.withLock { $0 }
        for (name, object) in candidates {
            if let hit = cached[object.key], hit.etag == object.etag, !object.etag.isEmpty {
                results[name] = .success(hit.manifest)
                fresh[object.key] = hit
            } else {
                pending.append((name, object))
            }
        }
        let client = client
        let location = { (key: String) in self.url(key) }
        try await withThrowingTaskGroup(of: (BackupName, S3Object, Result<BackupManifest, BackupError>).self) {
            group in
            var iterator = pending.makeIterator()
            func addNext() -> Bool {
                guard let (name, object) = iterator.next() else { return false }
                let source = location(object.key)
                group.addTask {
                    do {
                        let bytes = try await client.getObject(key: object.key, limit: BackupManifest.maximumSize)
                        return (name, object, .success(try BackupManifest.decode(bytes, location: source)))
                    } catch let error as BackupError {
                        return (name, object, .failure(error))
                    } catch let error as S3Error where error.status == 404 {
                        // Deleted between the listing and the read: a backup being pruned.
                        return (name, object, .failure(.invalidManifest(location: source, detail: "disappeared")))
                    } catch let error as S3Error where error.code == S3Error.responseTooLarge {
                        return (name, object, .failure(.invalidManifest(location: source, detail: "too large")))
                    }
                }
                return true
            }
            for _ in 0..<max(1, configuration.listConcurrency) {
                if !addNext() { break }
            }
            while let (name, object, result) = try await group.next() {
                results[name] = result
                if case .success(let manifest) = result { fresh[object.key] = (object.etag, manifest) }
                _ = addNext()
            }
        }
        manifestCache.withLock { $0 = fresh }
        return results
    }

    /// Uploads in parts of `partSize`. Each part is hashed just before it is sent (and signed with that hash, so S3
    /// verifies it); the parts' bytes also feed a whole-file hash that must equal the manifest's before the upload is
    /// completed. On any failure the upload is aborted.
    func uploadMultipart(key: String, file: String, manifest: BackupManifest) async throws {
        let uploadID = try await client.createMultipartUpload(key: key)
        do {
            let reader = try FileReader(path: file)
            var whole = SHA256()
            var parts: [(number: Int, etag: String)] = []
            var offset: Int64 = 0
            var buffer = [UInt8](repeating: 0, count: FileIO.chunkSize)
            while offset < manifest.snapshotSize {
                try Task.checkCancellation()
                let length = min(configuration.partSize, manifest.snapshotSize - offset)
                var partHash = SHA256()
                var remaining = length
                while remaining > 0 {
                    let n = try reader.read(into: &buffer, maximum: Int(min(Int64(buffer.count), remaining)))
                    guard n > 0 else {
                        throw BackupError.sizeMismatch(
                            location: file, expected: manifest.snapshotSize, actual: offset + length - remaining)
                    }
                    buffer.withUnsafeBytes {
                        let chunk = UnsafeRawBufferPointer(rebasing: $0[0..<n])
                        partHash.update(bufferPointer: chunk)
                        whole.update(bufferPointer: chunk)
                    }
                    remaining -= Int64(n)
                }
                let etag = try await client.uploadPart(
                    key: key, uploadID: uploadID, partNumber: parts.count + 1, file: file, offset: offset,
                    length: length, sha256: partHash.finalize().hexString)
                parts.append((parts.count + 1, etag))
                offset += length
            }
            let digest = whole.finalize().hexString
            guard digest == manifest.snapshotSHA256 else {
                throw BackupError.checksumMismatch(location: file, expected: manifest.snapshotSHA256, actual: digest)
            }
            try await client.completeMultipartUpload(key: key, uploadID: uploadID, parts: parts)
        } catch {
            // Abort outside this (possibly cancelled) task, so that cancellation does not also cancel the clean-up.
            let client = client
            await Task { try? await client.abortMultipartUpload(key: key, uploadID: uploadID) }.value
            throw error
        }
    }

    /// Runs `body`, turning S3 errors into `BackupError.s3`.
    private func wrap<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as S3Error {
            throw BackupError.s3(error)
        } catch let error as HTTPTransportError {
            throw BackupError.s3(
                S3Error(operation: "request", resource: location, status: nil, code: nil, message: "\(error)"))
        }
    }

    static func newest(_ files: [String: S3Object]) -> Date? {
        files.values.compactMap(\.lastModified).max()
    }

    static func parseEndpoint(_ text: String) throws -> HTTPEndpoint {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            var host = url.host, !host.isEmpty
        else {
            throw BackupError.invalidConfiguration("S3 endpoint '\(text)' is not an http:// or https:// URL")
        }
        guard url.path.isEmpty || url.path == "/", url.query == nil else {
            throw BackupError.invalidConfiguration("S3 endpoint '\(text)' must not have a path or query")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let tls = scheme == "https"
        return HTTPEndpoint(useTLS: tls, host: host, port: url.port ?? (tls ? 443 : 80))
    }
}

extension Character {
    fileprivate var isLowercaseLetterOrDigit: Bool { isASCII && (isLowercase || isNumber) }
}
