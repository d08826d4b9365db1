import EtcdProto
import MVCC
import Synchronization

/// A member of the cluster as the replicated state knows it.
public struct MemberInfo: Sendable, Equatable {
    public var id: UInt64
    /// Empty until the member publishes itself after starting.
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner: Bool

    public init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String], isLearner: Bool) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }

    public var proto: Etcdserverpb_Member {
        var m = Etcdserverpb_Member()
        m.id = id
        m.name = name
        m.peerUrls = peerURLs
        m.clientUrls = clientURLs
        m.isLearner = isLearner
        return m
    }

    init(_ m: Etcdserverpb_Member) {
        self.init(id: m.id, name: m.name, peerURLs: m.peerUrls, clientURLs: m.clientUrls, isLearner: m.isLearner)
    }
}

/// Cluster membership: persisted in the backend by the apply loop, readable from any thread.
/// Removed member ids are remembered forever, as etcd does, so a removed member can never rejoin under its id.
public final class ClusterMembers: Sendable {
    private struct State {
        var members: [UInt64: MemberInfo] = [:]
        var removed: Set<UInt64> = []
    }

    private let state: Mutex<State>

    init(backend: Backend) throws {
        var s = State()
        let q = try backend.writer.statement(
            "SELECT id, name, peer_urls, client_urls, is_learner FROM members")
        while try q.step() {
            let id = UInt64(bitPattern: q.int64(0))
            s.members[id] = MemberInfo(
                id: id, name: q.string(1), peerURLs: ClusterMembers.split(q.string(2)),
                clientURLs: ClusterMembers.split(q.string(3)), isLearner: q.int64(4) != 0)
        }
        q.reset()
        let r = try backend.writer.statement("SELECT id FROM removed_members")
        while try r.step() { s.removed.insert(UInt64(bitPattern: r.int64(0))) }
        r.reset()
        state = Mutex(s)
    }

    private static func split(_ text: String) -> [String] {
        text.split(separator: "\n").map(String.init)
    }

    /// Members sorted by id, the order etcd lists them in.
    public var all: [MemberInfo] { state.withLock { $0.members.values.sorted { $0.id < $1.id } } }

    public func member(_ id: UInt64) -> MemberInfo? { state.withLock { $0.members[id] } }

    public func isRemoved(_ id: UInt64) -> Bool { state.withLock { $0.removed.contains(id) } }

    public var isEmpty: Bool { state.withLock { $0.members.isEmpty } }

    /// Adds or replaces a member (apply loop only).
    func upsert(_ member: MemberInfo, backend: Backend) throws {
        let s = try backend.writer.statement(
            """
            INSERT INTO members(id, name, peer_urls, client_urls, is_learner) VALUES(?1, ?2, ?3, ?4, ?5)
            ON CONFLICT(id) DO UPDATE SET name = excluded.name, peer_urls = excluded.peer_urls,
                client_urls = excluded.client_urls, is_learner = excluded.is_learner
            """)
        s.bind(1, Int64(bitPattern: member.id)).bind(2, member.name).bind(3, member.peerURLs.joined(separator: "\n"))
            .bind(4, member.clientURLs.joined(separator: "\n")).bind(5, member.isLearner ? 1 : 0)
        try s.run()
        state.withLock { $0.members[member.id] = member }
    }

    func remove(_ id: UInt64, backend: Backend) throws {
        let d = try backend.writer.statement("DELETE FROM members WHERE id = ?1")
        d.bind(1, Int64(bitPattern: id))
        try d.run()
        let r = try backend.writer.statement("INSERT OR IGNORE INTO removed_members(id) VALUES(?1)")
        r.bind(1, Int64(bitPattern: id))
        try r.run()
        state.withLock {
            $0.members[id] = nil
            $0.removed.insert(id)
        }
    }

    /// Reloads from the backend (after a snapshot replaced the database).
    func reload(backend: Backend) throws {
        let fresh = try ClusterMembers(backend: backend)
        let s = fresh.state.withLock { $0 }
        state.withLock { $0 = s }
    }
}
