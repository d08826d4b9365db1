import EtcdAPI
import EtcdProto
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Node
import Synchronization

/// The outbound half of one peer connection: Raft messages over a `RaftLink`, everything else (snapshots, probes,
/// forwarded lease renewals and promotions, hashes) over a grpc-swift client.
///
/// grpc-swift fixes a client's TLS configuration when the client is made, and redials with it forever. So the client
/// is made per generation of this member's peer material: after a renewal or a CA change the next call gets a new
/// client that presents the new certificate and trusts the new bundle, and the old one shuts down gracefully (calls
/// in flight, such as a snapshot being streamed, finish on it). The Raft link is re-established in place the same way.
final class PeerSender: Sendable {
    let peer: UInt64
    let url: ListenURL
    /// The member's advertised peer URLs this sender was made for (`url` is the one dialled).
    let peerURLs: [String]
    private unowned(unsafe) let transport: PeerTransport
    private let link: RaftLink

    /// A grpc-swift client made from one generation of the peer material.
    private struct Dialer: Sendable {
        let generation: Int
        let grpc: GRPCClient<HTTP2ClientTransport.Posix>
        let peer: Quorumpb_Peer.Client<HTTP2ClientTransport.Posix>
        let raft: Quorumpb_Raft.Client<HTTP2ClientTransport.Posix>
    }

    private struct State {
        var dialer: Dialer?
        var probe: Task<Void, Never>?
        var stopped = false
    }

    private let state = Mutex(State())

    init(peer: UInt64, url: ListenURL, peerURLs: [String], transport: PeerTransport) {
        self.peer = peer
        self.url = url
        self.peerURLs = peerURLs
        self.transport = transport
        link = RaftLink(
            peer: peer, url: url, security: transport.security, logger: transport.logger,
            group: transport.eventLoopGroup,
            identity: { [unowned(unsafe) transport] in
                RaftLink.Identity(
                    clusterID: transport.clusterID.withLock { $0 }, from: transport.memberID.withLock { $0 },
                    peerURLs: transport.ownPeerURLs.withLock { $0 })
            },
            events: RaftLink.Events(
                broken: { [unowned(unsafe) transport] in
                    transport.node?.reportUnreachable(peer)
                    transport.metrics?.sendFailed(to: peer)
                },
                sent: { [unowned(unsafe) transport] bytes in transport.metrics?.sent(bytes: bytes, to: peer) },
                dialed: { [unowned(unsafe) transport] error in transport.dialed(peer, url: url, error: error) },
                replaced: { [unowned(unsafe) transport] reason in transport.metrics?.linkReplaced(to: peer, reason) },
                refused: { [unowned(unsafe) transport] refusal in transport.refused(by: peer, refusal) }))
    }

    func start() {
        link.connectIfDue()
        _ = dialer()
        let probe = Task { [self] in await runProbe() }
        state.withLock { $0.probe = probe }
    }

    var peerClient: Quorumpb_Peer.Client<HTTP2ClientTransport.Posix>? { dialer()?.peer }
    var raftClient: Quorumpb_Raft.Client<HTTP2ClientTransport.Posix>? { dialer()?.raft }

    /// The client for the current material, made (and the stale one retired) when the material changed.
    private func dialer() -> Dialer? {
        let generation = transport.security.materialGeneration
        let (current, retired) = state.withLock { s -> (Dialer?, Dialer?) in
            if s.stopped { return (nil, nil) }
            if let dialer = s.dialer, dialer.generation == generation { return (dialer, nil) }
            let previous = s.dialer
            s.dialer = makeDialer(generation: generation)
            return (s.dialer, previous)
        }
        if let retired {
            // New calls go to the new client; calls in flight finish on the old one, which then closes.
            retired.grpc.beginGracefulShutdown()
            transport.logger.debug(
                "peer client re-made for new TLS material",
                metadata: ["peer": "\(Identity.hex(peer))", "generation": "\(generation)"])
        }
        return current
    }

    private func makeDialer(generation: Int) -> Dialer? {
        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.backoff = .init(initial: .milliseconds(100), max: .seconds(2), multiplier: 1.6, jitter: 0.2)
        config.connection.maxIdleTime = nil
        guard
            let client = try? GRPCClient(
                transport: .http2NIOPosix(
                    target: url.peerTarget, transportSecurity: transport.security.transportSecurity(for: url),
                    config: config))
        else { return nil }
        // Runs until the client is shut down (retired or stopped); nothing needs to hold the task.
        Task { try? await client.runConnections() }
        return Dialer(
            generation: generation, grpc: client, peer: Quorumpb_Peer.Client(wrapping: client),
            raft: Quorumpb_Raft.Client(wrapping: client))
    }

    /// This member's peer material changed: new calls get a new client at once, and the Raft link is re-established
    /// before the certificate it was opened with can expire.
    func materialChanged() {
        _ = dialer()
        link.renew(reason: .renewal)
    }

    /// Whether the last probe got an answer (etcd's "active peer").
    let reachable = Atomic<Bool>(false)

    /// Measures the round trip every two seconds, as etcd's prober does, for the RTT metric.
    private func runProbe() async {
        while !Task.isCancelled {
            guard let peerClient else { return }
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
        let (dialer, probe) = state.withLock { s -> (Dialer?, Task<Void, Never>?) in
            s.stopped = true
            defer {
                s.dialer = nil
                s.probe = nil
            }
            return (s.dialer, s.probe)
        }
        dialer?.grpc.beginGracefulShutdown()
        probe?.cancel()
    }

    /// Sends encoded messages; when they cannot go (link down, peer not reading), Raft hears the peer is
    /// unreachable and probes again later, and the result is false.
    @discardableResult
    func enqueue(_ batch: [[UInt8]]) -> Bool {
        if link.send(batch) { return true }
        transport.node?.reportUnreachable(peer)
        return false
    }
}
