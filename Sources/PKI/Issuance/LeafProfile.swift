import X509

/// What a leaf certificate is for, which decides its extended key usages.
///
/// etcd members use one certificate both to serve and to dial (peer connections are mutual TLS in both directions, and
/// the gRPC gateway dials its own client port), so serving certificates carry serverAuth *and* clientAuth. Client
/// certificates only ever authenticate a user and so only carry clientAuth.
public enum LeafProfile: String, Sendable, Codable, CaseIterable {
    /// A member's client-facing serving certificate (`clients/server.crt`).
    case server
    /// A member's peer certificate (`peers/peer.crt`).
    case peer
    /// A user certificate; the common name is the etcd user name (`root`, `kube-apiserver`).
    case client

    public var extendedKeyUsages: [ExtendedKeyUsage.Usage] {
        switch self {
        case .server, .peer: return [.serverAuth, .clientAuth]
        case .client: return [.clientAuth]
        }
    }
}
