import Foundation

/// The name of one backup: its creation time (UTC, whole seconds) and the revision it captured, e.g.
/// `2026-12-06T03-15-00Z-48213`.
///
/// Why this shape: names sort lexicographically in creation order (a plain `ls` or S3 listing shows oldest first, and
/// operators can pick one by eye), they carry no characters that need escaping in a path or an S3 key (`:` is replaced
/// by `-` because it is awkward on some file systems and in URLs), and the revision makes two backups taken within the
/// same second of different data distinct. Parsing is strict — the text must be exactly what `init(time:revision:)`
/// would produce — so one backup cannot hide under two spellings and stores can ignore every entry that is not theirs.
public struct BackupName: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Creation time, truncated to whole seconds.
    public let time: Date
    /// The etcd revision the snapshot holds.
    public let revision: Int64
    /// The canonical text.
    public let rawValue: String

    public init(time: Date, revision: Int64) {
        precondition(revision >= 0, "a revision is never negative")
        let c = RFC3339.civil(time)
        self.time = RFC3339.date(c)
        self.revision = revision
        let p = RFC3339.pad
        rawValue =
            "\(p(c.year, 4))-\(p(c.month, 2))-\(p(c.day, 2))T\(p(c.hour, 2))-\(p(c.minute, 2))-\(p(c.second, 2))Z-\(revision)"
    }

    /// Parses a canonical name; nil for anything else (including valid-looking names with leading zeros in the revision
    /// or out-of-range fields).
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        // "YYYY-MM-DDTHH-MM-SSZ-" is 21 bytes, then 1...19 digits.
        guard bytes.count >= 22, bytes.count <= 40, bytes[19] == UInt8(ascii: "Z"), bytes[20] == UInt8(ascii: "-")
        else { return nil }
        var timeText = Array(bytes[0..<20])
        guard timeText[13] == UInt8(ascii: "-"), timeText[16] == UInt8(ascii: "-") else { return nil }
        timeText[13] = UInt8(ascii: ":")
        timeText[16] = UInt8(ascii: ":")
        let revisionBytes = bytes[21...]
        guard revisionBytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let time = RFC3339.parse(String(decoding: timeText, as: UTF8.self)),
            let revision = Int64(String(decoding: revisionBytes, as: UTF8.self))
        else { return nil }
        let canonical = BackupName(time: time, revision: revision)
        guard canonical.rawValue == text else { return nil }
        self = canonical
    }

    public var description: String { rawValue }

    public static func < (a: BackupName, b: BackupName) -> Bool {
        (a.time, a.revision) < (b.time, b.revision)
    }
}
