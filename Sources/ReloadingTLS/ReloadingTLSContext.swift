import Foundation
import Logging
import NIOCore
import NIOSSL
import PKI
import RPCTransport
import Synchronization
import X509

/// How one side's TLS contexts are built, beyond the certificate files.
public struct TLSContextOptions: Sendable {
    /// "client" or "peer", for logs and metrics.
    public var side: String
    /// Require a certificate from whoever connects, verified by `TLSVerifier` against the current bundle and CRL.
    public var clientCertAuth: Bool
    public var allowedCN: String?
    public var allowedHostname: String?
    public var minimumVersion: TLSVersion
    public var maximumVersion: TLSVersion?
    public var cipherSuites: [NIOTLSCipher]
    /// ALPN offered when serving: gRPC needs h2, curl and browsers on the same port may want http/1.1.
    public var applicationProtocols: [String]
    /// Check the certificate of the member this side dials. Off only for etcd's auto-TLS without a CA file, where
    /// etcd encrypts peer links without authenticating them (there is nothing to verify against).
    public var verifyDialledPeer = true

    public init(
        side: String,
        clientCertAuth: Bool,
        allowedCN: String? = nil,
        allowedHostname: String? = nil,
        minimumVersion: TLSVersion = .tlsv12,
        maximumVersion: TLSVersion? = nil,
        cipherSuites: [NIOTLSCipher] = [],
        applicationProtocols: [String] = ["h2", "http/1.1"]
    ) {
        self.side = side
        self.clientCertAuth = clientCertAuth
        self.allowedCN = allowedCN
        self.allowedHostname = allowedHostname
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
        self.cipherSuites = cipherSuites
        self.applicationProtocols = applicationProtocols
    }

    var minimumVersionName: String { minimumVersion == .tlsv13 ? "TLS1.3" : "TLS1.2" }
}

/// A `TLSContextSource` whose certificate, key, CA bundle and CRL follow the files on disk without a restart.
///
/// Each accepted connection takes the `NIOSSLContext` current at accept time and keeps it for its whole life, so a
/// swap never disturbs open connections (watches keep streaming) while every new handshake presents the new
/// certificate at once. Client certificates are not verified by BoringSSL against a trust store frozen into the
/// context, but by `TLSVerifier` against the bundle and CRL current *at the handshake*, which is what makes CA
/// bundle and CRL changes take effect as promptly as certificate changes, and what lets every rejection be logged
/// with its real reason. The same object builds client-side handlers for dialling peers with the same identity.
public final class ReloadingTLSContext: TLSContextSource, Sendable {
    public let files: TLSFileSet
    public let options: TLSContextOptions
    package let sink: TLSEventSink

    struct Current: Sendable {
        var material: LoadedTLSMaterial
        var server: NIOSSLContext
        var client: NIOSSLContext
        var stamp: FileStamp
        /// The file state that last failed to load; not retried until the files change again.
        var failedStamp: FileStamp?
        var reloads: Int
    }

    private let current: Mutex<Current>
    /// Why the last dial to each host refused the server's certificate (for health; see `lastDialRejection`).
    private let dialRejections = Mutex<[String: TLSRejection]>([:])
    /// Called after every installed reload (see `onReload`).
    private let reloadObservers = Mutex<[@Sendable () -> Void]>([])

    /// Loads the files now; throws (naming the file) when they are missing, unreadable or do not match, so a member
    /// never starts serving with a broken identity.
    public init(files: TLSFileSet, options: TLSContextOptions, sink: TLSEventSink) throws {
        self.files = files
        self.options = options
        self.sink = sink
        let stamp = FileStamp(files.watched)
        let material = try LoadedTLSMaterial.load(files)
        current = Mutex(try Self.build(material, options: options, stamp: stamp))
    }

    // MARK: TLSContextSource

    public func currentContext() -> NIOSSLContext? {
        current.withLock { $0.server }
    }

    public var generation: Int { reloadCount }

    public func makeHandler(context: NIOSSLContext) -> NIOSSLServerHandler {
        makeServerHandler(context: context, record: ConnectionTLSRecord(), remote: nil)
    }

    public func configureConnection(channel: any Channel, context: NIOSSLContext) throws {
        let record = ConnectionTLSRecord()
        let ops = channel.pipeline.syncOperations
        try ops.addHandler(makeServerHandler(context: context, record: record, remote: channel.remoteAddress))
        try ops.addHandler(
            TLSConnectionObserver(
                record: record, sink: sink, side: options.side, minimumVersion: options.minimumVersionName))
    }

    private func makeServerHandler(context: NIOSSLContext, record: ConnectionTLSRecord, remote: SocketAddress?)
        -> NIOSSLServerHandler
    {
        guard options.clientCertAuth else { return NIOSSLServerHandler(context: context) }
        let policy = TLSVerificationPolicy(
            role: .verifyingClient, allowedCN: options.allowedCN, allowedHostname: options.allowedHostname)
        return NIOSSLServerHandler(
            context: context,
            customVerificationCallback: { [self] presented, promise in
                let (bundle, crl) = current.withLock { ($0.material.trustBundle, $0.material.crl) }
                switch TLSVerifier.verify(presented: presented, bundle: bundle, crl: crl, policy: policy) {
                case .success(let peer):
                    record.state.withLock { $0.verified = peer }
                    promise.succeed(.certificateVerified)
                case .failure(let rejection):
                    record.state.withLock { $0.rejected = true }
                    sink.handshakeFailed(rejection, side: options.side, remote: remote)
                    promise.succeed(.failed)
                }
            })
    }

    // MARK: Dialling (peer transport)

    /// A TLS handler for dialling another member: presents this side's certificate and verifies the server's chain
    /// against the current bundle and CRL, its SANs against `host`, and `--peer-cert-allowed-cn`/`-hostname`.
    public func makeClientHandler(host: String?) throws -> NIOSSLClientHandler {
        let (context, bundle, crl) = current.withLock { ($0.client, $0.material.trustBundle, $0.material.crl) }
        // `--peer-cert-allowed-cn` and `-hostname` restrict who may connect, as in etcd: they are checked when
        // accepting, not when dialling (members with different CNs must still reach each other).
        let policy = TLSVerificationPolicy(role: .verifyingServer)
        let sink = self.sink
        let side = options.side
        let verify = options.verifyDialledPeer
        let sni = host.flatMap { IPAddress($0) == nil ? $0 : nil }
        return try NIOSSLClientHandler(
            context: context, serverHostname: sni,
            customVerificationCallback: { [self] presented, promise in
                guard verify else { return promise.succeed(.certificateVerified) }
                switch TLSVerifier.verify(
                    presented: presented, bundle: bundle, crl: crl, policy: policy, expectedHost: host)
                {
                case .success:
                    promise.succeed(.certificateVerified)
                case .failure(let rejection):
                    if let host { dialRejections.withLock { $0[host] = rejection } }
                    sink.handshakeFailed(rejection, side: side + "-dial", remote: nil)
                    promise.succeed(.failed)
                }
            })
    }

    /// Why this side refused the certificate `host` served at the last dial that failed verification.
    public func lastDialRejection(host: String) -> String? {
        dialRejections.withLock { $0[host]?.message }
    }

    // MARK: Reload

    /// What is served now.
    public var material: LoadedTLSMaterial { current.withLock { $0.material } }

    /// How many times a new context has been installed since start: the generation of the material. Whatever was
    /// made from generation N (a dialled connection, a client) is stale once this is larger than N.
    public var reloadCount: Int { current.withLock { $0.reloads } }

    /// Registers `body` to run after each reload that installed new material (on the reloading thread, outside any
    /// lock): the peer transport re-establishes its links with it, so that no link outlives the certificate it
    /// was opened with.
    public func onReload(_ body: @escaping @Sendable () -> Void) {
        reloadObservers.withLock { $0.append(body) }
    }

    /// Polls the files (stat only, unless something changed) and installs a new context when their content changed.
    /// A failed load keeps serving the previous certificate and is logged; it is retried when the files change again.
    @discardableResult
    public func reloadIfChanged() -> Bool {
        let stamp = FileStamp(files.watched)
        let unchanged = current.withLock { $0.stamp == stamp || $0.failedStamp == stamp }
        if unchanged { return false }
        do {
            return try reload(stamp: stamp)
        } catch {
            current.withLock { $0.failedStamp = stamp }
            sink.logger.error(
                "cannot reload \(options.side) TLS files; still serving the previous certificate: \(error)",
                metadata: ["side": "\(options.side)"])
            return false
        }
    }

    /// Reloads now (after the managed PKI reported a change); returns whether anything changed.
    @discardableResult
    public func reload() throws -> Bool {
        try reload(stamp: FileStamp(files.watched))
    }

    private func reload(stamp: FileStamp) throws -> Bool {
        let material = try LoadedTLSMaterial.load(files)
        let previous = current.withLock { $0.material }
        if material.fingerprint == previous.fingerprint {
            current.withLock {
                $0.stamp = stamp
                $0.failedStamp = nil
            }
            return false
        }
        var built = try Self.build(material, options: options, stamp: stamp)
        current.withLock {
            built.reloads = $0.reloads + 1
            $0 = built
        }
        let leaf = material.leaf
        sink.logger.notice(
            "reloaded \(options.side) TLS material: new handshakes use the new certificate, open connections keep theirs",
            metadata: [
                "side": "\(options.side)", "subject": "\(leaf.subject)",
                "serial": "\(leaf.serialNumber.hexString)",
                "previous-serial": "\(previous.leaf.serialNumber.hexString)",
                "not-after": "\(RFC3339.string(leaf.notValidAfter))",
                "trusted-cas": "\(material.trustBundle?.certificates.count ?? 0)",
                "crl-entries": "\(material.crl?.crl.entries.count ?? 0)",
            ])
        for observer in reloadObservers.withLock({ $0 }) { observer() }
        return true
    }

    static func build(_ material: LoadedTLSMaterial, options: TLSContextOptions, stamp: FileStamp) throws -> Current {
        let chain = try material.chain.map {
            try NIOSSLCertificateSource.certificate(NIOSSLCertificate(bytes: $0.derBytes, format: .der))
        }
        let key = try NIOSSLPrivateKey(bytes: Array(material.privateKeyPEM.utf8), format: .pem)
        let roots = try material.trustBundle.map { bundle in
            try bundle.certificates.map { try NIOSSLCertificate(bytes: $0.derBytes, format: .der) }
        }

        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        server.minimumTLSVersion = options.minimumVersion
        server.maximumTLSVersion = options.maximumVersion
        if !options.cipherSuites.isEmpty { server.cipherSuiteValues = options.cipherSuites }
        server.applicationProtocols = options.applicationProtocols
        server.certificateVerification = options.clientCertAuth ? .noHostnameVerification : .none
        if let roots, !roots.isEmpty { server.trustRoots = .certificates(roots) }
        // Without a CA name list every client sends the certificate it has, so a wrong one is rejected with its
        // real reason ("signed by unknown authority …") instead of arriving as "no certificate".
        server.sendCANameList = false

        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = chain
        client.privateKey = .privateKey(key)
        client.minimumTLSVersion = options.minimumVersion
        client.maximumTLSVersion = options.maximumVersion
        if !options.cipherSuites.isEmpty { client.cipherSuiteValues = options.cipherSuites }
        client.applicationProtocols = ["h2"]
        client.certificateVerification = .noHostnameVerification  // TLSVerifier checks the host itself
        if let roots, !roots.isEmpty { client.trustRoots = .certificates(roots) }

        return Current(
            material: material, server: try NIOSSLContext(configuration: server),
            client: try NIOSSLContext(configuration: client), stamp: stamp, failedStamp: nil, reloads: 0)
    }
}
