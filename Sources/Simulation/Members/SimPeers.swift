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
    public private(set) var delivered = 0
    public private(set) var dropped = 0

    public init(scheduler: SimScheduler, network: FaultyNetwork) {
        self.scheduler = scheduler
        self.network = network
    }

    public func attach(_ member: MemberNode, dataDir: String) {
        members[member.memberID] = member
        dataDirs[member.memberID] = dataDir
    }

    public func detach(_ id: UInt64) { members[id] = nil }

    /// The transport a member sends through; its `from` is set once the member knows its id.
    public func outbox() -> Outbox { Outbox(peers: self) }

    fileprivate func send(_ messages: [Message], from: UInt64) {
        for message in messages {
            let arrivals = network.route(
                from: from, to: message.to, now: scheduler.now, rng: &scheduler.random)
            if arrivals.isEmpty { dropped += 1 }
            for time in arrivals {
                scheduler.at(time) { [self] in
                    guard let target = members[message.to], network.isConnected(from: from, to: message.to)
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
            from: from, to: message.to, now: scheduler.now, rng: &scheduler.random
        ).first
        scheduler.at(arrival ?? scheduler.now) { [self] in
            defer { try? FileSystem.remove(image.path) }
            var ok = false
            if arrival != nil, let target = members[message.to], let dir = dataDirs[message.to],
                network.isConnected(from: from, to: message.to)
            {
                let path = dir + "/member/snap/incoming-\(message.to)-\(scheduler.steps).db"
                if (try? FileManager.default.copyItem(atPath: image.path, toPath: path)) != nil {
                    target.receiveSnapshot(message, imagePath: path)
                    ok = true
                }
            }
            members[from]?.reportSnapshot(to: message.to, succeeded: ok)
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
