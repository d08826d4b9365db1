import Foundation
import NIOSSL
import PKI

/// TLS for one side of a member (client-facing or peer-facing), as etcd's flags describe it.
///
/// The client side reads `--cert-file --key-file --trusted-ca-file --client-cert-auth --client-crl-file
/// --client-cert-allowed-hostname --auto-tls`; the peer side reads the `--peer-*` twins plus `--peer-cert-allowed-cn`.
public struct TLSSideSettings: Sendable, Equatable {
    public var certFile: String?
    public var keyFile: String?
    public var trustedCAFile: String?
    /// Require and verify a client certificate (`--client-cert-auth`, `--peer-client-cert-auth`).
    public var clientCertAuth = false
    public var crlFile: String?
    /// `--peer-cert-allowed-cn`: the only common name a peer certificate may carry.
    public var allowedCN: String?
    /// `--client-cert-allowed-hostname` / `--peer-cert-allowed-hostname`: a name the other side's certificate must
    /// be valid for (checked like a server name against its SANs).
    public var allowedHostname: String?
    /// `--auto-tls` / `--peer-auto-tls`: a self-signed certificate, encrypted but not authenticated.
    public var autoTLS = false

    public init() {}

    /// Whether certificate files were given for this side.
    public var hasFiles: Bool { certFile != nil || keyFile != nil }
}

/// How a side obtains its certificate.
public enum TLSMode: Sendable, Equatable {
    /// Plaintext.
    case none
    /// `--cert-file`/`--key-file` managed by someone else (cert-manager, kubeadm): watched and reloaded on change.
    case files
    /// Quorum's own PKI under `<data-dir>/pki/`: issued and renewed by the member itself.
    case managed
    /// etcd's `--auto-tls`: a self-signed certificate kept under `<data-dir>/fixtures/`.
    case autoTLS
}

/// Every TLS-related setting of a member.
public struct TLSSettings: Sendable {
    public var client = TLSSideSettings()
    public var peer = TLSSideSettings()
    /// `--client-cert-auth=false` given explicitly: in managed-PKI mode client certificates are required unless
    /// the operator opts out this way.
    public var clientCertAuthOptOut = false
    /// `--managed-pki`: use the managed PKI even for plaintext URLs' certificates (and for https without files).
    public var managedPKI = false
    /// `--pki-leaf-validity`.
    public var leafValidity = LeafLifetime.default
    /// `--pki-key-algorithm`.
    public var keyAlgorithm = KeyAlgorithm.ecdsaP256
    /// `--pki-renewal-fraction`: renew a leaf when less than this fraction of its lifetime remains.
    public var renewalFraction = 1.0 / 3.0
    /// `--pki-ca-dir`: CAs from `quorumctl pki init` to import on first start. When given, the member never creates
    /// CAs of its own, since a member with a private CA could never talk to the rest of its cluster.
    public var caSourceDirectory: String?
    /// `--self-signed-cert-validity`, in years.
    public var selfSignedCertValidityYears = 1
    /// `--cipher-suites`, as Go names (TLS 1.2 only; TLS 1.3 suites are not configurable, as in Go).
    public var cipherSuites: [NIOTLSCipher] = []
    public var minimumVersion: TLSVersion = .tlsv12
    public var maximumVersion: TLSVersion?
    /// How often externally managed files are checked for changes.
    public var pollInterval: Duration = .seconds(1)

    public init() {}

    /// The mode of the client side, given whether any client URL is https.
    public func clientMode(httpsURLs: Bool) -> TLSMode { Self.mode(client, https: httpsURLs, managed: managedPKI) }

    /// The mode of the peer side, given whether any peer URL is https.
    public func peerMode(httpsURLs: Bool) -> TLSMode { Self.mode(peer, https: httpsURLs, managed: managedPKI) }

    /// Files win (etcd's precedence), then auto-tls; the managed PKI is the default for https without files, and is
    /// used for every side when `--managed-pki` is given.
    static func mode(_ side: TLSSideSettings, https: Bool, managed: Bool) -> TLSMode {
        if side.hasFiles { return .files }
        if side.autoTLS && !managed { return https ? .autoTLS : .none }
        if managed || https { return .managed }
        return .none
    }
}

/// Parsing of etcd's TLS flag values (Go's names and spellings).
public enum TLSFlagParsing {
    /// etcd accepts "TLS1.2" and "TLS1.3" (and an empty maximum for "no maximum").
    public static func version(_ text: String, flag: String) throws -> TLSVersion {
        switch text.uppercased().replacingOccurrences(of: "V", with: "") {
        case "TLS1.2", "TLS12": return .tlsv12
        case "TLS1.3", "TLS13": return .tlsv13
        default:
            throw ConfigError("invalid value \"\(text)\" for flag -\(flag): supported versions are TLS1.2 and TLS1.3")
        }
    }

    /// Orders versions (NIOSSL's enum is not Comparable).
    public static func rank(_ version: TLSVersion) -> Int {
        switch version {
        case .tlsv1: return 10
        case .tlsv11: return 11
        case .tlsv12: return 12
        case .tlsv13: return 13
        }
    }

    /// Go's `tls.CipherSuiteName` spellings, mapped to the code points BoringSSL implements.
    public static let cipherSuitesByName: [String: NIOTLSCipher] = [
        "TLS_RSA_WITH_AES_128_CBC_SHA": .TLS_RSA_WITH_AES_128_CBC_SHA,
        "TLS_RSA_WITH_AES_256_CBC_SHA": .TLS_RSA_WITH_AES_256_CBC_SHA,
        "TLS_RSA_WITH_AES_128_GCM_SHA256": .TLS_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_RSA_WITH_AES_256_GCM_SHA384": .TLS_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": .TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": .TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": .TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": .TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ]

    /// Parses `--cipher-suites` (comma-separated Go names); unknown names are an error, as in etcd.
    public static func cipherSuites(_ text: String) throws -> [NIOTLSCipher] {
        try text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map {
            name in
            guard let cipher = cipherSuitesByName[name] else {
                throw ConfigError(
                    "unexpected TLS cipher suite \"\(name)\" for flag -cipher-suites (supported: "
                        + cipherSuitesByName.keys.sorted().joined(separator: ", ") + ")")
            }
            return cipher
        }
    }
}
