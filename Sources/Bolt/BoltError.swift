/// Everything that can go wrong reading or writing a bbolt file. Each error names the file, says what is wrong
/// and, where it applies, where: the page id and the byte offset in the file.
public struct BoltError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The broad class of problem, for callers that react differently to each (and for tests).
    public enum Kind: Sendable, Equatable {
        /// The operating system refused an operation (open, read, write, fsync).
        case io
        /// The file is shorter than what its own meta page or page headers describe (or empty).
        case truncated
        /// Neither meta page carries bbolt's magic number: not a bbolt file (or both meta pages destroyed).
        case notBolt
        /// A meta page is bbolt's, but of a format version other than 2.
        case unsupportedVersion
        /// A meta page's FNV-64a checksum does not match its content (a bit flip, a torn write).
        case checksumMismatch
        /// A page is malformed: wrong type, impossible sizes, a reference beyond the file, a cycle, keys out of
        /// order.
        case corrupt
        /// A bucket that is not in the file.
        case bucketNotFound
        /// The caller broke a rule of the format (an empty or oversized key, keys out of order, a duplicate
        /// bucket, a call in the wrong state).
        case invalidArgument
    }

    public var kind: Kind
    /// The file the error is about.
    public var path: String
    /// What is wrong, in words.
    public var message: String
    /// The page the problem was found in, when there is one.
    public var pageID: UInt64?
    /// The byte offset in the file, when there is one.
    public var offset: Int64?

    public init(_ kind: Kind, path: String, _ message: String, pageID: UInt64? = nil, offset: Int64? = nil) {
        self.kind = kind
        self.path = path
        self.message = message
        self.pageID = pageID
        self.offset = offset
    }

    public var description: String {
        var location: [String] = []
        if let pageID { location.append("page \(pageID)") }
        if let offset { location.append("offset \(offset)") }
        let suffix = location.isEmpty ? "" : " (\(location.joined(separator: ", ")))"
        return "\(path): \(message)\(suffix)"
    }
}
