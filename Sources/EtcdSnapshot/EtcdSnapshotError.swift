import Bolt

/// What can go wrong writing or reading an etcd snapshot. Each error names the file, says what is wrong and where
/// (bucket, key, page, byte offset) when that is known.
public struct EtcdSnapshotError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The bbolt layer failed: the file is damaged, truncated, not a bbolt file, or unreadable.
        case database(BoltError.Kind)
        /// The sha256 trailer does not match the content before it.
        case hashMismatch
        /// No sha256 trailer, and the caller required one (etcdctl's default without `--skip-hash-check`).
        case missingHash
        /// The file's size fits neither a bbolt file nor one followed by a sha256 trailer.
        case unexpectedSize
        /// An entry does not decode as etcd's schema says it must (a revision key, a protobuf, JSON).
        case invalidRecord
        /// The bbolt consistency check that `etcdctl snapshot status` runs found problems.
        case integrity
        /// The caller broke a rule: revisions out of order, duplicate keys.
        case invalidArgument
        /// Reading or writing the file itself failed.
        case io
    }

    public var kind: Kind
    public var path: String
    public var message: String
    public var bucket: [UInt8]?
    public var key: [UInt8]?
    public var pageID: UInt64?
    public var offset: Int64?

    public init(
        _ kind: Kind, path: String, _ message: String, bucket: [UInt8]? = nil, key: [UInt8]? = nil,
        pageID: UInt64? = nil, offset: Int64? = nil
    ) {
        self.kind = kind
        self.path = path
        self.message = message
        self.bucket = bucket
        self.key = key
        self.pageID = pageID
        self.offset = offset
    }

    /// The same failure, seen from the etcd layer.
    init(_ error: BoltError, bucket: [UInt8]? = nil) {
        self.init(
            error.kind == .io ? .io : .database(error.kind), path: error.path, error.message, bucket: bucket,
            pageID: error.pageID, offset: error.offset)
    }

    public var description: String {
        var location: [String] = []
        if let bucket { location.append("bucket \(describe(bucket))") }
        if let key { location.append("key \(describe(key))") }
        if let pageID { location.append("page \(pageID)") }
        if let offset { location.append("offset \(offset)") }
        return "\(path): \(message)" + (location.isEmpty ? "" : " (\(location.joined(separator: ", ")))")
    }
}

/// Runs a Bolt operation, turning its error into an `EtcdSnapshotError`.
@inline(__always)
func bolt<T>(bucket: [UInt8]? = nil, _ body: () throws(BoltError) -> T) throws(EtcdSnapshotError) -> T {
    do {
        return try body()
    } catch {
        throw EtcdSnapshotError(error, bucket: bucket)
    }
}
