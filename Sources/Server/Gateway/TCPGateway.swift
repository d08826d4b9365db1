import Foundation
import GoSyntax
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Node
import Synchronization

/// etcd's L4 gateway (`etcd gateway start`): a TCP proxy in front of a cluster's client endpoints. Each accepted
/// connection is joined byte for byte to a connection to one endpoint, picked as etcd's `tcpproxy` picks it (SRV
/// priority and weight when discovered, otherwise round robin); an endpoint that refuses a connection is left out
/// for `--retry-delay`, then tried again.
public struct TCPGatewayOptions: Sendable {
    public var listenAddress = "127.0.0.1:23790"
    public var endpoints = ["127.0.0.1:2379"]
    public var retryDelay: Duration = .seconds(60)
    public var discoverySRV = ""
    public var discoverySRVName = ""
    public var insecureDiscovery = false
    public var trustedCAFile = ""

    public init() {}

    /// `gateway start`'s flags (Go syntax: `--flag value`, `--flag=value`, bare booleans; `--endpoints` may repeat
    /// or list several, comma-separated), around the `start` subcommand.
    public static func parse(_ arguments: [String]) throws(ConfigError) -> TCPGatewayOptions {
        var options = TCPGatewayOptions()
        var endpoints: [String] = []
        var sawStart = false
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-") else {
                guard argument == "start", !sawStart else { throw ConfigError("unknown command \"\(argument)\"") }
                sawStart = true
                continue
            }
            var name = String(argument.drop(while: { $0 == "-" }))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            func next() throws(ConfigError) -> String {
                if let value { return value }
                guard index < arguments.count else { throw ConfigError("flag needs an argument: --\(name)") }
                index += 1
                return arguments[index - 1]
            }
            switch name {
            case "listen-addr": options.listenAddress = try next()
            case "endpoints": endpoints += try next().split(separator: ",").map(String.init)
            case "discovery-srv": options.discoverySRV = try next()
            case "discovery-srv-name": options.discoverySRVName = try next()
            case "trusted-ca-file": options.trustedCAFile = try next()
            case "insecure-discovery":
                switch value ?? "true" {
                case "true", "1", "t", "T", "TRUE", "True": options.insecureDiscovery = true
                case "false", "0", "f", "F", "FALSE", "False": options.insecureDiscovery = false
                default: throw ConfigError("invalid argument \"\(value ?? "")\" for \"--insecure-discovery\" flag")
                }
            case "retry-delay":
                let text = try next()
                guard let delay = GoDuration.parse(text) else {
                    throw ConfigError(
                        "invalid argument \"\(text)\" for \"--retry-delay\" flag: time: invalid duration \"\(text)\"")
                }
                options.retryDelay = delay
            default:
                throw ConfigError("unknown flag: --\(name)")
            }
        }
        guard sawStart else { throw ConfigError("usage: quorum gateway start [--endpoints ...] [--listen-addr ...]") }
        if !endpoints.isEmpty { options.endpoints = endpoints }
        return options
    }
}

/// One endpoint of the gateway: where it is, its SRV priority and weight, and whether it is left out for now.
final class GatewayRemote: Sendable {
    let host: String
    let port: Int
    let priority: UInt16
    let weight: UInt16
    private let inactive = Atomic(false)

    init(host: String, port: Int, priority: UInt16 = 0, weight: UInt16 = 0) {
        self.host = host
        self.port = port
        self.priority = priority
        self.weight = weight
    }

    var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    var isActive: Bool { !inactive.load(ordering: .relaxed) }
    func inactivate() { inactive.store(true, ordering: .relaxed) }
    func activate() { inactive.store(false, ordering: .relaxed) }
}

/// etcd's `tcpproxy.pick`: among active endpoints of the best (lowest) priority, by weight when weights are set
/// (weight-0 records then get a 1% chance), otherwise round robin over all endpoints, skipping inactive ones.
final class GatewayPicker: Sendable {
    let remotes: [GatewayRemote]
    private let count = Mutex(0)

    init(remotes: [GatewayRemote]) {
        self.remotes = remotes
    }

    func pick() -> GatewayRemote? {
        var weighted: [GatewayRemote] = []
        var unweighted: [GatewayRemote] = []
        var best = UInt16.max
        var total = 0
        for remote in remotes where remote.isActive {
            if remote.priority < best {
                best = remote.priority
                weighted = []
                unweighted = []
                total = 0
            }
            guard remote.priority == best else { continue }
            if remote.weight > 0 {
                weighted.append(remote)
                total += Int(remote.weight)
            } else {
                unweighted.append(remote)
            }
        }
        return count.withLock { count -> GatewayRemote? in
            if !weighted.isEmpty {
                if !unweighted.isEmpty && Int.random(in: 0..<100) == 1 {
                    defer { count += 1 }
                    return unweighted[count % unweighted.count]
                }
                var choose = Int.random(in: 0..<total)
                for remote in weighted {
                    choose -= Int(remote.weight)
                    if choose <= 0 { return remote }
                }
            }
            guard !unweighted.isEmpty else { return nil }
            for _ in remotes.indices {
                let picked = remotes[count % remotes.count]
                count += 1
                if picked.isActive { return picked }
            }
            return nil
        }
    }
}

public enum TCPGateway {
    /// Resolves the endpoints (from DNS SRV records with `--discovery-srv`, else `--endpoints`), then serves until
    /// the task is cancelled.
    public static func run(
        _ options: TCPGatewayOptions, logger: Logger, resolver: any SRVResolver = SystemSRVResolver()
    )
        async throws
    {
        var remotes: [GatewayRemote] = []
        if !options.discoverySRV.isEmpty {
            remotes = try await discover(options, logger: logger, resolver: resolver)
        }
        if remotes.isEmpty {
            for endpoint in options.endpoints {
                // The scheme, if any, is dropped: this is a TCP proxy.
                var text = endpoint
                if let scheme = text.range(of: "://") { text = String(text[scheme.upperBound...]) }
                if let slash = text.firstIndex(of: "/") { text = String(text[..<slash]) }
                guard let (host, port) = splitHostPort(text) else {
                    throw ConfigError("error parsing endpoint \"\(endpoint)\"")
                }
                remotes.append(GatewayRemote(host: host, port: port))
            }
        }
        guard let (listenHost, listenPort) = splitHostPort(options.listenAddress) else {
            throw ConfigError("failed to validate listen address: \(options.listenAddress)")
        }
        // etcd refuses an endpoint that is the gateway itself (a loop).
        let listening = Set((try? SystemSRVResolver.addresses(host: listenHost, port: listenPort)) ?? [])
        for remote in remotes where remote.port == listenPort {
            for address in (try? SystemSRVResolver.addresses(host: remote.host, port: remote.port)) ?? []
            where listening.contains(address) {
                throw ConfigError(
                    "SRV or endpoint (\(remote.address)->\(address)) should not resolve to the gateway listen addr "
                        + "(\(options.listenAddress))")
            }
        }
        guard !remotes.isEmpty else { throw ConfigError("no endpoints found") }

        let group = MultiThreadedEventLoopGroup.singleton
        let endpoints = remotes
        let picker = GatewayPicker(remotes: endpoints)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let glue = GlueHandler()
                    try channel.pipeline.syncOperations.addHandler(glue)
                    connect(channel, glue: glue, picker: picker, retryDelay: options.retryDelay, logger: logger)
                }
            }
            .bind(host: listenHost, port: listenPort).get()
        logger.info(
            "ready to proxy client requests",
            metadata: [
                "endpoints": .array(endpoints.map { .string($0.address) }), "listen-addr": "\(options.listenAddress)",
            ])
        try await withTaskCancellationHandler {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await server.closeFuture.get() }
                tasks.addTask { try await monitor(endpoints, every: options.retryDelay, logger: logger) }
                try await tasks.next()
                tasks.cancelAll()
            }
        } onCancel: {
            server.close(promise: nil)
        }
    }

    /// Joins an accepted connection to one endpoint, trying endpoints until one accepts (each refusal leaves that
    /// endpoint out for `retryDelay`); with none left the connection is closed.
    private static func connect(
        _ inbound: any Channel, glue: GlueHandler, picker: GatewayPicker, retryDelay: Duration, logger: Logger
    ) {
        guard let remote = picker.pick() else {
            inbound.close(promise: nil)
            return
        }
        ClientBootstrap(group: inbound.eventLoop)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connectTimeout(.seconds(5))
            .channelInitializer { outbound in
                outbound.eventLoop.makeCompletedFuture {
                    try outbound.pipeline.syncOperations.addHandler(GlueHandler())
                }
            }
            .connect(host: remote.host, port: remote.port)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let outbound):
                    guard let partner = try? outbound.pipeline.syncOperations.handler(type: GlueHandler.self) else {
                        outbound.close(promise: nil)
                        inbound.close(promise: nil)
                        return
                    }
                    GlueHandler.join(glue, partner)
                case .failure(let error):
                    remote.inactivate()
                    logger.warning(
                        "deactivated endpoint",
                        metadata: [
                            "address": "\(remote.address)", "interval": "\(GoDuration.format(retryDelay))",
                            "error": "\(error)",
                        ])
                    connect(inbound, glue: glue, picker: picker, retryDelay: retryDelay, logger: logger)
                }
            }
    }

    /// Every `interval`, tries each inactive endpoint with a TCP connection and takes it back if it answers.
    private static func monitor(_ remotes: [GatewayRemote], every interval: Duration, logger: Logger) async throws {
        while true {
            try await Task.sleep(for: interval)
            for remote in remotes where !remote.isActive {
                do {
                    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                        .connectTimeout(.seconds(5)).connect(host: remote.host, port: remote.port).get()
                    try? await channel.close()
                    remote.activate()
                    logger.info("activated", metadata: ["address": "\(remote.address)"])
                } catch {
                    logger.warning(
                        "failed to activate endpoint (stay inactive for another interval)",
                        metadata: [
                            "address": "\(remote.address)", "interval": "\(GoDuration.format(interval))",
                            "error": "\(error)",
                        ])
                }
            }
        }
    }

    /// etcd's `srv.GetClient("etcd-client", ...)`: `_etcd-client-ssl[-name]._tcp.<domain>` (https) and
    /// `_etcd-client[-name]._tcp.<domain>` (http). Without `--insecure-discovery`, only https endpoints that complete
    /// a TLS handshake verified against `--trusted-ca-file` (or the system's roots) for the domain are kept.
    static func discover(_ options: TCPGatewayOptions, logger: Logger, resolver: any SRVResolver) async throws
        -> [GatewayRemote]
    {
        let suffix = options.discoverySRVName.isEmpty ? "" : "-" + options.discoverySRVName
        var found: [(scheme: String, record: SRVRecord)] = []
        var errors: [String] = []
        for (service, scheme) in [("etcd-client-ssl" + suffix, "https"), ("etcd-client" + suffix, "http")] {
            do {
                found += try resolver.lookupSRV("_\(service)._tcp.\(options.discoverySRV)").map { (scheme, $0) }
            } catch {
                errors.append("\(error)")
            }
        }
        if errors.count == 2 {
            throw ConfigError("dns lookup errors: \(errors[0]) and \(errors[1])")
        }
        func host(_ record: SRVRecord) -> String {
            record.target.hasSuffix(".") ? String(record.target.dropLast()) : record.target
        }
        let endpoints = found.map { "\($0.scheme)://\(host($0.record)):\($0.record.port)" }
        logger.info(
            "discovered cluster from SRV",
            metadata: ["srv-server": "\(options.discoverySRV)", "endpoints": .array(endpoints.map { .string($0) })])
        var kept: [GatewayRemote] = []
        var refused: [String] = []
        for (scheme, record) in found {
            let remote = GatewayRemote(
                host: host(record), port: Int(record.port), priority: record.priority, weight: record.weight)
            if options.insecureDiscovery {
                kept.append(remote)
            } else if scheme != "https" {
                refused.append("\"\(scheme)://\(remote.address)\" is insecure")
            } else if let failure = await tlsFailure(
                remote, serverName: options.discoverySRV, caFile: options.trustedCAFile)
            {
                refused.append("\"https://\(remote.address)\" failed to dial (\(failure))")
            } else {
                kept.append(remote)
            }
        }
        if !refused.isEmpty {
            logger.warning(
                "failed to validate discovered endpoints",
                metadata: [
                    "srv-server": "\(options.discoverySRV)", "endpoints": .array(kept.map { .string($0.address) }),
                    "error": "\(refused.joined(separator: ", "))",
                ])
        }
        return kept
    }

    /// Why a TLS handshake with `remote`, verified for `serverName`, fails (nil: it succeeds).
    private static func tlsFailure(_ remote: GatewayRemote, serverName: String, caFile: String) async -> String? {
        let handshake = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        do {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if !caFile.isEmpty { configuration.trustRoots = .file(caFile) }
            let context = try NIOSSLContext(configuration: configuration)
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: context, serverHostname: serverName))
                        try channel.pipeline.syncOperations.addHandler(HandshakeWaiter(done: handshake))
                    }
                }
                .connect(host: remote.host, port: remote.port).get()
            defer { channel.close(promise: nil) }
            try await handshake.futureResult.get()
            return nil
        } catch {
            handshake.fail(error)
            return "\(error)"
        }
    }

    static func splitHostPort(_ text: String) -> (String, Int)? {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()) else { return nil }
            return (String(text[text.index(after: text.startIndex)..<close]), port)
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else { return nil }
        return (String(text[..<colon]), port)
    }
}

/// Completes `done` when the TLS handshake finishes (or fails).
private final class HandshakeWaiter: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    let done: EventLoopPromise<Void>

    init(done: EventLoopPromise<Void>) { self.done = done }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { done.succeed(()) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }
}

/// Two connections joined: what one reads the other writes, reading paused while the other cannot take more; a
/// half-close is passed on as a half-close, a close as a close. Both live on one event loop.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Nothing is read before the partner exists: reading starts once joined.
    private var joined = false

    static func join(_ a: GlueHandler, _ b: GlueHandler) {
        a.partner = b
        b.partner = a
        a.joined = true
        b.joined = true
        a.partnerBecameWritable()
        b.partnerBecameWritable()
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    private func partnerWrite(_ data: NIOAny) { context?.write(data, promise: nil) }
    private func partnerFlush() { context?.flush() }
    private func partnerWriteEOF() { context?.close(mode: .output, promise: nil) }
    private func partnerCloseFull() { context?.close(promise: nil) }
    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { partner?.partnerWrite(data) }
    func channelReadComplete(context: ChannelHandlerContext) { partner?.partnerFlush() }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerCloseFull()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            partner?.partnerWriteEOF()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        partner?.partnerCloseFull()
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if joined && partner?.partnerWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
