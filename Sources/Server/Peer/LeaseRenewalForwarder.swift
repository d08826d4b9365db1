import EtcdProto
import GRPCCore
import Node
import Synchronization

/// Keep-alives that reach a follower go to the leader, the only member that tracks lease deadlines. They go in
/// batches: while one request is in flight the next renewals gather, so a hundred clients keeping leases alive
/// through a follower cost one round trip and one RPC at a time, not a hundred (group commit, for leases).
final class LeaseRenewalForwarder: Sendable {
    typealias Completion = @Sendable (Int64?) -> Void

    private struct State {
        var waiting: [(id: Int64, completion: Completion)] = []
        var sending = false
    }

    private let state = Mutex(State())
    private let node: MemberNode
    private let peers: PeerTransport

    init(node: MemberNode, peers: PeerTransport) {
        self.node = node
        self.peers = peers
    }

    /// Renews `id` at the leader; `completion` gets the new TTL (0 when the lease does not exist), or nil when
    /// the leader could not be asked or is no longer the leader (the caller retries).
    ///
    /// Returns false, and queues nothing, when `maxWaiting` renewals already wait for the batch in flight: the
    /// queue stays bounded however many keep-alives arrive while the leader is slow to answer.
    @discardableResult
    func renew(_ id: Int64, completion: @escaping Completion) -> Bool {
        let start = state.withLock { s -> Bool? in
            if s.waiting.count >= Self.maxWaiting { return nil }
            s.waiting.append((id, completion))
            if s.sending { return false }
            s.sending = true
            return true
        }
        guard let start else { return false }
        if start { Task { await drain() } }
        return true
    }

    /// Renewals that may wait for the next batch to the leader.
    static let maxWaiting = 50_000

    private func drain() async {
        while true {
            let batch = state.withLock { s -> [(id: Int64, completion: Completion)] in
                if s.waiting.isEmpty { s.sending = false }
                defer { s.waiting.removeAll() }
                return s.waiting
            }
            if batch.isEmpty { return }
            let ttls = await send(batch.map(\.id))
            for (index, waiter) in batch.enumerated() { waiter.completion(ttls?[index]) }
        }
    }

    private func send(_ ids: [Int64]) async -> [Int64]? {
        let leader = node.status.leader
        guard leader != 0, leader != node.memberID, let client = peers.raftClient(for: leader) else { return nil }
        var request = Quorumpb_LeaseRenewRequest()
        request.clusterID = node.clusterID
        request.ids = ids
        guard let answer = try? await client.leaseRenew(request, options: .peerRequest), !answer.notLeader,
            answer.ttls.count == ids.count
        else { return nil }
        return answer.ttls
    }
}
