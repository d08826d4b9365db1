import Foundation

/// A cluster member as etcd records it in the `members` bucket.
///
/// etcd stores the member as Go's JSON of its `Member` struct under the ID in lower-case hex; the encoding below
/// produces the same bytes Go's `json.Marshal` does (field order, omitted empty fields, Go's string escaping).
public struct BackendMember: Sendable, Hashable {
    public var id: UInt64
    /// Empty for a member that was added but has not started yet.
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner: Bool

    public init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String] = [], isLearner: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }

    /// The bucket key: etcd's `types.ID` string, lower-case hex without leading zeros.
    static func keyBytes(_ id: UInt64) -> [UInt8] { Array(String(id, radix: 16).utf8) }

    static func id(fromKey key: [UInt8]) -> UInt64? {
        guard !key.isEmpty, key.count <= 16 else { return nil }
        return UInt64(String(decoding: key, as: UTF8.self), radix: 16)
    }

    /// `{"id":…,"peerURLs":[…],"isLearner":true,"name":"…","clientURLs":[…]}`, the last three only when set.
    var json: [UInt8] {
        var out = "{\"id\":\(id),\"peerURLs\":" + GoJSON.array(peerURLs)
        if isLearner { out += ",\"isLearner\":true" }
        if !name.isEmpty { out += ",\"name\":" + GoJSON.string(name) }
        if !clientURLs.isEmpty { out += ",\"clientURLs\":" + GoJSON.array(clientURLs) }
        return Array((out + "}").utf8)
    }

    private struct Decoded: Decodable {
        var id: UInt64
        var peerURLs: [String]?
        var isLearner: Bool?
        var name: String?
        var clientURLs: [String]?
    }

    init(json: [UInt8]) throws {
        let decoded = try JSONDecoder().decode(Decoded.self, from: Data(json))
        self.init(
            id: decoded.id, name: decoded.name ?? "", peerURLs: decoded.peerURLs ?? [],
            clientURLs: decoded.clientURLs ?? [], isLearner: decoded.isLearner ?? false)
    }
}
