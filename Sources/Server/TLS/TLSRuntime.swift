import Foundation
import Logging
import PKI
import ReloadingTLS
import Synchronization
import X509

/// Everything TLS of a running member: the client and peer `ReloadingTLSContext`s, the managed PKI that issues and
/// renews their certificates, the watcher that picks up externally replaced files, and what health and metrics say
/// about all of it.
///
/// `prepare` runs before any listener opens: it creates or imports CAs, renews expired or stale leaves and loads the
/// contexts, so a member never serves an expired certificate it could have renewed, and refuses to start (with the
/// file, the date and the fix) when it cannot, e.g. because a CA expired. `run` then keeps things current. The peer
/// transport (cluster issue) uses `peer` unchanged: `configureConnection` for accepted peer connections,
/// `makeClientHandler(host:)` for dialling.
public final class TLSRuntime: Sendable {
    public let settings: TLSSettings
    public let clientMode: TLSMode
    public let peerMode: TLSMode
    /// Serves `https` client URLs; nil when the client side is plaintext.
    public let client: ReloadingTLSContext?
    /// Serves and dials peer connections; nil when the peer side is plaintext.
    public let peer: ReloadingTLSContext?
    public let sink: TLSEventSink
    /// Verified client-certificate common names by remote address (the etcd user for client-cert auth).
    public var identities: ClientIdentityRegistry { sink.identities }

    let pki: ManagedPKI?
    let metrics: ServerMetrics?
    let logger: Logger

    struct PKIState: Sendable {
        var report: PKIEnsureReport?
        var nextCheck: Date
        /// Usages whose last renewal failed or was blocked, with the error.
        var failures: [String: String] = [:]
        /// Set when `ensure` itself threw (e.g. a CA expired while running).
        var ensureError: String?
    }

    private let pkiState: Mutex<PKIState>

    private init(
        settings: TLSSettings, clientMode: TLSMode, peerMode: TLSMode, client: ReloadingTLSContext?,
        peer: ReloadingTLSContext?, sink: TLSEventSink, pki: ManagedPKI?, report: PKIEnsureReport?,
        metrics: ServerMetrics?, logger: Logger
    ) {
        self.settings = settings
        self.clientMode = clientMode
        self.peerMode = peerMode
        self.client = client
        self.peer = peer
        self.sink = sink
        self.pki = pki
        self.metrics = metrics
        self.logger = logger
        pkiState = Mutex(PKIState(report: report, nextCheck: report?.nextCheck ?? .distantFuture))
    }

    /// The managed PKI configuration of a member: names from its advertise URLs, hostname and loopback.
    public static func pkiConfiguration(_ config: ServerConfig) -> ManagedPKIConfiguration {
        let node = config.node
        let tls = config.tls
        let hostname = ProcessInfo.processInfo.hostName
        return ManagedPKIConfiguration(
            dataDirectory: URL(fileURLWithPath: node.dataDir),
            memberName: node.name,
            clientNames: .member(name: node.name, advertiseURLs: node.advertiseClientURLs, hostname: hostname),
            peerNames: .member(name: node.name, advertiseURLs: node.advertisePeerURLs, hostname: hostname),
            leafLifetime: tls.leafValidity,
            keyAlgorithm: tls.keyAlgorithm,
            caKeyAlgorithm: tls.keyAlgorithm,
            createCAsIfMissing: tls.caSourceDirectory == nil,
            caSourceDirectory: tls.caSourceDirectory.map { URL(fileURLWithPath: $0) },
            renewalPolicy: RenewalPolicy(renewalFraction: tls.renewalFraction))
    }

    /// Builds the TLS state of a member before it serves. Throws a `ConfigError` whose text names the file, the
    /// date and the command to fix it when certificates cannot be made valid.
    public static func prepare(
        config: ServerConfig, logger: Logger, metrics: ServerMetrics?, now: Date = Date()
    ) throws -> TLSRuntime {
        let tls = config.tls
        // https metrics URLs are served with the client side's TLS material, as etcd's are.
        let clientMode = tls.clientMode(
            httpsURLs: (config.listenClientURLs + config.listenMetricsURLs).contains(where: \.isTLS))
        let peerHTTPS =
            config.listenPeerURLs.contains(where: \.isTLS)
            || config.node.advertisePeerURLs.contains { $0.lowercased().hasPrefix("https://") }
        let peerMode = tls.peerMode(httpsURLs: peerHTTPS)
        var countFailure: (@Sendable (String) -> Void)?
        if let metrics { countFailure = { reason in metrics.tlsHandshakeFailed(reason: reason) } }
        let sink = TLSEventSink(logger: logger, countFailure: countFailure)
        let dataDirectory = URL(fileURLWithPath: config.node.dataDir)

        var pki: ManagedPKI?
        var report: PKIEnsureReport?
        if clientMode == .managed || peerMode == .managed {
            var rng = SystemRandomNumberGenerator()
            let managed = ManagedPKI(
                configuration: pkiConfiguration(config), using: &rng, logger: Logger(label: "quorum.pki"))
            do {
                report = try managed.ensure(now: now)
            } catch {
                throw ConfigError("cannot prepare the managed PKI under \(managed.layout.root.path): \(error)")
            }
            pki = managed
        }
        let layout = PKILayout(dataDirectory: dataDirectory)

        func context(_ side: String, mode: TLSMode, settings: TLSSideSettings, kind: CAKind) throws
            -> ReloadingTLSContext?
        {
            var options = TLSContextOptions(
                side: side, clientCertAuth: settings.clientCertAuth, allowedCN: settings.allowedCN,
                allowedHostname: settings.allowedHostname, minimumVersion: tls.minimumVersion,
                maximumVersion: tls.maximumVersion, cipherSuites: tls.cipherSuites,
                applicationProtocols: side == "peer" ? ["h2"] : ["h2", "http/1.1"])
            let files: TLSFileSet
            switch mode {
            case .none:
                return nil
            case .files:
                files = TLSFileSet(
                    certificate: URL(fileURLWithPath: settings.certFile!), key: URL(fileURLWithPath: settings.keyFile!),
                    trustBundle: settings.trustedCAFile.map { URL(fileURLWithPath: $0) },
                    crl: settings.crlFile.map { URL(fileURLWithPath: $0) })
            case .managed:
                if settings.trustedCAFile != nil {
                    logger.warning(
                        "ignoring the \(side) trusted CA file: the managed PKI verifies against \(layout.trustBundle(kind).path)"
                    )
                }
                let crl =
                    settings.crlFile.map { URL(fileURLWithPath: $0) } ?? (kind == .clients ? layout.clientsCRL : nil)
                files = TLSFileSet(
                    certificate: layout.certificate(for: kind == .clients ? .clientServer : .peer),
                    key: layout.key(for: kind == .clients ? .clientServer : .peer),
                    trustBundle: layout.trustBundle(kind), crl: crl, layout: layout)
                // Peers always authenticate each other in the managed PKI: a leaked client certificate must never
                // be able to join the Raft group, which the separate peers CA guarantees only if it is checked.
                if kind == .peers { options.clientCertAuth = true }
                // Clients too, by default: the member holds the clients CA, so requiring its certificates costs
                // nothing (pki/clients/admin.crt, CN root, serves a local etcdctl; `quorumctl certs issue-client`
                // makes more), and a member reachable on the network is never open to anyone who finds the port.
                if kind == .clients {
                    if tls.clientCertAuthOptOut {
                        logger.warning(
                            "managed PKI with --client-cert-auth=false: any client that reaches the port may connect without a certificate; with auth disabled it acts as root"
                        )
                    } else {
                        options.clientCertAuth = true
                    }
                }
            case .autoTLS:
                let names = SubjectNames.member(
                    name: config.node.name,
                    advertiseURLs: kind == .clients ? config.node.advertiseClientURLs : config.node.advertisePeerURLs,
                    hostname: ProcessInfo.processInfo.hostName)
                var auto = try AutoTLS.ensure(
                    directory: dataDirectory.appendingPathComponent("fixtures/\(kind == .clients ? "client" : "peer")"),
                    names: names, validityYears: tls.selfSignedCertValidityYears, keyAlgorithm: tls.keyAlgorithm,
                    now: now)
                auto.trustBundle = settings.trustedCAFile.map { URL(fileURLWithPath: $0) }
                if auto.trustBundle == nil {
                    // etcd's auto-TLS: every member has its own self-signed certificate, so there is no CA to verify
                    // anyone against; links are encrypted, not authenticated, as in etcd.
                    if options.clientCertAuth || kind == .peers {
                        logger.warning(
                            """
                            \(side) auto-tls: self-signed certificates are not verified (encryption without \
                            authentication); use https URLs without certificate files (managed PKI) to have members \
                            authenticate each other
                            """)
                    }
                    options.clientCertAuth = false
                    options.verifyDialledPeer = false
                }
                files = auto
            }
            do {
                return try ReloadingTLSContext(files: files, options: options, sink: sink)
            } catch {
                throw ConfigError("cannot load the \(side) TLS certificate: \(error)")
            }
        }

        let runtime = TLSRuntime(
            settings: tls, clientMode: clientMode, peerMode: peerMode,
            client: try context("client", mode: clientMode, settings: tls.client, kind: .clients),
            peer: try context("peer", mode: peerMode, settings: tls.peer, kind: .peers),
            sink: sink, pki: pki, report: report, metrics: metrics, logger: logger)
        if let report { runtime.record(report) }
        runtime.refreshExpiryMetrics()
        for (side, context) in [("client", runtime.client), ("peer", runtime.peer)] {
            guard let context else { continue }
            let leaf = context.material.leaf
            logger.info(
                "\(side) TLS ready",
                metadata: [
                    "mode": "\(side == "client" ? clientMode : peerMode)", "cert": "\(context.files.certificate.path)",
                    "subject": "\(leaf.subject)", "serial": "\(leaf.serialNumber.hexString)",
                    "not-after": "\(RFC3339.string(leaf.notValidAfter))",
                    "client-cert-auth": "\(context.options.clientCertAuth)",
                ])
            if leaf.notValidAfter < now {
                logger.error(
                    """
                    \(side) certificate \(context.files.certificate.path) expired at \
                    \(RFC3339.string(leaf.notValidAfter)); clients will refuse it until the file is replaced
                    """)
            }
        }
        return runtime
    }

    // MARK: Running

    /// Polls externally managed files every `pollInterval` and runs the managed PKI's check at each `nextCheck`,
    /// reloading contexts immediately when it renewed something. Returns when the task is cancelled.
    public func run() async {
        let contexts = [client, peer].compactMap { $0 }
        guard !contexts.isEmpty else { return }
        while !Task.isCancelled {
            let now = Date()
            let due = pkiState.withLock { $0.nextCheck }
            if pki != nil, now >= due {
                checkPKI(now: now)
            }
            for context in contexts where context.reloadIfChanged() {
                metrics?.tlsReloaded(side: context.options.side)
                // Files changed under the managed PKI (quorumctl certs renew / rotate-ca / revoke): re-check now so
                // that metrics and health describe what is served, not what the last scheduled check saw.
                if pki != nil { pkiState.withLock { $0.nextCheck = Date() } }
                refreshExpiryMetrics()
            }
            let untilDue = pkiState.withLock { $0.nextCheck }.timeIntervalSince(Date())
            let poll =
                Double(settings.pollInterval.components.seconds)
                + Double(settings.pollInterval.components.attoseconds) / 1e18
            let pause = max(0.05, min(poll, untilDue))
            try? await Task.sleep(for: .milliseconds(Int64(pause * 1000)))
        }
    }

    /// One managed-PKI pass: renew what is due, count it, and swap contexts at once if anything changed.
    func checkPKI(now: Date) {
        guard let pki else { return }
        do {
            let report = try pki.ensure(now: now)
            record(report)
            if report.tlsMaterialChanged {
                for context in [client, peer].compactMap({ $0 }) {
                    do {
                        if try context.reload() { metrics?.tlsReloaded(side: context.options.side) }
                    } catch {
                        logger.error("cannot load renewed \(context.options.side) certificate: \(error)")
                    }
                }
            }
            refreshExpiryMetrics()
        } catch {
            let retry = now + max(pki.configuration.renewalPolicy.minimumCheckInterval, 5)
            pkiState.withLock {
                $0.ensureError = "\(error)"
                $0.nextCheck = retry
            }
            metrics?.pkiRenewalFailed(usage: "all")
            logger.error("managed PKI check failed; still serving the current certificates: \(error)")
        }
    }

    private func record(_ report: PKIEnsureReport) {
        pkiState.withLock { state in
            state.report = report
            state.nextCheck = report.nextCheck
            state.ensureError = nil
            for event in report.events {
                guard let usage = event.usage?.rawValue else { continue }
                switch event {
                case .issued:
                    state.failures.removeValue(forKey: usage)
                case .renewalFailed(_, _, let error):
                    state.failures[usage] = error
                case .renewalBlocked(_, _, let reasons):
                    state.failures[usage] =
                        "its CA key is not in this data directory (needs renewal: "
                        + reasons.map(\.description).joined(separator: "; ") + ")"
                default:
                    break
                }
            }
        }
        for event in report.events {
            guard let usage = event.usage?.rawValue else { continue }
            switch event {
            case .issued: metrics?.pkiRenewed(usage: usage)
            case .renewalFailed, .renewalBlocked: metrics?.pkiRenewalFailed(usage: usage)
            default: break
            }
        }
    }

    /// Every certificate in use, for the expiry gauges and health: the managed PKI's own list when there is one
    /// (it includes the CAs and the admin certificate), plus what each file-based context serves and trusts.
    public func certificatesInUse() -> [CertificateStatus] {
        var statuses = pkiState.withLock { $0.report?.certificates } ?? []
        let modes = [(client, clientMode, CAKind.clients), (peer, peerMode, CAKind.peers)]
        for (context, mode, kind) in modes {
            guard let context, mode != .managed else { continue }
            let material = context.material
            statuses.append(
                CertificateStatus(
                    usage: kind == .clients ? .clientServer : .peer, path: context.files.certificate.path,
                    certificate: material.leaf, managed: false))
            for ca in material.trustBundle?.certificates ?? [] {
                statuses.append(
                    CertificateStatus(
                        usage: kind.usage, path: context.files.trustBundle?.path ?? "", certificate: ca, managed: false)
                )
            }
        }
        return statuses
    }

    func refreshExpiryMetrics() {
        guard let metrics else { return }
        metrics.setCertificateExpiries(
            certificatesInUse().map {
                (usage: $0.usage.rawValue, subject: $0.subject, serial: $0.serialHex, notAfter: $0.notAfterUnixSeconds)
            })
    }

    // MARK: Health

    /// How long before expiry a certificate nobody can renew is worth a warning: a third of its lifetime (when the
    /// managed PKI would have renewed it), at most a week for leaves; 90 days for CAs (time to run a rotation).
    static func warningWindow(_ status: CertificateStatus) -> TimeInterval {
        if status.usage.isCertificateAuthority { return 90 * IssuanceDefaults.day }
        return min(status.notAfter.timeIntervalSince(status.notBefore) / 3, 7 * IssuanceDefaults.day)
    }

    /// Conditions that break clients now: a served or trusted certificate that is expired or not yet valid. These
    /// fail `/health` and the `tls_certificates` check of `/readyz`, since new TLS connections fail anyway.
    public func healthFailures(now: Date = Date()) -> [String] {
        var failures: [String] = []
        // A CA that is merely listed in a bundle breaks nothing by expiring; only what is served or signs counts.
        // The admin certificate is not served: its expiry breaks local etcdctl, not the member.
        for status in certificatesInUse()
        where status.usage != .clientAdmin && !(status.usage.isCertificateAuthority && !status.managed) {
            if now > status.notAfter {
                failures.append(
                    "\(status.usage.rawValue) certificate \(status.path) (serial \(status.serialHex)) expired at "
                        + RFC3339.string(status.notAfter) + renewalNote(status))
            } else if now < status.notBefore {
                failures.append(
                    "\(status.usage.rawValue) certificate \(status.path) is not valid until "
                        + "\(RFC3339.string(status.notBefore)); check clocks")
            }
        }
        return failures
    }

    /// Conditions that will break clients unless someone acts: a certificate inside its warning window that cannot be
    /// renewed (externally managed, CA key missing, or renewal failing), a CA near expiry, a failing PKI check.
    /// These go into `/health`'s `reason` (health stays true: the member still serves, and failing liveness or
    /// readiness days ahead would turn a warning into the very outage it announces).
    public func healthWarnings(now: Date = Date()) -> [String] {
        var warnings: [String] = []
        if let error = pkiState.withLock({ $0.ensureError }) {
            warnings.append("managed PKI check failing: \(error)")
        }
        for status in certificatesInUse() where now <= status.notAfter {
            let remaining = status.notAfter.timeIntervalSince(now)
            guard remaining < Self.warningWindow(status) else { continue }
            if status.usage.isCertificateAuthority {
                warnings.append(
                    "\(status.usage.rawValue) certificate \(status.subject) expires at \(RFC3339.string(status.notAfter)) "
                        + "(in \(ResidualTime.format(remaining))); rotate it: quorumctl certs rotate-ca")
            } else if let why = cannotRenew(status) {
                warnings.append(
                    "\(status.usage.rawValue) certificate \(status.path) expires at \(RFC3339.string(status.notAfter)) "
                        + "(in \(ResidualTime.format(remaining))) and cannot be renewed: \(why)")
            }
        }
        return warnings
    }

    private func cannotRenew(_ status: CertificateStatus) -> String? {
        if !status.managed { return "it is not issued by a CA whose key this member holds (externally managed)" }
        return pkiState.withLock { $0.failures[status.usage.rawValue] }
    }

    private func renewalNote(_ status: CertificateStatus) -> String {
        cannotRenew(status).map { " and cannot be renewed: \($0)" } ?? ""
    }
}
