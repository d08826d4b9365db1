import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GoSyntax
import Logging
import NIOCore
import NIOPosix
import Node
import RPCTransport
import ServiceLifecycle
import Storage
import Synchronization

/// A running Quorum member: the node plus its client listeners, as one swift-service-lifecycle `Service`.
public final class QuorumServer: Service, @unchecked Sendable {
    public let config: ServerConfig
    /// Made on first use rather than by `init`, so that opening the ports (`openListeners`) does not wait for the
    /// metric registry.
    public var metrics: ServerMetrics {
        metricsStorage.withLock { stored in
            if let stored { return stored }
            let made = ServerMetrics(extensive: config.extensiveMetrics)
            stored = made
            return made
        }
    }
    private let metricsStorage: Mutex<ServerMetrics?>
    let logger: Logger
    /// Certificates, verification and reload for the client and peer sides; set once `run` has prepared them (the
    /// peer transport takes `tlsRuntime.peer` from here).
    public private(set) var tlsRuntime: TLSRuntime?

    /// The Raft loop and every peer connection share one event loop (see `EventLoopRaftLoop`). Made when first
    /// needed, so that opening the ports (`openListeners`) starts no thread.
    var raftGroup: MultiThreadedEventLoopGroup {
        raftGroupStorage.withLock { group in
            if let group { return group }
            let made = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            group = made
            return made
        }
    }
    private let raftGroupStorage = Mutex<MultiThreadedEventLoopGroup?>(nil)
    private let listeners = Mutex<Listeners?>(nil)

    /// The listening transports: client URLs, peer URLs and `--listen-metrics-urls`.
    struct Listeners {
        var client: [RPCServerTransport]
        var peer: [RPCServerTransport]
        var metrics: [RPCServerTransport]
    }

    public init(config: ServerConfig, logger: Logger, metrics: ServerMetrics? = nil) {
        self.config = config
        self.logger = logger
        metricsStorage = Mutex(metrics)
    }

    /// Opens the client and peer listeners, as etcd does before anything else: a client or peer connecting
    /// while the member starts waits in the backlog instead of being refused (gRPC clients then back off for a
    /// whole second), and a port that is taken stops start-up before the data directory is touched. Connections
    /// are accepted once `run` serves. Synchronous (no event loop or task is involved): the executable calls it
    /// right after reading its flags, so the ports are open within the process's first milliseconds. Called by
    /// `run` if not earlier.
    public func openListeners() throws {
        _ = try makeListeners()
    }

    private func makeListeners() throws -> Listeners {
        if let open = listeners.withLock({ $0 }) { return open }
        // etcd accepts gRPC messages up to its request limit plus room for the envelope.
        let maxBody = config.node.maxRequestBytes + 512 * 1024
        let client = config.listenClientURLs.map { url in
            RPCServerTransport(
                options: .init(
                    host: url.host, port: url.port, unixPath: url.unixPath, maxMessageBytes: maxBody,
                    socketOptions: config.socketOptions, keepalive: config.keepalive,
                    maxConcurrentStreams: config.maxConcurrentStreams, overloaded: EtcdError.tooManyRequests.rpcStatus))
        }
        // Peer connections live on the Raft loop's event loop; snapshots arrive in chunks of 256 KiB.
        let peer = config.listenPeerURLs.map { url in
            RPCServerTransport(
                options: .init(
                    host: url.host, port: url.port, unixPath: url.unixPath, maxMessageBytes: 8 << 20,
                    socketOptions: config.socketOptions))
        }
        // `--listen-metrics-urls`: HTTP only (/metrics and the health endpoints), http or https.
        let metrics = config.listenMetricsURLs.map { url in
            RPCServerTransport(
                options: .init(
                    host: url.host, port: url.port, unixPath: url.unixPath, maxMessageBytes: 64 * 1024,
                    socketOptions: config.socketOptions))
        }
        for (url, transport) in zip(
            config.listenClientURLs + config.listenPeerURLs + config.listenMetricsURLs, client + peer + metrics)
        {
            do {
                try transport.open()
            } catch let error as IOError where error.errnoCode == EADDRINUSE {
                if let path = url.unixPath { throw ConfigError("listen unix \(path): bind: address already in use") }
                throw ConfigError("listen tcp \(url.host):\(url.port): bind: address already in use")
            } catch is SocketAddressError.UnknownHost {
                throw ConfigError("listen tcp: lookup \(url.host): no such host")
            } catch {
                throw ConfigError("listen tcp \(url.host):\(url.port): \(error)")
            }
        }
        let made = Listeners(client: client, peer: peer, metrics: metrics)
        listeners.withLock { $0 = made }
        return made
    }

    /// The listeners, opened if `openListeners` was not called, adopted by their event loops.
    private func listen() async throws -> Listeners {
        let made = try makeListeners()
        for transport in made.client + made.metrics {
            try await transport.bind(on: MultiThreadedEventLoopGroup.singleton)
        }
        for transport in made.peer { try await transport.bind(on: raftGroup) }
        return made
    }

    public func run() async throws {
        let listening = try await listen()
        let clientTransports = listening.client
        let peerTransports = listening.peer
        let metricsTransports = listening.metrics
        defer { raftGroup.shutdownGracefully { _ in } }
        let raftLoop = EventLoopRaftLoop(eventLoop: raftGroup.next())
        raftLoop.execute { Thread.current.name = "quorum-raft" }
        // TLS before the peer transport dials and any listener accepts: expired or stale leaves are renewed here,
        // so the first handshake already sees a valid certificate; an expired CA stops start-up with the file, the
        // date and the fix.
        let tls = try TLSRuntime.prepare(config: config, logger: logger, metrics: metrics)
        tlsRuntime = tls
        // Renewal runs from now on, whatever else happens: a member that is still joining, catching up through a
        // snapshot or looking for a leader must not let its certificates expire meanwhile, or it never gets in.
        let renewal = Task { await tls.run() }
        defer { renewal.cancel() }
        let peers = PeerTransport(
            logger: logger, security: tls.peer ?? PlaintextPeers(), metrics: metrics, eventLoopGroup: raftGroup)
        var nodeConfig = config.node
        if let imported = try EtcdDataDirImport.importIfNeeded(nodeConfig) {
            logger.notice(
                "converted etcd's data directory",
                metadata: [
                    "data-dir": "\(nodeConfig.dataDir)", "revision": "\(imported.revision)",
                    "members": "\(imported.members)", "etcd-files-kept-in": "\(imported.etcdFiles)",
                ])
        }
        if nodeConfig.initialClusterState == .existing && !WriteAheadLog.exists(in: nodeConfig.walDirectory) {
            nodeConfig.join = try await ClusterJoin.discover(
                config: nodeConfig, security: peers.security, logger: logger)
        }
        let (removed, removedSignal) = AsyncStream<Void>.makeStream()
        let node = try MemberNode.open(
            config: nodeConfig, transport: peers, logger: logger, observer: metrics,
            onFatal: { message in
                // A member that cannot write its log must not keep answering: exit like etcd's fatal log.
                FileHandle.standardError.write(Data("quorum: fatal: \(message)\n".utf8))
                exit(1)
            },
            onRemoved: { removedSignal.yield() }, loop: raftLoop)
        peers.attach(node)
        node.start()
        defer {
            peers.stop()
            node.stop()
        }
        let handler = EtcdHandler(node: node, peers: peers)
        let metrics = self.metrics
        let backups = try config.backup.map { settings in
            do {
                return try ScheduledBackups(
                    settings: settings, node: node, name: config.node.name, logger: logger, metrics: metrics)
            } catch {
                throw ConfigError("--backup-dir \(settings.destination): \(error)")
            }
        }
        let router = EtcdHTTPRouter(
            handler: handler, metrics: { metrics.render(node: node, backup: backups?.status) },
            extraChecks: {
                let failures = tls.healthFailures()
                return [("tls_certificates", failures.isEmpty ? nil : failures.joined(separator: "; "))]
            },
            healthWarnings: {
                tls.healthWarnings() + peers.certificateRefusals() + (backups?.healthProblem().map { [$0] } ?? [])
            }, gatewayStreams: GatewayStreams.forLimit(config.maxConcurrentStreams),
            healthChecked: { metrics.healthChecked(healthy: $0) })
        // KV, Lease and Watch are served in place by the transport (EtcdFastRoutes); these run on grpc-swift.
        let services: [any RegistrableRPCService] = [
            ClusterService(handler: handler), MaintenanceService(handler: handler, metrics: metrics),
            AuthService(handler: handler),
            ElectionService(handler: handler), LockService(handler: handler),
        ]
        let fastRoutes = EtcdFastRoutes.make(handler: handler, metrics: metrics)
        // Client-certificate names identify users only where client certificates are verified.
        let identities = (tls.client?.options.clientCertAuth ?? false) ? tls.identities : nil
        let clientRouter: any HTTPRouting = config.enablePprof ? PprofEnabledRouter(router: router) : router
        if config.enablePprof {
            logger.info("pprof is enabled", metadata: ["path": "\(PprofRouter.prefix)/"])
        }
        for (url, transport) in zip(config.listenClientURLs, clientTransports) {
            transport.route(
                fastRoutes, http: clientRouter, tls: url.isTLS ? tls.client : nil,
                authentication: ClientAuthentication(auth: node.auth, identities: url.isTLS ? identities : nil),
                traffic: metrics.clientTraffic)
        }
        for (url, transport) in zip(config.listenMetricsURLs, metricsTransports) {
            transport.route([:], http: MetricsRouter(router: router), tls: url.isTLS ? tls.client : nil)
            logger.info("serving metrics", metadata: ["address": "\(url)"])
        }
        // The peer port: quorumpb.Raft in place, quorumpb.Peer on grpc-swift, and the same HTTP endpoints as the
        // client port (handy for probing a member from its peers' network).
        let peerRoutes = PeerFastRoutes.make(
            node: node, transport: peers, logger: logger, metrics: metrics, peerMetrics: peers.metrics)
        for (url, transport) in zip(config.listenPeerURLs, peerTransports) {
            transport.route(peerRoutes, http: router, tls: url.isTLS ? tls.peer : nil)
        }
        // After a renewal or CA change, members connected to this one are asked to reconnect, so that their links
        // handshake with the certificate served now (they dial the replacement before they let the old link go).
        if let peerTLS = tls.peer {
            peerTLS.onReload { [peerTransports] in
                for transport in peerTransports {
                    transport.retireConnections(olderThan: peerTLS.generation, grace: .seconds(30))
                }
            }
        }
        let peerService = PeerService(node: node, handler: handler, logger: logger)
        let grpcServers =
            clientTransports.map {
                GRPCServer(
                    transport: $0, services: services,
                    interceptors: [
                        RPCMetricsInterceptor(metrics: metrics),
                        AuthInterceptor(auth: node.auth, identities: identities),
                    ])
            } + peerTransports.map { GRPCServer(transport: $0, services: [peerService]) }
            + metricsTransports.map { GRPCServer(transport: $0, services: []) }
        try await withGracefulShutdownHandler {
            let stopping = ManagedAtomic()
            let finished = ManagedAtomic()
            try await withThrowingDiscardingTaskGroup { group in
                for server in grpcServers {
                    group.addTask {
                        do {
                            try await server.serve()
                        } catch  where stopping.isSet {
                            // Cut off while stopping (long-lived watch and peer streams): expected.
                        }
                        finished.increment()
                    }
                }
                if config.initialCorruptCheck {
                    try await initialCorruptionCheck(
                        CorruptionCheck(node: node, handler: handler, peers: peers, logger: logger))
                }
                // A member that never gets a leader (a minority, a wrong token) keeps trying to publish itself
                // until it is stopped.
                let announced: Void? = try? await cancelWhenGracefulShutdown { [self] in
                    try await announce(node: node, handler: handler, urls: config.listenClientURLs)
                }
                // Background duties stop with the member; the listeners end through graceful shutdown.
                let corruption = CorruptionCheck(node: node, handler: handler, peers: peers, logger: logger)
                let duties: [Task<Void, Never>] = [
                    Task { [self] in try? await runAutoCompaction(handler: handler) },
                    Task { [config] in await corruption.runPeriodically(every: config.corruptCheckInterval) },
                    Task { await backups?.run() },
                    Task { [logger] in await handler.monitorClusterVersion(logger: logger) },
                    Task { [config] in
                        // etcd's lease checkpoints: the leader records remaining TTLs every interval.
                        let interval = config.node.leaseCheckpointNanoseconds
                        guard interval > 0 else { return }
                        while !Task.isCancelled {
                            try? await Task.sleep(for: .nanoseconds(interval))
                            node.checkpointLeases()
                        }
                    },
                ]
                defer { for duty in duties { duty.cancel() } }
                // Serve until asked to stop, or until the cluster removes this member.
                if announced != nil {
                    await withTaskGroup(of: Void.self) { race in
                        race.addTask { try? await gracefulShutdown() }
                        race.addTask {
                            var signals = removed.makeAsyncIterator()
                            _ = await signals.next()
                        }
                        await race.next()
                        race.cancelAll()
                    }
                }
                // Calls that wait for maintenance (a Defragment, a physical Compact) are answered now, not when it ends.
                node.releaseMaintenanceCallers()
                await node.transferLeadershipBeforeStopping()
                stopping.set()
                peers.stop()
                for server in grpcServers { server.beginGracefulShutdown() }
                // Unary requests finish quickly; watches, keep-alives and peer streams never end on their own,
                // so after a short grace period the listeners are cut, as etcd closes its connections.
                for _ in 0..<20 where finished.value < grpcServers.count {
                    try? await Task.sleep(for: .milliseconds(100))
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            for server in grpcServers { server.beginGracefulShutdown() }
        }
        logger.info("stopped serving", metadata: ["name": "\(config.node.name)"])
    }

    /// A counter and a flag shared between the serving tasks and the shutdown sequence.
    final class ManagedAtomic: Sendable {
        private let storage = Atomic<Int>(0)
        var value: Int { storage.load(ordering: .sequentiallyConsistent) }
        var isSet: Bool { value != 0 }
        func set() { storage.store(1, ordering: .sequentiallyConsistent) }
        func increment() { storage.add(1, ordering: .sequentiallyConsistent) }
    }

    /// etcd's --experimental-initial-corrupt-check: a member whose data differs from its peers' must not serve.
    private func initialCorruptionCheck(_ check: CorruptionCheck) async throws {
        for case .diverged(let member, let local, let remote, let revision) in await check.compare() {
            throw ConfigError(
                "found data inconsistency with peer \(Identity.hex(member)) at revision \(revision) "
                    + "(local hash \(local), peer hash \(remote)): refusing to serve")
        }
        logger.info(
            "initial corruption checking passed; no corruption",
            metadata: ["local-member-id": "\(Identity.hex(check.node.memberID))"])
    }

    /// Publishes the member through the log, then prints etcd's milestone lines, in etcd's order, only once
    /// the member really serves: deployment tooling waits for them.
    private func announce(node: MemberNode, handler: EtcdHandler, urls: [ListenURL]) async throws {
        while !Task.isCancelled {
            if node.status.failure != nil { throw ConfigError("member failed: \(node.status.failure!)") }
            // Removed while it was down, a member learns it from its peers before it ever publishes itself.
            if node.isRemoved { throw ConfigError("the member has been permanently removed from the cluster") }
            if case .success = await node.publishAttributes() { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        // A leader that knows every member's version decides the cluster version before it says it serves
        // (a lone member always does), rather than at the monitor's first pass.
        if node.versions.values.clusterVersion == nil { await handler.decideClusterVersion(logger: logger) }
        logger.info(
            "published local member to cluster through raft",
            metadata: [
                "local-member-id": "\(Identity.hex(node.memberID))",
                "local-member-attributes": "{Name:\(config.node.name) ClientURLs:\(config.node.advertiseClientURLs)}",
                "cluster-id": "\(Identity.hex(node.clusterID))",
            ])
        logger.info("ready to serve client requests")
        let decided = node.versions.values.clusterVersion ?? Version.etcdCluster
        let version = String(decided.split(separator: ".").prefix(2).joined(separator: "."))
        logger.info("enabled capabilities for version", metadata: ["cluster-version": "\(version)"])
        for url in urls where !url.isTLS {
            logger.info(
                "serving client traffic insecurely; this is strongly discouraged!",
                metadata: ["address": "\(url.host):\(url.port)"])
        }
    }

    /// etcd's `--auto-compaction-mode`: "periodic" keeps the history of the last retention period (hours when
    /// the value has no unit), "revision" keeps the last N revisions, checking every five minutes.
    private func runAutoCompaction(handler: EtcdHandler) async throws {
        let retention = config.autoCompactionRetention.trimmingCharacters(in: .whitespaces)
        guard !retention.isEmpty, retention != "0" else { return }
        let node = handler.node
        if config.autoCompactionMode == "revision" {
            guard let keep = Int64(retention), keep > 0 else { return }
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(300))
                let target = node.store.revisions.current - keep
                if target > node.store.revisions.compacted {
                    var request = Etcdserverpb_CompactionRequest()
                    request.revision = target
                    _ = try? await handler.compact(request, .member)
                    logger.info("completed revision-based compaction", metadata: ["revision": "\(target)"])
                }
            }
            return
        }
        guard let period = parseRetention(retention), period > .zero else { return }
        let interval = min(period, .seconds(3600)) / 10
        var samples: [(ContinuousClock.Instant, Int64)] = []
        let clock = ContinuousClock()
        while !Task.isCancelled {
            samples.append((clock.now, node.store.revisions.current))
            if let oldest = samples.first, clock.now - oldest.0 >= period {
                let target = oldest.1
                samples.removeFirst()
                if target > node.store.revisions.compacted && target <= node.store.revisions.current {
                    var request = Etcdserverpb_CompactionRequest()
                    request.revision = target
                    _ = try? await handler.compact(request, .member)
                    logger.info("completed periodic compaction", metadata: ["revision": "\(target)"])
                }
            }
            try await Task.sleep(for: interval)
        }
    }

    private func parseRetention(_ text: String) -> Duration? {
        if let hours = Double(text) { return .milliseconds(Int64(hours * 3_600_000)) }
        return GoDuration.parse(text)
    }
}
