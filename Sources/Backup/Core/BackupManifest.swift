import Foundation

/// The small JSON document that makes a backup exist.
///
/// A backup is complete if and only if its manifest is present, parses, and matches what it sits next to (its name and
/// the snapshot's size); the manifest is always written last and removed first, so a crash at any point leaves either a
/// complete backup or an orphan that listing ignores. It also carries what an operator needs to choose a backup for a
/// restore without opening the snapshot: which cluster and member, which revision and Raft index, which versions.
///
/// Example:
///
///     {
///       "clusterId" : "cdf818194e3a8c32",
///       "createdAt" : "2026-12-06T03:15:00Z",
///       "etcdVersion" : "3.5.0",
///       "format" : 1,
///       "memberId" : "8e9e05c52164694d",
///       "memberName" : "etcd-a",
///       "name" : "2026-12-06T03-15-00Z-48213",
///       "quorumVersion" : "0.9.0",
///       "raftIndex" : 90311,
///       "revision" : 48213,
///       "snapshotFile" : "snapshot.db",
///       "snapshotSha256" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
///       "snapshotSize" : 2093056
///     }
public struct BackupManifest: Codable, Sendable, Equatable {
    /// The layout version this code writes and the newest it reads.
    public static let currentFormat = 1
    /// File (or S3 object) name of the manifest inside a backup.
    public static let fileName = "manifest.json"
    /// File (or S3 object) name of the snapshot inside a backup.
    public static let snapshotFileName = "snapshot.db"
    /// Manifests are a few hundred bytes; anything far larger is not one.
    static let maximumSize = 64 * 1024

    public var format: Int
    /// The backup's name; must equal the directory or key prefix it is stored under.
    public var name: String
    /// Raft cluster ID, lowercase hex without padding (as etcd prints it).
    public var clusterID: String
    /// ID of the member that took the backup, lowercase hex.
    public var memberID: String
    public var memberName: String
    /// etcd revision captured by the snapshot.
    public var revision: Int64
    /// Raft index the snapshot was taken at.
    public var raftIndex: UInt64
    public var quorumVersion: String
    /// etcd API version the snapshot is compatible with, e.g. "3.5.0".
    public var etcdVersion: String
    /// Creation time, whole seconds; serialized as RFC 3339 UTC.
    public var createdAt: Date
    public var snapshotFile: String
    public var snapshotSize: Int64
    /// Lowercase hex SHA-256 of the whole snapshot file.
    public var snapshotSHA256: String

    /// A manifest for a backup named `name`; revision and creation time come from the name so they cannot disagree.
    public init(
        name: BackupName, clusterID: UInt64, memberID: UInt64, memberName: String, raftIndex: UInt64,
        quorumVersion: String, etcdVersion: String, snapshot: FileDigest
    ) {
        format = Self.currentFormat
        self.name = name.rawValue
        self.clusterID = String(clusterID, radix: 16)
        self.memberID = String(memberID, radix: 16)
        self.memberName = memberName
        revision = name.revision
        self.raftIndex = raftIndex
        self.quorumVersion = quorumVersion
        self.etcdVersion = etcdVersion
        createdAt = name.time
        snapshotFile = Self.snapshotFileName
        snapshotSize = snapshot.size
        snapshotSHA256 = snapshot.sha256
    }

    enum CodingKeys: String, CodingKey {
        case format, name
        case clusterID = "clusterId"
        case memberID = "memberId"
        case memberName, revision, raftIndex, quorumVersion, etcdVersion, createdAt, snapshotFile, snapshotSize
        case snapshotSHA256 = "snapshotSha256"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(Int.self, forKey: .format)
        name = try c.decode(String.self, forKey: .name)
        clusterID = try c.decode(String.self, forKey: .clusterID)
        memberID = try c.decode(String.self, forKey: .memberID)
        memberName = try c.decode(String.self, forKey: .memberName)
        revision = try c.decode(Int64.self, forKey: .revision)
        raftIndex = try c.decode(UInt64.self, forKey: .raftIndex)
        quorumVersion = try c.decode(String.self, forKey: .quorumVersion)
        etcdVersion = try c.decode(String.self, forKey: .etcdVersion)
        let created = try c.decode(String.self, forKey: .createdAt)
        guard let date = RFC3339.parse(created) else {
            throw DecodingError.dataCorruptedError(
                forKey: .createdAt, in: c, debugDescription: "'\(created)' is not an RFC 3339 time")
        }
        createdAt = date
        snapshotFile = try c.decode(String.self, forKey: .snapshotFile)
        snapshotSize = try c.decode(Int64.self, forKey: .snapshotSize)
        snapshotSHA256 = try c.decode(String.self, forKey: .snapshotSHA256)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(name, forKey: .name)
        try c.encode(clusterID, forKey: .clusterID)
        try c.encode(memberID, forKey: .memberID)
        try c.encode(memberName, forKey: .memberName)
        try c.encode(revision, forKey: .revision)
        try c.encode(raftIndex, forKey: .raftIndex)
        try c.encode(quorumVersion, forKey: .quorumVersion)
        try c.encode(etcdVersion, forKey: .etcdVersion)
        try c.encode(RFC3339.format(createdAt), forKey: .createdAt)
        try c.encode(snapshotFile, forKey: .snapshotFile)
        try c.encode(snapshotSize, forKey: .snapshotSize)
        try c.encode(snapshotSHA256, forKey: .snapshotSHA256)
    }

    /// The parsed name (valid for any manifest that passed `validate`).
    public var backupName: BackupName? { BackupName(name) }

    /// Pretty-printed JSON with sorted keys: stable bytes for the same content, readable with `cat`.
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding a value made of strings and integers cannot fail.
        return Array(try! encoder.encode(self)) + [UInt8(ascii: "\n")]
    }

    /// Decodes and validates a manifest read from `location` (a path or S3 URL, used in errors).
    public static func decode(_ bytes: [UInt8], location: String) throws -> BackupManifest {
        guard bytes.count <= maximumSize else {
            throw BackupError.invalidManifest(location: location, detail: "\(bytes.count) bytes is too large")
        }
        let manifest: BackupManifest
        do {
            manifest = try JSONDecoder().decode(BackupManifest.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw BackupError.invalidManifest(location: location, detail: Self.describe(error))
        } catch {
            throw BackupError.invalidManifest(location: location, detail: "\(error)")
        }
        try manifest.validate(location: location)
        return manifest
    }

    /// Checks internal consistency: a known format, a canonical name that agrees with revision and creation time, hex
    /// IDs and digest, a non-negative size.
    public func validate(location: String) throws {
        func fail(_ detail: String) -> BackupError { .invalidManifest(location: location, detail: detail) }
        guard format >= 1 else { throw fail("format \(format) is not valid") }
        guard format <= Self.currentFormat else {
            throw fail("format \(format) is newer than this Quorum understands (\(Self.currentFormat))")
        }
        guard let parsed = BackupName(name) else { throw fail("name '\(name)' is not a backup name") }
        guard parsed.revision == revision else {
            throw fail("revision \(revision) disagrees with the name's \(parsed.revision)")
        }
        guard parsed.time == createdAt else {
            throw fail("createdAt \(RFC3339.format(createdAt)) disagrees with the name '\(name)'")
        }
        guard Self.isHexID(clusterID) else { throw fail("clusterId '\(clusterID)' is not hex") }
        guard Self.isHexID(memberID) else { throw fail("memberId '\(memberID)' is not hex") }
        guard snapshotFile == Self.snapshotFileName else {
            throw fail("snapshotFile '\(snapshotFile)' is not '\(Self.snapshotFileName)'")
        }
        guard snapshotSize >= 0 else { throw fail("snapshotSize \(snapshotSize) is negative") }
        guard snapshotSHA256.utf8.count == 64, snapshotSHA256.utf8.allSatisfy(Self.isLowerHex) else {
            throw fail("snapshotSha256 '\(snapshotSHA256)' is not 64 lowercase hex digits")
        }
    }

    static func isLowerHex(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)
    }

    static func isHexID(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 16 && s.utf8.allSatisfy(isLowerHex)
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return "field '\(path)': \(context.debugDescription)"
        case .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty
                ? "not JSON: \(context.debugDescription)" : "field '\(path)': \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
