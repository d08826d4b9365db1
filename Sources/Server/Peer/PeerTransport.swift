import Collections
import Crypto
import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Node
import Raft
import Storage
import Synchronization

/// How peer connections are secured (the TLS layer supplies the TLS variant).
public protocol PeerClientSecurity: Sendable {
    /// For grpc-swift's client (the peer calls other than Raft messages).
    func transportSecurity(for url: ListenURL) -> HTTP2ClientTransport.Posix.TransportSecurity
    /// For a connection of Quorum's own (the Raft message link); nil for plaintext.
    func makeTLSHandler(for url: ListenURL) throws -> NIOSSLClientHandler?
}

public struct PlaintextPeers: PeerClientSecurity {
    public init() {}
    public func transportSecurity(for url: ListenURL) -> HTTP2ClientTransport.Posix.TransportSecurity { .plaintext }
    public func makeTLSHandler(for url: ListenURL) throws -> NIOSSLClientHandler? { nil }
}

/// Raft messages to the other members over gRPC (the `quorumpb.Peer` service on their peer URLs).
///
/// Each peer gets a sender whose `RaftLink` carries Raft messages on one long-lived stream; when it breaks it
/// redials with backoff and tells Raft the peer was unreachable, so the leader probes again. Messages that
/// cannot be sent are dropped: Raft retransmits. Snapshots go on a separate RPC so a large image never holds up
/// heartbeats.
public final class PeerTransport: RaftTransport, Sendable {
    let memberID: Mutex<UInt64>
    let clusterID: Mutex<UInt64>
    let logger: Logger
    let security: any PeerClientSecurity
    private let nodeBox = Mutex<MemberNode?>(nil)
    private let senders = Mutex<[UInt64: PeerSender]>([:])
    let metrics: PeerMetrics?

    /// Where Raft links dial from: the Raft loop's event loop.
    let eventLoopGroup: any EventLoopGroup

    public init(
        logger: Logger, security: any PeerClientSecurity = PlaintextPeers(), metrics: ServerMetrics? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.logger = logger
        self.security = security
        self.eventLoopGroup = eventLoopGroup
        self.metrics = metrics.map { PeerMetrics(registry: $0.registry) }
        memberID = Mutex(0)
        clusterID = Mutex(0)
    }

    /// Completes the wiring once the member exists (the member needs the transport to open).
    func attach(_ node: MemberNode) {
        nodeBox.withLock { $0 = node }
        memberID.withLock { $0 = node.memberID }
        clusterID.withLock { $0 = node.clusterID }
        // Dial every member now: links that are already up carry the first election's votes, instead of
        // dropping them while they connect (which costs the cluster another election timeout).
        for member in node.members.all { _ = sender(for: member.id) }
    }

    var node: MemberNode? { nodeBox.withLock { $0 } }

    public func send(_ messages: [Message]) {
        var byPeer: [UInt64: [[UInt8]]] = [:]
        for message in messages { byPeer[message.to, default: []].append(message.serialized()) }
        for (peer, batch) in byPeer { sender(for: peer)?.enqueue(batch) }
    }

    public func sendSnapshot(_ message: Message, image: SnapshotImage) {
        guard let node, peerURL(message.to) != nil else {
            try? FileSystem.remove(image.path)
            self.node?.reportSnapshot(to: message.to, succeeded: false)
            return
        }
        let logger = self.logger
        let client = sender(for: message.to)
        let clusterID = self.clusterID.withLock { $0 }
        let memberID = self.memberID.withLock { $0 }
        Task.detached {
            defer { try? FileSystem.remove(image.path) }
            var ok = false
            do {
                guard let peer = client?.peerClient else {
                    throw RPCError(code: .unavailable, message: "no connection")
                }
                let ack = try await peer.snapshot(
                    request: StreamingClientRequest { writer in
                        let file = try File(path: image.path, writable: false)
                        let total = try file.size
                        var offset = 0
                        var digest = SHA256()
                        var first = true
                        repeat {
                            var chunk = Quorumpb_SnapshotChunk()
                            chunk.clusterID = clusterID
                            chunk.from = memberID
                            chunk.to = message.to
                            if first {
                                chunk.message = Data(message.serialized())
                                chunk.totalSize = UInt64(total)
                                first = false
                            }
                            let bytes = try file.read(count: min(256 * 1024, total - offset), at: offset)
                            offset += bytes.count
                            digest.update(data: bytes)
                            chunk.data = Data(bytes)
                            if offset >= total { chunk.sha256 = Data(digest.finalize()) }
                            try await writer.write(chunk)
                        } while offset < total
                    }, options: .peerSnapshot)
                ok = ack.ok
                if !ok { logger.warning("peer refused snapshot", metadata: ["error": "\(ack.error)"]) }
            } catch {
                logger.warning(
                    "sending snapshot failed", metadata: ["to": "\(Identity.hex(message.to))", "error": "\(error)"])
            }
            node.reportSnapshot(to: message.to, succeeded: ok)
            self.metrics?.snapshotSent(to: message.to, succeeded: ok)
            if ok {
                logger.info(
                    "sent database snapshot", metadata: ["to": "\(Identity.hex(message.to))", "bytes": "\(image.size)"])
            }
        }
    }

    /// The peer URL to dial for a member, from the replicated member table.
    func peerURL(_ id: UInt64) -> ListenURL? {
        guard let member = node?.members.member(id) else { return nil }
        return Self.dialURL(member.peerURLs)
    }

    private static func dialURL(_ peerURLs: [String]) -> ListenURL? {
        peerURLs.lazy.compactMap { try? ListenURL($0) }.first
    }

    /// The sender for a member, created on first use; nil for unknown or removed members.
    ///
    /// Called for every batch of Raft messages: an existing sender is reused while the member's advertised peer
    /// URLs are unchanged, so the URLs are parsed only when a sender is made.
    func sender(for id: UInt64) -> PeerSender? {
        guard id != 0, id != memberID.withLock({ $0 }), let member = node?.members.member(id) else { return nil }
        if let existing = senders.withLock({ $0[id] }), existing.peerURLs == member.peerURLs { return existing }
        guard let url = Self.dialURL(member.peerURLs) else { return nil }
        return senders.withLock { senders in
            if let existing = senders[id], existing.peerURLs == member.peerURLs { return existing }
            senders[id]?.stop()
            let sender = PeerSender(peer: id, url: url, peerURLs: member.peerURLs, transport: self)
            senders[id] = sender
            sender.start()
            return sender
        }
    }

    /// A client for a member's peer service (promotions, hashes, lease TTLs).
    public func client(for id: UInt64) -> Quorumpb_Peer.Client<HTTP2ClientTransport.Posix>? {
        sender(for: id)?.peerClient
    }

    /// A client for a member's Raft service (lease renewals forwarded to the leader).
    func raftClient(for id: UInt64) -> Quorumpb_Raft.Client<HTTP2ClientTransport.Posix>? {
        sender(for: id)?.raftClient
    }

    func reportActivePeers() {
        let active = senders.withLock { $0.values.filter { $0.reachable.load(ordering: .relaxed) }.count }
        metrics?.activePeers(active, local: memberID.withLock { $0 })
    }

    /// Drops senders of members no longer in the cluster.
    func prune() {
        guard let node else { return }
        let stale = senders.withLock { senders -> [PeerSender] in
            let gone = senders.keys.filter { node.members.member($0) == nil }
            return gone.compactMap { senders.removeValue(forKey: $0) }
        }
        for sender in stale { sender.stop() }
    }

    public func stop() {
        let all = senders.withLock { senders -> [PeerSender] in
            defer { senders.removeAll() }
            return Array(senders.values)
        }
        for sender in all { sender.stop() }
    }
}

extension CallOptions {
    static var peerSnapshot: CallOptions {
        var options = CallOptions.defaults
        options.timeout = .seconds(600)
        options.maxRequestMessageBytes = 8 << 20
        return options
    }
}

/// The outbound half of one peer connection: Raft messages over a `RaftLink`, everything else over grpc-swift.
final class PeerSender: Sendable {
    let peer: UInt64
    let url: ListenURL
    /// The member's advertised peer URLs this sender was made for (`url` is the one dialled).
    let peerURLs: [String]
    private unowned(unsafe) let transport: PeerTransport
    let grpc: GRPCClient<HTTP2ClientTransport.Posix>?
    let peerClient: Quorumpb_Peer.Client<HTTP2ClientTransport.Posix>?
    let raftClient: Quorumpb_Raft.Client<HTTP2ClientTransport.Posix>?
    private let link: RaftLink
    private let tasks = Mutex<[Task<Void, Never>]>([])

    init(peer: UInt64, url: ListenURL, peerURLs: [String], transport: PeerTransport) {
        self.peer = peer
        self.url = url
        self.peerURLs = peerURLs
        self.transport = transport
        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.backoff = .init(initial: .milliseconds(100), max: .seconds(2), multiplier: 1.6, jitter: 0.2)
        config.connection.maxIdleTime = nil
        let client = try? GRPCClient(
            transport: .http2NIOPosix(
                target: url.peerTarget, transportSecurity: transport.security.transportSecurity(for: url),
                config: config))
        grpc = client
        peerClient = client.map { Quorumpb_Peer.Client(wrapping: $0) }
        raftClient = client.map { Quorumpb_Raft.Client(wrapping: $0) }
        link = RaftLink(
            peer: peer, url: url, security: transport.security, logger: transport.logger,
            group: transport.eventLoopGroup,
            identity: { [unowned(unsafe) transport] in
                RaftLink.Identity(
                    clusterID: transport.clusterID.withLock { $0 }, from: transport.memberID.withLock { $0 })
            },
            onBroken: { [unowned(unsafe) transport] in
                transport.node?.reportUnreachable(peer)
                transport.metrics?.sendFailed(to: peer)
            },
            onSent: { [unowned(unsafe) transport] bytes in transport.metrics?.sent(bytes: bytes, to: peer) })
    }

    func start() {
        link.connectIfDue()
        guard let grpc else { return }
        let connections = Task { _ = try? await grpc.runConnections() }
        let probe = Task { [self] in await runProbe() }
        tasks.withLock { $0 = [connections, probe] }
    }

    /// Whether the last probe got an answer (etcd's "active peer").
    let reachable = Atomic<Bool>(false)

    /// Measures the round trip every two seconds, as etcd's prober does, for the RTT metric.
    private func runProbe() async {
        guard let peerClient else { return }
        while !Task.isCancelled {
            let start = ContinuousClock.now
            var options = CallOptions.defaults
            options.timeout = .seconds(2)
            let answered = (try? await peerClient.members(Quorumpb_MembersRequest(), options: options)) != nil
            reachable.store(answered, ordering: .relaxed)
            if answered {
                let rtt = ContinuousClock.now - start
                transport.metrics?.roundTrip(
                    seconds: Double(rtt.components.seconds) + Double(rtt.components.attoseconds) / 1e18, to: peer)
            }
            transport.reportActivePeers()
            try? await Task.sleep(for: .seconds(2))
        }
    }

    func stop() {
        link.stop()
        grpc?.beginGracefulShutdown()
        for task in tasks.withLock({ $0 }) { task.cancel() }
    }

    /// Sends encoded messages; when they cannot go (link down, peer not reading), Raft hears the peer is
    /// unreachable and probes again later.
    func enqueue(_ batch: [[UInt8]]) {
        if !link.send(batch) { transport.node?.reportUnreachable(peer) }
    }
}

extension ListenURL {
    /// The gRPC target for dialling this URL. Literal addresses are not resolved, and, as important, not sent as
    /// TLS server names: SNI may only carry a host name, and NIOSSL refuses to dial an IP address given as one.
    var peerTarget: any ResolvableTarget {
        if host.contains(":") { return .ipv6(address: host, port: port) }
        if host.allSatisfy({ $0.isNumber || $0 == "." }) { return .ipv4(address: host, port: port) }
        return .dns(host: host, port: port)
    }
}
