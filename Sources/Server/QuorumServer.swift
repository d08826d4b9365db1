import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOPosix
import Node
import ServiceLifecycle

/// A running Quorum member: the node plus its client listeners, as one swift-service-lifecycle `Service`.
public final class QuorumServer: Service, @unchecked Sendable {
    public let config: ServerConfig
    public let metrics: ServerMetrics
    let logger: Logger

    public init(config: ServerConfig, logger: Logger, metrics: ServerMetrics = ServerMetrics()) {
        self.config = config
        self.logger = logger
        self.metrics = metrics
    }

    public func run() async throws {
        let node = try MemberNode.open(
            config: config.node, logger: logger, observer: metrics,
            onFatal: { message in
                // A member that cannot write its log must not keep answering: exit like etcd's fatal log.
                FileHandle.standardError.write(Data("quorum: fatal: \(message)\n".utf8))
                exit(1)
            })
        node.start()
        defer { node.stop() }
        let handler = EtcdHandler(node: node)
        let services: [any RegistrableRPCService] = [
            KVService(handler: handler), WatchService(handler: handler), LeaseService(handler: handler),
            ClusterService(handler: handler), MaintenanceService(handler: handler), AuthService(handler: handler),
            ElectionService(handler: handler), LockService(handler: handler),
        ]
        let metrics = self.metrics
        let router = EtcdHTTPRouter(
            handler: handler, metrics: { metrics.render(node: node) }, extraChecks: { [] })
        let maxBody = config.node.maxRequestBytes + 512 * 1024

        var transportConfig = HTTP2ServerTransport.Custom<ClientListenerFactory>.Config.defaults
        transportConfig.rpc.maxRequestPayloadSize = maxBody
        transportConfig.connection.keepalive.clientBehavior = .init(
            minPingIntervalWithoutCalls: .seconds(5), allowWithoutCalls: true)
        transportConfig.http2.maxConcurrentStreams = Int(Int32.max)

        var servers: [GRPCServer<HTTP2ServerTransport.Custom<ClientListenerFactory>>] = []
        var transports: [HTTP2ServerTransport.Custom<ClientListenerFactory>] = []
        for url in config.listenClientURLs {
            if url.isTLS {
                throw ConfigError("https client URL \(url) needs TLS, which arrives with the certificate feature")
            }
            let factory = ClientListenerFactory(
                host: url.host, port: url.port, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, tls: nil,
                makeHTTPHandler: { HTTPEndpointHandler(router: router, maxBody: maxBody) })
            let transport = HTTP2ServerTransport.Custom(listenerFactory: factory, config: transportConfig)
            transports.append(transport)
            servers.append(GRPCServer(transport: transport, services: services, interceptors: [RPCMetricsInterceptor(metrics: metrics)]))
        }

        let grpcServers = servers
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for server in grpcServers { group.addTask { try await server.serve() } }
                var bound: [String] = []
                for (url, transport) in zip(config.listenClientURLs, transports) {
                    guard let address = await transport.listeningAddress else {
                        throw ConfigError("listen tcp \(url.host):\(url.port): could not bind (address in use?)")
                    }
                    bound.append("\(url) (\(address))")
                }
                try await announce(node: node, urls: config.listenClientURLs)
                group.addTask { [self] in try await runAutoCompaction(handler: handler) }
                try await gracefulShutdown()
                for server in grpcServers { server.beginGracefulShutdown() }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            for server in grpcServers { server.beginGracefulShutdown() }
        }
        logger.info("stopped serving", metadata: ["name": "\(config.node.name)"])
    }

    /// Publishes the member through the log, then prints etcd's milestone lines, in etcd's order, only once
    /// the member really serves: deployment tooling waits for them.
    private func announce(node: MemberNode, urls: [ListenURL]) async throws {
        while !Task.isCancelled {
            if node.status.failure != nil { throw ConfigError("member failed: \(node.status.failure!)") }
            if case .success = await node.publishAttributes() { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        logger.info(
            "published local member to cluster through raft",
            metadata: [
                "local-member-id": "\(Identity.hex(node.memberID))",
                "local-member-attributes": "{Name:\(config.node.name) ClientURLs:\(config.node.advertiseClientURLs)}",
                "cluster-id": "\(Identity.hex(node.clusterID))",
            ])
        logger.info("ready to serve client requests")
        let version = String(Version.etcdCluster.split(separator: ".").prefix(2).joined(separator: "."))
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
                    _ = try? await handler.compact(request)
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
                    _ = try? await handler.compact(request)
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
