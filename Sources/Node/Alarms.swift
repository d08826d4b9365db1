import EtcdProto
import MVCC
import Synchronization

/// Raised alarms (NOSPACE, CORRUPT), persisted with the key space and readable from any thread.
public final class AlarmSet: Sendable {
    public struct Alarm: Hashable, Sendable {
        public var member: UInt64
        public var type: Etcdserverpb_AlarmType
    }

    private let active: Mutex<Set<Alarm>>

    init(backend: Backend) throws {
        active = Mutex(try AlarmSet.load(backend))
    }

    /// Re-reads the alarms after a snapshot replaced the backend.
    func reload(backend: Backend) throws {
        let loaded = try AlarmSet.load(backend)
        active.withLock { $0 = loaded }
    }

    private static func load(_ backend: Backend) throws -> Set<Alarm> {
        var loaded: Set<Alarm> = []
        let s = try backend.writer.statement("SELECT member_id, alarm FROM alarms")
        while try s.step() {
            loaded.insert(
                Alarm(
                    member: UInt64(bitPattern: s.int64(0)),
                    type: Etcdserverpb_AlarmType(rawValue: Int(s.int64(1))) ?? .none))
        }
        s.reset()
        return loaded
    }

    public var all: [Alarm] {
        active.withLock { $0.sorted { ($0.member, $0.type.rawValue) < ($1.member, $1.type.rawValue) } }
    }

    public func contains(_ type: Etcdserverpb_AlarmType) -> Bool {
        active.withLock { set in set.contains { $0.type == type } }
    }

    /// Applies a committed activation; nil if it was already active (etcd answers with no alarm then).
    func activate(_ alarm: Alarm, backend: Backend) throws -> Alarm? {
        guard active.withLock({ $0.insert(alarm).inserted }) else { return nil }
        let s = try backend.writer.statement("INSERT OR IGNORE INTO alarms(member_id, alarm) VALUES(?1, ?2)")
        s.bind(1, Int64(bitPattern: alarm.member)).bind(2, Int64(alarm.type.rawValue))
        try s.run()
        return alarm
    }

    func deactivate(_ alarm: Alarm, backend: Backend) throws -> Alarm? {
        guard active.withLock({ $0.remove(alarm) }) != nil else { return nil }
        let s = try backend.writer.statement("DELETE FROM alarms WHERE member_id = ?1 AND alarm = ?2")
        s.bind(1, Int64(bitPattern: alarm.member)).bind(2, Int64(alarm.type.rawValue))
        try s.run()
        return alarm
    }
}

extension AlarmSet.Alarm {
    public var proto: Etcdserverpb_AlarmMember {
        var m = Etcdserverpb_AlarmMember()
        m.memberID = member
        m.alarm = type
        return m
    }
}
