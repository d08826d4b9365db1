import Foundation

/// Raft's configuration as of the consistent index; etcd 3.5 keeps it in `meta`/`confState` so a member can check
/// its backend against its WAL. Stored as Go's JSON of `raftpb.ConfState`: empty lists are left out, `auto_leave`
/// is always present.
public struct BackendConfState: Sendable, Hashable {
    public var voters: [UInt64]
    public var learners: [UInt64]
    /// The voters of the outgoing configuration during a joint-consensus change.
    public var votersOutgoing: [UInt64]
    /// Voters that become learners once a joint-consensus change completes.
    public var learnersNext: [UInt64]
    public var autoLeave: Bool

    public init(
        voters: [UInt64], learners: [UInt64] = [], votersOutgoing: [UInt64] = [], learnersNext: [UInt64] = [],
        autoLeave: Bool = false
    ) {
        self.voters = voters
        self.learners = learners
        self.votersOutgoing = votersOutgoing
        self.learnersNext = learnersNext
        self.autoLeave = autoLeave
    }

    var json: [UInt8] {
        var fields: [String] = []
        if !voters.isEmpty { fields.append("\"voters\":" + GoJSON.array(voters)) }
        if !learners.isEmpty { fields.append("\"learners\":" + GoJSON.array(learners)) }
        if !votersOutgoing.isEmpty { fields.append("\"voters_outgoing\":" + GoJSON.array(votersOutgoing)) }
        if !learnersNext.isEmpty { fields.append("\"learners_next\":" + GoJSON.array(learnersNext)) }
        fields.append("\"auto_leave\":\(autoLeave)")
        return Array(("{" + fields.joined(separator: ",") + "}").utf8)
    }

    private struct Decoded: Decodable {
        var voters: [UInt64]?
        var learners: [UInt64]?
        var voters_outgoing: [UInt64]?
        var learners_next: [UInt64]?
        var auto_leave: Bool?
    }

    init(json: [UInt8]) throws {
        let decoded = try JSONDecoder().decode(Decoded.self, from: Data(json))
        self.init(
            voters: decoded.voters ?? [], learners: decoded.learners ?? [],
            votersOutgoing: decoded.voters_outgoing ?? [], learnersNext: decoded.learners_next ?? [],
            autoLeave: decoded.auto_leave ?? false)
    }
}
