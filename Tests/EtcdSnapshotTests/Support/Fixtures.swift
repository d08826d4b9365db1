import EtcdProto
import EtcdSnapshot
import Foundation
import TestSupport

/// Snapshot content with known meaning: a random but etcd-shaped history and a backend state around it.
enum Fixtures {
    /// Leases with long TTLs (they must outlive a test), one of them checkpointed with less time left.
    static let leases = [
        BackendLease(id: 0x1122_3344_5566_7788, ttl: 86_400),
        BackendLease(id: 0x0000_0000_0000_0abc, ttl: 7_200, remainingTTL: 5_000),
        BackendLease(id: 0x7000_0000_0000_0001, ttl: 3_600),
    ]

    /// `operations` write transactions over a few hundred keys: puts, overwrites, deletes, transactions of several
    /// changes, keys attached to leases, large and empty values — with a compaction two thirds of the way through.
    static func history(operations: Int, using random: inout SeededRandom) -> History {
        var history = History()
        let keys = (0..<max(20, operations / 10)).map { "key/\(String($0, radix: 36))" }
        let compactAfter = operations * 2 / 3
        for step in 0..<operations {
            if step == compactAfter { history.compact(at: history.currentRevision - 5) }
            let key = keys.randomElement(using: &random) ?? "key/0"
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<55:
                history.put(key, value(using: &random))
            case 55..<70:
                let lease = leases.randomElement(using: &random)?.id ?? 0
                history.put(key, value(using: &random), lease: lease)
            case 70..<85:
                if let victim = history.liveKeys.randomElement(using: &random) {
                    history.delete(victim)
                } else {
                    history.put(key, [])
                }
            default:
                var operations: [History.Operation] = []
                for other in keys.shuffled(using: &random).prefix(Int.random(in: 2...5, using: &random)) {
                    operations.append(
                        Bool.random(using: &random) ? .put(other, value(using: &random), lease: 0) : .delete(other))
                }
                history.transaction(operations)
            }
        }
        return history
    }

    static func value(using random: inout SeededRandom) -> [UInt8] {
        switch Int.random(in: 0..<100, using: &random) {
        case 0..<5: return []
        case 5..<8: return random.bytes(Int.random(in: 4_097...12_000, using: &random))  // overflow pages
        default: return Array("value-\(random.next() % 1_000_000)".utf8)
        }
    }

    /// A backend state with something in every bucket.
    static func state(clusterVersion: String, history: History, withAlarm: Bool = true) -> BackendState {
        var reader = Authpb_Role()
        reader.name = Data("reader".utf8)
        var permission = Authpb_Permission()
        permission.permType = .read
        permission.key = Data("app/".utf8)
        permission.rangeEnd = Data("app0".utf8)
        reader.keyPermission = [permission]
        var alice = Authpb_User()
        alice.name = Data("alice".utf8)
        alice.password = Data("$2a$10$not.a.real.bcrypt.hash.just.bytes.for.the.test".utf8)
        alice.roles = ["reader"]
        var alarm = Etcdserverpb_AlarmMember()
        alarm.memberID = 0x0102_0304_0506_0708
        alarm.alarm = .nospace
        let member = BackendMember(
            id: 0xFEDC_BA98_7654_3210, name: "old-member", peerURLs: ["http://127.0.0.1:2380"],
            clientURLs: ["http://127.0.0.1:2379"])
        return BackendState(
            meta: BackendMeta(
                consistentIndex: 123_456, term: 7, confState: BackendConfState(voters: [member.id]),
                scheduledCompactRevision: history.compactedAt, finishedCompactRevision: history.compactedAt),
            cluster: BackendCluster(version: clusterVersion, members: [member], removedMemberIDs: [0x42]),
            leases: leases, alarms: withAlarm ? [alarm] : [],
            auth: BackendAuth(revision: 9, users: [alice], roles: [reader]))
    }
}
