import EtcdProto
import Foundation
import MVCC
import Synchronization

/// etcd's cluster version and downgrade state, replicated through Raft and persisted with the key space (meta rows):
/// the version the whole cluster runs at (`ClusterVersionSet`), the server version each member reported when it
/// published its attributes, and the downgrade job (`DowngradeInfoSet`). Readable from any thread.
public final class ClusterVersionState: Sendable {
    public struct Values: Sendable, Equatable {
        /// "3.5.0"; nil until the leader decided it (etcd's /version then says "not_decided").
        public var clusterVersion: String?
        public var memberVersions: [UInt64: String] = [:]
        public var downgrade = Etcdserverpb_DowngradeInfo()
    }

    private static let clusterVersionRow = "cluster_version"
    private static let downgradeRow = "downgrade"
    private static let memberVersionPrefix = "member_version/"

    private let state: Mutex<Values>

    init(backend: Backend) throws {
        state = Mutex(try Self.load(backend))
    }

    func reload(backend: Backend) throws {
        let loaded = try Self.load(backend)
        state.withLock { $0 = loaded }
    }

    private static func load(_ backend: Backend) throws -> Values {
        var values = Values()
        if let data = try backend.metaData(clusterVersionRow) {
            values.clusterVersion = String(decoding: data, as: UTF8.self)
        }
        if let data = try backend.metaData(downgradeRow) {
            values.downgrade = try Etcdserverpb_DowngradeInfo(serializedBytes: data)
        }
        let s = try backend.writer.statement("SELECT name, data FROM meta WHERE name >= ?1 AND name < ?2")
        s.bind(1, memberVersionPrefix).bind(2, "member_version0")
        while try s.step() {
            let name = s.string(0)
            guard let id = UInt64(name.dropFirst(memberVersionPrefix.count), radix: 16) else { continue }
            values.memberVersions[id] = String(decoding: s.data(1), as: UTF8.self)
        }
        s.reset()
        return values
    }

    public var values: Values { state.withLock { $0 } }

    // Applied on the apply loop only, inside its batch.

    func setClusterVersion(_ version: String, backend: Backend) throws {
        try backend.setMetaData(Self.clusterVersionRow, Data(version.utf8))
        state.withLock { $0.clusterVersion = version }
    }

    func setDowngrade(_ info: Etcdserverpb_DowngradeInfo, backend: Backend) throws {
        try backend.setMetaData(Self.downgradeRow, try info.serializedBytes())
        state.withLock { $0.downgrade = info }
    }

    func setMemberVersion(_ id: UInt64, _ version: String, backend: Backend) throws {
        try backend.setMetaData(Self.memberVersionPrefix + String(id, radix: 16), Data(version.utf8))
        state.withLock { $0.memberVersions[id] = version }
    }
}

/// A version as etcd's semver compares cluster versions: major and minor only.
public struct MinorVersion: Comparable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    /// "3.5.13", "3.5.0" or "3.5" (etcd's `convertToClusterVersion` accepts Major.Minor too); nil if not a version.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, let major = Int(parts[0]), let minor = Int(parts[1]),
            major >= 0, minor >= 0
        else { return nil }
        if parts.count == 3 {
            // The patch may carry semver's pre-release and build suffixes ("0-alpha.0"), nothing else.
            let patch = parts[2].prefix { $0.isNumber }
            guard !patch.isEmpty, patch.count == parts[2].count || "-+".contains(parts[2][patch.endIndex]) else {
                return nil
            }
        }
        self.init(major: major, minor: minor)
    }

    /// As etcd writes a cluster version: "3.5.0".
    public var description: String { "\(major).\(minor).0" }

    public static func < (a: MinorVersion, b: MinorVersion) -> Bool { (a.major, a.minor) < (b.major, b.minor) }
}

/// What the leader does about the cluster version, etcd's `monitorVersions` and `monitorDowngrade` as a pure
/// function of the replicated state: set the cluster version to the lowest version its members report (raised as
/// members upgrade; lowered by one minor only while a downgrade to it is enabled), and end a downgrade job once
/// every member runs the target version.
public enum ClusterVersionDecision: Equatable, Sendable {
    case setClusterVersion(String)
    case finishDowngrade

    /// `members`: the ids of the cluster's voting members and learners. Nothing is decided while a member has not
    /// reported its version.
    public static func decide(_ values: ClusterVersionState.Values, members: [UInt64]) -> ClusterVersionDecision? {
        var lowest: MinorVersion?
        for id in members {
            guard let text = values.memberVersions[id], let version = MinorVersion(text) else { return nil }
            lowest = min(lowest ?? version, version)
        }
        guard let lowest else { return nil }
        if values.downgrade.enabled, let target = MinorVersion(values.downgrade.targetVersion) {
            if members.allSatisfy({ MinorVersion(values.memberVersions[$0] ?? "") == target }) {
                return .finishDowngrade
            }
        }
        guard let current = values.clusterVersion.flatMap(MinorVersion.init) else {
            return .setClusterVersion(lowest.description)
        }
        if current.major == lowest.major && current < lowest { return .setClusterVersion(lowest.description) }
        // etcd's isValidDowngrade: one minor down, to the enabled target.
        if values.downgrade.enabled, MinorVersion(values.downgrade.targetVersion) == lowest,
            lowest.major == current.major && lowest.minor == current.minor - 1
        {
            return .setClusterVersion(lowest.description)
        }
        return nil
    }
}
