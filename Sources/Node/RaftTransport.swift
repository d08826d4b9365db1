import Raft

/// A consistent image of the state machine at a snapshot's index, written by the leader for one follower.
public struct SnapshotImage: Sendable {
    public let path: String
    public let size: Int

    public init(path: String, size: Int) {
        self.path = path
        self.size = size
    }
}

/// Sends Raft messages to peers. Delivery is best effort: Raft retries what is lost. Snapshots travel on their
/// own path with the database image; the transport reports the outcome through `MemberNode.reportSnapshot`
/// (Raft keeps the follower in snapshot state until it hears) and removes the image file when done.
public protocol RaftTransport: Sendable {
    func send(_ messages: [Message])
    func sendSnapshot(_ message: Message, image: SnapshotImage)
}

/// The transport of a single-member cluster: there is nobody to talk to.
public struct NoPeers: RaftTransport {
    public init() {}
    public func send(_ messages: [Message]) {}
    public func sendSnapshot(_ message: Message, image: SnapshotImage) {}
}
