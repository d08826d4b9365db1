import EtcdProto
import GRPCCore
import Logging
import NIOCore
import Node
import RPCTransport
import Raft
import SwiftProtobuf

/// `quorumpb.Raft`, served in place on the peer port's event loops: every Raft message between members passes
/// here, so it goes from the socket to the Raft loop's inbox without a task or a thread hop of its own.
enum PeerFastRoutes {
    static func make(
        node: MemberNode, transport: PeerTransport, logger: Logger, metrics: ServerMetrics, peerMetrics: PeerMetrics?
    ) -> [String: FastRoute] {
        let renewals = metrics.rpcCounters(service: "quorumpb.Raft", method: "LeaseRenew", type: "unary")
        return [
            "/quorumpb.Raft/Messages": FastRoute {
                RaftMessagesCall(node: node, transport: transport, logger: logger, metrics: peerMetrics)
            },
            "/quorumpb.Raft/LeaseRenew": FastRoute {
                UnaryCall<Quorumpb_LeaseRenewRequest>(counters: renewals) { request, responder in
                    if let refusal = PeerCheck.refusal(
                        clusterID: request.clusterID, from: 0, node: node, logger: logger)
                    {
                        return responder.respond(Result<Quorumpb_LeaseRenewResponse, EtcdError>.failure(refusal))
                    }
                    var response = Quorumpb_LeaseRenewResponse()
                    for id in request.ids {
                        guard let ttl = node.leases.renew(id) else {
                            response = Quorumpb_LeaseRenewResponse()
                            response.notLeader = true
                            break
                        }
                        response.ttls.append(ttl)
                    }
                    responder.respond(Result<Quorumpb_LeaseRenewResponse, EtcdError>.success(response))
                }
            },
        ]
    }
}

/// One member's stream of Raft message batches to this one. The first batch says who sends and for which
/// cluster; a stranger is refused with etcd's errors.
final class RaftMessagesCall: RPCCall {
    private let node: MemberNode
    private let transport: PeerTransport
    private let logger: Logger
    private let metrics: PeerMetrics?
    private var checked = false

    init(node: MemberNode, transport: PeerTransport, logger: Logger, metrics: PeerMetrics?) {
        self.node = node
        self.transport = transport
        self.logger = logger
        self.metrics = metrics
    }

    func received(_ message: ByteBuffer, stream: RPCStreamHandle) {
        let batch: Quorumpb_RaftBatch
        do {
            batch = try Quorumpb_RaftBatch(serializedBytes: message.readableBytesSpan)
        } catch {
            return stream.finish(
                code: RPCError.Code.invalidArgument.rawValue, message: "malformed raft batch: \(error)")
        }
        if !checked {
            if let refusal = PeerCheck.refusal(clusterID: batch.clusterID, from: batch.from, node: node, logger: logger)
            {
                return stream.finish(refusal)
            }
            checked = true
            // A sender this member's table does not list yet is answered where it says it is (`addRemote`).
            if node.members.member(batch.from) == nil { transport.addRemote(batch.from, peerURLs: batch.fromPeerUrls) }
        }
        var messages: [Raft.Message] = []
        messages.reserveCapacity(batch.messages.count)
        var bytes = 0
        for encoded in batch.messages {
            guard let decoded = try? Raft.Message(serialized: encoded) else {
                return stream.finish(
                    code: RPCError.Code.invalidArgument.rawValue,
                    message: "malformed raft message from \(Identity.hex(batch.from))")
            }
            messages.append(decoded)
            bytes += encoded.count
        }
        node.receive(messages)
        metrics?.received(bytes: bytes, from: batch.from)
    }

    func receivedEnd(stream: RPCStreamHandle) {
        stream.send(Quorumpb_PeerAck())
        stream.finish()
    }

    func cancelled() {}
}
