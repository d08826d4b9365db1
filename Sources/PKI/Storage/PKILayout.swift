import Foundation

/// Where every PKI file of a member lives, under `<data-dir>/pki/`.
///
/// The client and peer folders keep the names operators know from etcd-manager (`clients/ca.crt`, `clients/server.crt`,
/// `peers/ca.crt`, …) so existing runbooks and `openssl` loops still find them. CA private keys live apart in `ca/` so
/// the folders the TLS layer reads never contain a signing key:
///
/// ```
/// pki/
///   ca/       clients-ca.crt|key  peers-ca.crt|key          the signing CAs
///             clients-ca-next.*   peers-ca-next.*           staged by a rotation
///             clients-ca-previous.* peers-ca-previous.*     kept until the old CA is retired
///             clients-rotation.json peers-rotation.json     rotation progress (crash-safe resume)
///   clients/  ca.crt (trust bundle)  server.crt|key  admin.crt|key  crl.pem (optional)
///   peers/    ca.crt (trust bundle)  peer.crt|key
/// ```
///
/// Every file replaced by Quorum leaves its predecessor next to it as `<name>.prev` for rollback.
public struct PKILayout: Sendable, Equatable {
    /// Which generation of a CA a path refers to during rotation.
    public enum Generation: String, Sendable, Codable, CaseIterable {
        case current
        case next
        case previous

        var suffix: String {
            switch self {
            case .current: return ""
            case .next: return "-next"
            case .previous: return "-previous"
            }
        }
    }

    public let dataDirectory: URL

    public init(dataDirectory: URL) {
        self.dataDirectory = dataDirectory.standardizedFileURL
    }

    public var root: URL { dataDirectory.appendingPathComponent("pki", isDirectory: true) }
    public var caDirectory: URL { root.appendingPathComponent("ca", isDirectory: true) }
    public var clientsDirectory: URL { root.appendingPathComponent("clients", isDirectory: true) }
    public var peersDirectory: URL { root.appendingPathComponent("peers", isDirectory: true) }
    public var allDirectories: [URL] { [root, caDirectory, clientsDirectory, peersDirectory] }

    public func caCertificate(_ kind: CAKind, _ generation: Generation = .current) -> URL {
        caDirectory.appendingPathComponent("\(kind.rawValue)-ca\(generation.suffix).crt")
    }

    public func caKey(_ kind: CAKind, _ generation: Generation = .current) -> URL {
        caDirectory.appendingPathComponent("\(kind.rawValue)-ca\(generation.suffix).key")
    }

    /// The bundle TLS verifies against: `clients/ca.crt` or `peers/ca.crt`.
    public func trustBundle(_ kind: CAKind) -> URL {
        directory(for: kind).appendingPathComponent("ca.crt")
    }

    public func rotationState(_ kind: CAKind) -> URL {
        caDirectory.appendingPathComponent("\(kind.rawValue)-rotation.json")
    }

    /// Optional CRL for client certificates; the Server checks client certificates against it when present.
    public var clientsCRL: URL { clientsDirectory.appendingPathComponent("crl.pem") }

    public var serverCertificate: URL { certificate(for: .clientServer) }
    public var serverKey: URL { key(for: .clientServer) }
    public var adminCertificate: URL { certificate(for: .clientAdmin) }
    public var adminKey: URL { key(for: .clientAdmin) }
    public var peerCertificate: URL { certificate(for: .peer) }
    public var peerKey: URL { key(for: .peer) }

    /// The certificate file for a usage; CA usages map to the current CA certificate in `ca/`.
    public func certificate(for usage: CertificateUsage) -> URL {
        switch usage {
        case .clientServer: return clientsDirectory.appendingPathComponent("server.crt")
        case .clientAdmin: return clientsDirectory.appendingPathComponent("admin.crt")
        case .peer: return peersDirectory.appendingPathComponent("peer.crt")
        case .caClients: return caCertificate(.clients)
        case .caPeers: return caCertificate(.peers)
        }
    }

    public func key(for usage: CertificateUsage) -> URL {
        switch usage {
        case .clientServer: return clientsDirectory.appendingPathComponent("server.key")
        case .clientAdmin: return clientsDirectory.appendingPathComponent("admin.key")
        case .peer: return peersDirectory.appendingPathComponent("peer.key")
        case .caClients: return caKey(.clients)
        case .caPeers: return caKey(.peers)
        }
    }

    /// The leaf usages whose certificates a CA of `kind` signs in this member.
    public static func leafUsages(signedBy kind: CAKind) -> [CertificateUsage] {
        kind == .clients ? [.clientServer, .clientAdmin] : [.peer]
    }

    /// The rollback copy kept next to `url`.
    public static func previousCopy(of url: URL) -> URL {
        url.deletingLastPathComponent().appendingPathComponent(url.lastPathComponent + ".prev")
    }

    private func directory(for kind: CAKind) -> URL {
        kind == .clients ? clientsDirectory : peersDirectory
    }
}
