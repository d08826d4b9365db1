import Raft

/// Sends Raft messages to peers. Delivery is best effort: Raft retries what is lost.
/// A single-member cluster uses `NoPeers`; the cluster issue adds the network transport.
public protocol RaftTransport: Sendable {
    func send(_ messages: [Message])
}

public struct NoPeers: RaftTransport {
    public init() {}
    public func send(_ messages: [Message]) {}
}
