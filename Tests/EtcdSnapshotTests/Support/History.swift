import EtcdProto
import EtcdSnapshot
import Foundation

/// A small model of etcd's multi-version key space: it applies puts, deletes, multi-operation transactions and a
/// compaction the way etcd does, and produces the key revisions etcd would have in its backend. Tests use it to
/// write snapshots whose meaning they know, and to predict what `etcdctl get` (and `--rev`) must answer.
struct History {
    enum Operation {
        case put(String, [UInt8], lease: Int64)
        case delete(String)
    }

    /// Every revision that survives, in revision order.
    private(set) var revisions: [KeyRevision] = []
    /// The store's current revision; etcd starts at 1 with nothing in it.
    private(set) var currentRevision: Int64 = 1
    private(set) var compactedAt: Int64?
    /// The live value of each key.
    private var live: [String: Mvccpb_KeyValue] = [:]

    var liveKeys: [String] { Array(live.keys) }

    mutating func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) {
        transaction([.put(key, value, lease: lease)])
    }
    mutating func delete(_ key: String) { transaction([.delete(key)]) }

    /// One write transaction: one main revision, one sub revision per change. Deleting a key that does not exist
    /// changes nothing (and a transaction that changes nothing takes no revision), as in etcd.
    mutating func transaction(_ operations: [Operation]) {
        let main = currentRevision + 1
        var sub: Int64 = 0
        for operation in operations {
            let revision = BackendRevision(main: main, sub: sub)
            switch operation {
            case .put(let key, let value, let lease):
                let previous = live[key]
                let entry = KeyRevision.put(
                    Array(key.utf8), value, revision: revision, createRevision: previous?.createRevision ?? main,
                    version: (previous?.version ?? 0) + 1, lease: lease)
                live[key] = entry.keyValue
                revisions.append(entry)
            case .delete(let key):
                guard live.removeValue(forKey: key) != nil else { continue }
                revisions.append(.tombstone(Array(key.utf8), revision: revision))
            }
            sub += 1  // only changes take a sub revision
        }
        if revisions.last?.revision.main == main { currentRevision = main }
    }

    /// etcd's compaction: of the revisions at or below `revision`, each key keeps only its latest, and not even
    /// that when it is a tombstone.
    mutating func compact(at revision: Int64) {
        var latest: [Data: BackendRevision] = [:]
        for entry in revisions where entry.revision.main <= revision { latest[entry.keyValue.key] = entry.revision }
        revisions.removeAll { entry in
            entry.revision.main <= revision
                && (entry.revision != latest[entry.keyValue.key] || entry.isTombstone)
        }
        compactedAt = revision
    }

    /// What `etcdctl get "" --prefix --rev=revision` answers, from `revisions` (any revision list works).
    static func view(of revisions: [KeyRevision], at revision: Int64) -> [ObservedKV] {
        var latest: [Data: KeyRevision] = [:]
        for entry in revisions where entry.revision.main <= revision { latest[entry.keyValue.key] = entry }
        return latest.values.filter { !$0.isTombstone }.map { ObservedKV($0.keyValue) }.sorted()
    }

    func view(at revision: Int64) -> [ObservedKV] { History.view(of: revisions, at: revision) }
}

/// One key as `etcdctl get -w json` shows it, and as a snapshot's revisions imply it.
struct ObservedKV: Hashable, Comparable, CustomStringConvertible {
    var key: [UInt8]
    var value: [UInt8]
    var createRevision: Int64
    var modRevision: Int64
    var version: Int64
    var lease: Int64

    init(key: [UInt8], value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }

    init(_ kv: Mvccpb_KeyValue) {
        self.init(
            key: Array(kv.key), value: Array(kv.value), createRevision: kv.createRevision, modRevision: kv.modRevision,
            version: kv.version, lease: kv.lease)
    }

    static func < (a: ObservedKV, b: ObservedKV) -> Bool { a.key.lexicographicallyPrecedes(b.key) }

    var description: String {
        let name = String(decoding: key, as: UTF8.self)
        return "\(name)=\(value.count)B c\(createRevision) m\(modRevision) v\(version) l\(lease)"
    }
}
