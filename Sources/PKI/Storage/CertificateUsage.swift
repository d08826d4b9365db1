/// The role a certificate plays in a member, used as the `usage` label on expiry gauges and in every report.
public enum CertificateUsage: String, Sendable, Codable, CaseIterable, Comparable {
    /// The member's client-facing serving certificate.
    case clientServer = "client-server"
    /// The admin client certificate kept for local `etcdctl`.
    case clientAdmin = "client-admin"
    /// The member's peer certificate.
    case peer = "peer"
    /// The CA that signs serving and client certificates.
    case caClients = "ca-clients"
    /// The CA that signs peer certificates.
    case caPeers = "ca-peers"

    public var isCertificateAuthority: Bool { self == .caClients || self == .caPeers }

    /// The CA that signs certificates of this usage (a CA is its own authority).
    public var authority: CAKind {
        switch self {
        case .clientServer, .clientAdmin, .caClients: return .clients
        case .peer, .caPeers: return .peers
        }
    }

    /// "clients CA certificate", used at the start of operator messages about CAs.
    var caDescription: String { "\(authority.rawValue) CA certificate" }

    public static func < (lhs: CertificateUsage, rhs: CertificateUsage) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// The two independent CAs of an etcd cluster, as in etcd-manager: one trusted by clients, one only by peers, so a
/// leaked client certificate can never join the Raft group.
public enum CAKind: String, Sendable, Codable, CaseIterable {
    case clients
    case peers

    public var usage: CertificateUsage { self == .clients ? .caClients : .caPeers }
}
