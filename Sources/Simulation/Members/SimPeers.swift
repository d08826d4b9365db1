import Foundation
import Node
import Raft
import Storage

/// The peer network of simulated members: Raft messages and snapshots between real `MemberNode`s, delayed,
/// dropped, duplicated and cut by a `FaultyNetwork` from the scheduler's seed.
public final class SimPeers: @unchecked Sendable {
    // @unchecked: confined to the scheduler's thread (every method asserts it through the scheduler).
    private let scheduler: SimScheduler
    public var network: FaultyNetwork
    /// Member id → the running member (absent while it is down).
    private var members: [UInt64: MemberNode] = [:]
    /// Member id → its data directory (where an incoming snapshot image is written).
    private var dataDirs: [UInt64: String] = [:]
    /// Member id → its simulated disk, when it has one (images are then files on it, not on the host).
    private var disks: [UInt64: SimFileSystem] = [:]
    public private(set) var delivered = 0
    public private(set) var dropped = 0
    /// Database snapshots delivered.
    public private(set) var snapshots = 0
    /// Members a peer refused as removed from the cluster (each was told so).
    public private(set) var toldRemoved: Set<UInt64> = []
    /// For each member, the members it heard from that its table does not list: it answers them all the same, as
    /// the real transport does from the peer URLs a batch carries (`PeerTransport.addRemote`).
    private var remotes: [UInt64: Set<UInt64>] = [:]

    public init(scheduler: SimScheduler, network: FaultyNetwork) {
        self.scheduler = scheduler
        self.network = network
    }

    public func attach(_ member: MemberNode, dataDir: String, disk: SimFileSystem? = nil) {
        members[member.memberID] = member
        dataDirs[member.memberID] = dataDir
        disks[member.memberID] = disk
    }

    public func detach(_ id: UInt64) { members[id] = nil }

    /// The transport a member sends through; its `from` is set once the member knows its id.
    public func outbox() -> Outbox { Outbox(peers: self) }

    /// Whether the real peer transport would carry a message: the sender dials only members its member table lists
    /// (`PeerTransport.sender(for:)`), and the receiver refuses a member the cluster removed (`PeerCheck`), which
    /// tells the sender it was removed.
    private func admitted(from: UInt64, to target: MemberNode) -> Bool {
        if let sender = members[from], sender.members.member(target.memberID) == nil,
            !(remotes[from]?.contains(target.memberID) ?? false) || sender.members.isRemoved(target.memberID)
        {
            return false
        }
        guard target.members.isRemoved(from) else {
            if target.members.member(from) == nil { remotes[target.memberID, default: []].insert(from) }
            return true
        }
        if let sender = members[from] {
            toldRemoved.insert(from)
            sender.removedByPeer()
        }
        return false
    }

    fileprivate func send(_ messages: [Message], from: UInt64) {
        for message in messages {
            // A message sent after a slow fsync leaves when the fsync returns.
            let arrivals = network.route(
                from: from, to: message.to, now: scheduler.effectiveNow, rng: &scheduler.random)
            if arrivals.isEmpty { dropped += 1 }
            for time in arrivals {
                scheduler.at(time) { [self] in
                    guard let target = members[message.to], network.isConnected(from: from, to: message.to),
                        admitted(from: from, to: target)
                    else {
                        dropped += 1
                        return
                    }
                    delivered += 1
                    target.receive(message)
                }
            }
        }
    }

    fileprivate func sendSnapshot(_ message: Message, image: SnapshotImage, from: UInt64) {
        let arrival = network.route(
            from: from, to: message.to, now: scheduler.effectiveNow, rng: &scheduler.random
        ).first
        let source = disks[from]
        scheduler.at(arrival ?? scheduler.effectiveNow) { [self] in
            defer {
                if let source { try? source.remove(image.path) } else { try? FileSystem.remove(image.path) }
            }
            var ok = false
            if arrival != nil, let target = members[message.to], let dir = dataDirs[message.to],
                network.isConnected(from: from, to: message.to), admitted(from: from, to: target)
            {
                let path = dir + "/member/snap/incoming-\(message.to)-\(scheduler.steps).db"
                if copy(image.path, from: source, to: path, on: disks[message.to]) {
                    target.receiveSnapshot(message, imagePath: path)
                    snapshots += 1
                    ok = true
                }
            }
            members[from]?.reportSnapshot(to: message.to, succeeded: ok)
        }
    }

    /// Copies an image between members' disks (simulated or the host's); false if either side failed.
    private func copy(_ path: String, from source: SimFileSystem?, to target: String, on disk: SimFileSystem?) -> Bool {
        do {
            let bytes: [UInt8]
            if let source {
                bytes = try source.open(path, writable: false, create: false, truncate: false, mode: 0o644).readAll()
            } else {
                bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            }
            if let disk {
                let file = try disk.open(target, writable: true, create: true, truncate: true, mode: 0o644)
                try file.write(bytes, at: 0)
                try file.sync(dataOnly: false)
            } else {
                try Data(bytes).write(to: URL(fileURLWithPath: target))
            }
            return true
        } catch {
            return false
        }
    }

    public final class Outbox: RaftTransport, @unchecked Sendable {
        // @unchecked: confined to the scheduler's thread, as `SimPeers`.
        let peers: SimPeers
        public var from: UInt64 = 0
        init(peers: SimPeers) { self.peers = peers }
        public func send(_ messages: [Message]) { peers.send(messages, from: from) }
        public func sendSnapshot(_ message: Message, image: SnapshotImage) {
            peers.sendSnapshot(message, image: image, from: from)
        }
    }
}
