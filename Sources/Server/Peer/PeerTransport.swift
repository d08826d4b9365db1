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
import PKI
import Raft
import ReloadingTLS
import Storage
import Synchronization

/// How peer connections are secured (the TLS layer supplies the TLS variant).
///
/// Both makers read the material current when they are called, and a dialled connection keeps what it was made
/// with; `materialGeneration` says when that went stale, so the peer transport can re-establish what it opened
/// before a renewal or a CA change, before the old certificate expires.
public protocol PeerClientSecurity: Sendable {
    /// For grpc-swift's client (the peer calls other than Raft messages): fixed for the client's whole life.
    func transportSecurity(for url: ListenURL) -> HTTP2ClientTransport.Posix.TransportSecurity
    /// For a connection of Quorum's own (the Raft message link); nil for plaintext.
    func makeTLSHandler(for url: ListenURL) throws -> NIOSSLClientHandler?
    /// Grows each time the certificate, key, trust bundle or CRL changes.
    var materialGeneration: Int { get }
    /// Runs `body` after each such change.
    func onMaterialChange(_ body: @escaping @Sendable () -> Void)
    /// This member's own certificate as dials present it (for explaining a refusal); nil for plaintext.
    var presentedIdentity: PresentedIdentity? { get }
    /// Why the last dial to `host` refused the certificate it served; nil if none did.
    func lastDialRejection(host: String) -> String?
}

/// The certificate a dial presents, in the words a refusal is explained with.
public struct PresentedIdentity: Sendable {
    public var description: String
    /// Why the other side would refuse it, as far as this member can tell from its own bundle; nil if it looks valid.
    public var problem: String?
}

public struct PlaintextPeers: PeerClientSecurity {
    public init() {}
    public func transportSecurity(for url: ListenURL) -> HTTP2ClientTransport.Posix.TransportSecurity { .plaintext }
    public func makeTLSHandler(for url: ListenURL) throws -> NIOSSLClientHandler? { nil }
    public var materialGeneration: Int { 0 }
    public func onMaterialChange(_ body: @escaping @Sendable () -> Void) {}
    public var presentedIdentity: PresentedIdentity? { nil }
    public func lastDialRejection(host: String) -> String? { nil }
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
    /// Members this one's member table does not list yet, with the peer URLs their Raft batches gave: answered there
    /// until the table lists them (see `addRemote`).
    private let remotes = Mutex<[UInt64: [String]]>([:])
    /// This member's advertised peer URLs, sent in the first Raft batch of each stream (`RaftLink`).
    let ownPeerURLs = Mutex<[String]>([])
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
        security.onMaterialChange { [weak self] in self?.materialChanged() }
        memberID.withLock { $0 = node.memberID }
        clusterID.withLock { $0 = node.clusterID }
        ownPeerURLs.withLock { $0 = node.config.advertisePeerURLs }
        // Dial every member now: links that are already up carry the first election's votes, instead of
        // dropping them while they connect (which costs the cluster another election timeout).
        for member in node.members.all { _ = sender(for: member.id) }
    }

    var node: MemberNode? { nodeBox.withLock { $0 } }

    public func send(_ messages: [Message]) {
        var byPeer: [UInt64: (batch: [[UInt8]], heartbeats: Int)] = [:]
        for message in messages {
            byPeer[message.to, default: ([], 0)].batch.append(message.serialized())
            if message.kind == .heartbeat { byPeer[message.to, default: ([], 0)].heartbeats += 1 }
        }
        for (peer, outgoing) in byPeer {
            guard let sender = sender(for: peer) else { continue }
            if !sender.enqueue(outgoing.batch) && outgoing.heartbeats > 0 {
                // The leader's heartbeats did not go out: etcd's `etcd_server_heartbeat_send_failures_total`.
                node?.counters.heartbeatSendFailures.add(outgoing.heartbeats, ordering: .relaxed)
            }
        }
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

    /// A member this one's table does not list sent Raft messages from `peerURLs`: until the table lists it (or
    /// records its removal), this member answers it there. Without it, a member whose table is behind the leader's
    /// (the leader joined while it was down or cut off) could never answer that leader, and stayed behind for good:
    /// the member simulation found it (seeds 973 and 8001257 with membership changes on simulated disks). etcd does
    /// the same (`AddRemote`, from a message's X-PeerURLs).
    func addRemote(_ id: UInt64, peerURLs: [String]) {
        guard id != 0, id != memberID.withLock({ $0 }), !peerURLs.isEmpty else { return }
        let added = remotes.withLock { remotes in
            defer { remotes[id] = peerURLs }
            return remotes[id] != peerURLs
        }
        if added {
            logger.info(
                "added remote peer",
                metadata: ["remote-peer-id": "\(Identity.hex(id))", "remote-peer-urls": "\(peerURLs)"])
        }
    }

    /// Where a member is dialled: its entry in the member table, else (not removed) the URLs it sent (`addRemote`).
    private func peerURLs(of id: UInt64) -> [String]? {
        guard let node else { return nil }
        if let member = node.members.member(id) { return member.peerURLs }
        if node.members.isRemoved(id) { return nil }
        return remotes.withLock { $0[id] }
    }

    /// The sender for a member, created on first use; nil for unknown or removed members.
    ///
    /// Called for every batch of Raft messages: an existing sender is reused while the member's advertised peer
    /// URLs are unchanged, so the URLs are parsed only when a sender is made.
    func sender(for id: UInt64) -> PeerSender? {
        guard id != 0, id != memberID.withLock({ $0 }), let peerURLs = peerURLs(of: id) else { return nil }
        if let existing = senders.withLock({ $0[id] }), existing.peerURLs == peerURLs { return existing }
        guard let url = Self.dialURL(peerURLs) else { return nil }
        return senders.withLock { senders in
            if let existing = senders[id], existing.peerURLs == peerURLs { return existing }
            senders[id]?.stop()
            let sender = PeerSender(peer: id, url: url, peerURLs: peerURLs, transport: self)
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
        prune()
        let reachable = senders.withLock { $0.mapValues { $0.reachable.load(ordering: .relaxed) } }
        metrics?.activePeers(reachable, local: memberID.withLock { $0 })
    }

    /// This member's certificate, key, bundle or CRL changed: every sender re-makes its client and re-establishes
    /// its Raft link, so nothing this member dialled keeps depending on what it was dialled with.
    private func materialChanged() {
        let all = senders.withLock { Array($0.values) }
        logger.info(
            "peer TLS material changed; re-establishing links to peers", metadata: ["peers": "\(all.count)"])
        for sender in all { sender.materialChanged() }
    }

    // MARK: Refusals

    /// A peer refused this member's Raft stream. Refused as removed, this member stops (`removedByPeer`): a member
    /// removed while it was down or cut off never applies its own removal (the leader stops replicating to it once
    /// it appends the removal), so its peers' answer is how it learns. Any other refusal (another cluster's member)
    /// is logged once per change; the link keeps redialling with backoff.
    func refused(by peer: UInt64, _ refusal: RPCRefusal) {
        if refusal.saysRemoved {
            logger.warning(
                "peer refused this member's messages: the cluster removed it",
                metadata: ["peer": "\(Identity.hex(peer))", "message": "\(refusal.message)"])
            node?.removedByPeer()
            return
        }
        let isNew = lastRefusal.withLock { last in
            defer { last[peer] = refusal }
            return last[peer] != refusal
        }
        if isNew {
            logger.warning(
                "peer refused this member's Raft messages",
                metadata: ["peer": "\(Identity.hex(peer))", "code": "\(refusal.code)", "message": "\(refusal.message)"])
        }
    }

    private let lastRefusal = Mutex<[UInt64: RPCRefusal]>([:])

    /// A peer that refused this member's certificate at the last dial, and why as far as this member can tell.
    struct Refusal: Sendable {
        var url: String
        var message: String
        var since: Date
    }

    private let refusals = Mutex<[UInt64: Refusal]>([:])

    /// The outcome of a Raft link's dial: a handshake that failed over a certificate, on either side, is recorded
    /// until a dial to that peer succeeds.
    func dialed(_ peer: UInt64, url: ListenURL, error: (any Error)?) {
        guard let error else {
            if refusals.withLock({ $0.removeValue(forKey: peer) }) != nil {
                logger.notice(
                    "TLS with peer works again", metadata: ["peer": "\(Identity.hex(peer))", "url": "\(url)"])
            }
            return
        }
        let message: String
        switch TLSVerifier.classify(error, tlsMinimum: "").reason {
        case "rejected_by_peer":
            guard let identity = security.presentedIdentity else { return }
            message =
                "peer \(Identity.hex(peer)) (\(url.description)) refuses this member's peer \(identity.description): "
                + (identity.problem ?? Self.alert(in: error)) + Self.goRemoteError(in: error)
        case "bad_certificate":
            guard let why = security.lastDialRejection(host: url.host) else { return }
            message = "this member refuses the certificate of peer \(Identity.hex(peer)) (\(url.description)): \(why)"
        default:
            return
        }
        let isNew = refusals.withLock { all -> Bool in
            let isNew = all[peer]?.message != message
            all[peer] = Refusal(url: url.description, message: message, since: all[peer]?.since ?? Date())
            return isNew
        }
        if isNew { logger.error("\(message)") }
        metrics?.dialRefused(to: peer)
    }

    /// The TLS alert BoringSSL reported, e.g. `SSLV3_ALERT_BAD_CERTIFICATE`, or the whole error.
    static func alert(in error: any Error) -> String {
        let text = String(describing: error)
        guard let range = text.range(of: #"[A-Z0-9_]*ALERT_[A-Z_]+"#, options: .regularExpression) else {
            return text
        }
        return "it answered the handshake with \(text[range])"
    }

    /// etcd's wording of the same refusal, as Go's TLS stack prints it (` (remote error: tls: bad certificate)`), or
    /// nothing. Operators and etcd's own tests search logs for these words (the seed's outage was diagnosed by
    /// them). A member that refuses a certificate in its verification callback sends `bad_certificate` (42) with
    /// Go and `certificate_unknown` (46) with BoringSSL; both mean "your certificate was refused", so both read as
    /// Go's "bad certificate".
    static func goRemoteError(in error: any Error) -> String {
        let text = String(describing: error)
        let words: [(alert: String, go: String)] = [
            ("ALERT_BAD_CERTIFICATE", "bad certificate"), ("ALERT_CERTIFICATE_UNKNOWN", "bad certificate"),
            ("ALERT_CERTIFICATE_EXPIRED", "expired certificate"), ("ALERT_CERTIFICATE_REVOKED", "revoked certificate"),
            ("ALERT_UNKNOWN_CA", "unknown certificate authority"),
            ("ALERT_UNSUPPORTED_CERTIFICATE", "unsupported certificate"),
            ("ALERT_HANDSHAKE_FAILURE", "handshake failure"), ("ALERT_DECRYPT_ERROR", "error decrypting message"),
        ]
        guard let match = words.first(where: { text.contains($0.alert) }) else { return "" }
        return " (remote error: tls: \(match.go))"
    }

    /// What `/health` says about peers refusing this member's certificate.
    public func certificateRefusals() -> [String] {
        refusals.withLock { all in
            all.values.sorted { $0.url < $1.url }.map { "\($0.message) (since \(RFC3339.string($0.since)))" }
        }
    }

    /// Drops senders of members no longer in the cluster.
    func prune() {
        guard let node else { return }
        // A remote is needed only until the table lists the member or its removal.
        remotes.withLock { remotes in
            remotes = remotes.filter { id, _ in node.members.member(id) == nil && !node.members.isRemoved(id) }
        }
        let gone = Set(senders.withLock { Array($0.keys) }.filter { peerURLs(of: $0) == nil })
        let stale = senders.withLock { senders -> [PeerSender] in gone.compactMap { senders.removeValue(forKey: $0) } }
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

extension ListenURL {
    /// The gRPC target for dialling this URL. Literal addresses are not resolved, and, as important, not sent as
    /// TLS server names: SNI may only carry a host name, and NIOSSL refuses to dial an IP address given as one.
    var peerTarget: any ResolvableTarget {
        if let unixPath { return .unixDomainSocket(path: unixPath) }
        if host.contains(":") { return .ipv6(address: host, port: port) }
        if host.allSatisfy({ $0.isNumber || $0 == "." }) { return .ipv4(address: host, port: port) }
        return .dns(host: host, port: port)
    }
}
