/// The names etcd's backend uses: buckets and the fixed keys inside them (etcd 3.4 and 3.5; 3.5 adds `term` and
/// `confState` to `meta`). Kept in one place so the writer and the reader cannot disagree.
public enum EtcdSchema {
    /// Every revision of every key: 17-byte revision → `mvccpb.KeyValue`.
    public static let keyBucket = bytes("key")
    /// Raft and compaction bookkeeping.
    public static let metaBucket = bytes("meta")
    /// Lease ID (8 bytes, big-endian) → `leasepb.Lease`.
    public static let leaseBucket = bytes("lease")
    /// Member ID (lower-case hex) → the member as JSON.
    public static let membersBucket = bytes("members")
    /// Member ID (lower-case hex) → "removed".
    public static let membersRemovedBucket = bytes("members_removed")
    /// `clusterVersion` (and, in 3.5 while a downgrade runs, `downgrade`).
    public static let clusterBucket = bytes("cluster")
    /// `etcdserverpb.AlarmMember` → empty value.
    public static let alarmBucket = bytes("alarm")
    /// `authEnabled`, `authRevision`.
    public static let authBucket = bytes("auth")
    /// User name → `authpb.User`.
    public static let authUsersBucket = bytes("authUsers")
    /// Role name → `authpb.Role`.
    public static let authRolesBucket = bytes("authRoles")

    /// The buckets etcd 3.5 creates at start-up; the writer writes all of them, empty or not.
    public static let allBuckets = [
        keyBucket, metaBucket, leaseBucket, membersBucket, membersRemovedBucket, clusterBucket, alarmBucket,
        authBucket, authUsersBucket, authRolesBucket,
    ]

    static let consistentIndexKey = bytes("consistent_index")
    static let termKey = bytes("term")
    static let confStateKey = bytes("confState")
    static let scheduledCompactKey = bytes("scheduledCompactRev")
    static let finishedCompactKey = bytes("finishedCompactRev")
    static let clusterVersionKey = bytes("clusterVersion")
    static let authEnabledKey = bytes("authEnabled")
    static let authRevisionKey = bytes("authRevision")
    /// The value etcd stores for a removed member.
    static let removedValue = bytes("removed")

    static func bytes(_ string: StaticString) -> [UInt8] {
        string.withUTF8Buffer { Array($0) }
    }
}

extension Array where Element == UInt8 {
    /// 8 bytes, big-endian: how etcd stores the consistent index, the term, the auth revision and lease IDs.
    init(bigEndian value: UInt64) {
        self = Swift.withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    /// The big-endian integer in these 8 bytes, or nil when there are not exactly 8.
    var bigEndianUInt64: UInt64? {
        guard count == 8 else { return nil }
        return reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// A byte string for messages: printable ASCII as is, anything else as hex.
func describe(_ bytes: [UInt8], limit: Int = 48) -> String {
    let shown = bytes.prefix(limit)
    let suffix = bytes.count > limit ? "…(\(bytes.count) bytes)" : ""
    if !shown.isEmpty && shown.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
        return "\"" + String(decoding: shown, as: UTF8.self) + "\"" + suffix
    }
    let hex = shown.map { byte in
        let digits = String(byte, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }
    return "0x" + hex.joined() + suffix
}
