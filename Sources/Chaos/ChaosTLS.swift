import Foundation
import GRPCNIOTransportHTTP2
import Synchronization

/// Mutual TLS for a chaos cluster: CAs made once with `quorumctl pki init` and shared by every member (as
/// docs/TLS.md describes), short-lived leaves that members renew on their own, and a client identity for the
/// harness's own clients.
public final class ChaosTLS: Sendable {
    public let caDirectory: String
    /// `--pki-leaf-validity` of every member, e.g. "4s".
    public let leafValidity: String
    /// The `quorumctl` binary (CAs, client certificates, CA rotation).
    public let quorumctl: String
    let workDirectory: String

    /// The identity the harness's clients present, and the bundle they trust; replaced during a CA rotation.
    public struct ClientFiles: Sendable {
        public var certificate: String
        public var key: String
        public var trustBundle: String
    }

    private let client = Mutex<ClientFiles?>(nil)

    /// Creates the shared CAs under `workDirectory/ca`.
    public init(workDirectory: String, leafValidity: String, quorumctl: String) throws {
        self.workDirectory = workDirectory
        self.leafValidity = leafValidity
        self.quorumctl = quorumctl
        caDirectory = workDirectory + "/ca"
        try Shell.run([quorumctl, "pki", "init", "--out", caDirectory])
    }

    public var clientFiles: ClientFiles? { client.withLock { $0 } }

    /// Issues a client certificate (CN `name`, a day long) from the clients CA that `dataDirectory` currently signs
    /// with, and makes the harness's clients use it with `trustBundle` (default: that member's clients bundle).
    public func issueClient(name: String, from dataDirectory: String, trustBundle: String? = nil) throws {
        let out = workDirectory + "/client-\(name)"
        try Shell.run([
            quorumctl, "certs", "issue-client", name, "--data-dir", dataDirectory, "--validity", "24h", "--out", out,
        ])
        let files = ClientFiles(
            certificate: out + "/\(name).crt", key: out + "/\(name).key",
            trustBundle: trustBundle ?? dataDirectory + "/pki/clients/ca.crt")
        client.withLock { $0 = files }
    }

    /// Trust a different bundle from now on (new connections only).
    public func trust(_ bundle: String) {
        client.withLock { $0?.trustBundle = bundle }
    }

    /// What a new client connection uses: read per connection, so a switch applies to the next one.
    var transportSecurity: HTTP2ClientTransport.Posix.TransportSecurity {
        guard let files = clientFiles else { return .plaintext }
        return .tls(
            .init(
                certificateChain: [.file(path: files.certificate, format: .pem)],
                privateKey: .file(path: files.key, format: .pem),
                serverCertificateVerification: .noHostnameVerification,
                trustRoots: .certificates([.file(path: files.trustBundle, format: .pem)])))
    }

    /// `curl` arguments that present the client identity (for `/health`).
    var curlArguments: [String] {
        guard let files = clientFiles else { return [] }
        return ["--cacert", files.trustBundle, "--cert", files.certificate, "--key", files.key]
    }
}
