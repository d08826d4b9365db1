import Crypto
import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import Logging
import MVCC
import Node
import Raft
import Storage

/// The receiving side of `quorumpb.Peer`: Raft messages and snapshots into the member, and the few requests
/// other members need answered by this one (lease renewals when it leads, membership, hashes).
struct PeerService: Quorumpb_Peer.SimpleServiceProtocol {
    let node: MemberNode
    let handler: EtcdHandler
    let logger: Logger
    let metrics: PeerMetrics?

    private func check(clusterID: UInt64, from: UInt64) throws {
        if clusterID != node.clusterID {
            logger.warning(
                "request sent was ignored due to cluster ID mismatch",
                metadata: [
                    "remote-peer-id": "\(Identity.hex(from))",
                    "remote-peer-cluster-id": "\(Identity.hex(clusterID))",
                    "local-member-cluster-id": "\(Identity.hex(node.clusterID))",
                ])
            throw RPCError(code: .failedPrecondition, message: "etcdserver: request cluster ID mismatch")
        }
        if node.members.isRemoved(from) {
            logger.warning("rejected stream from a removed member", metadata: ["remote-peer-id": "\(Identity.hex(from))"])
            throw RPCError(code: .permissionDenied, message: "etcdserver: the member has been permanently removed from the cluster")
        }
    }

    func raft(request: RPCAsyncSequence<Quorumpb_RaftBatch, any Error>, context: ServerContext) async throws
        -> Quorumpb_PeerAck
    {
        var checked = false
        for try await batch in request {
            if !checked {
                try check(clusterID: batch.clusterID, from: batch.from)
                checked = true
            }
            var messages: [Message] = []
            messages.reserveCapacity(batch.messages.count)
            for bytes in batch.messages {
                guard let message = try? Message(serialized: bytes) else {
                    throw RPCError(code: .invalidArgument, message: "malformed raft message from \(Identity.hex(batch.from))")
                }
                messages.append(message)
            }
            node.receive(messages)
            metrics?.received(bytes: batch.messages.reduce(0) { $0 + $1.count }, from: batch.from)
        }
        return Quorumpb_PeerAck()
    }

    func snapshot(request: RPCAsyncSequence<Quorumpb_SnapshotChunk, any Error>, context: ServerContext) async throws
        -> Quorumpb_SnapshotAck
    {
        var message: Message?
        var file: File?
        var path = ""
        var written = 0
        var digest = SHA256()
        var verified = false
        do {
            for try await chunk in request {
                if message == nil {
                    try check(clusterID: chunk.clusterID, from: chunk.from)
                    let m = try Message(serialized: chunk.message)
                    guard m.kind == .snapshot, let index = m.snapshot?.metadata.index else {
                        throw RPCError(code: .invalidArgument, message: "first chunk carries no snapshot message")
                    }
                    message = m
                    path = node.config.dataDir + "/member/snap/incoming-\(Identity.hex(chunk.from))-\(index).db"
                    file = try File(path: path, writable: true, create: true, truncate: true, mode: 0o600)
                }
                try file?.write(Array(chunk.data), at: written)
                written += chunk.data.count
                digest.update(data: chunk.data)
                if !chunk.sha256.isEmpty {
                    verified = Data(digest.finalize()) == chunk.sha256
                    if !verified { throw RPCError(code: .dataLoss, message: "snapshot checksum mismatch") }
                }
            }
            guard let message, let file, verified else {
                throw RPCError(code: .dataLoss, message: "snapshot stream ended early")
            }
            try file.sync(dataOnly: false)
            logger.info(
                "received database snapshot",
                metadata: ["from": "\(Identity.hex(message.from))", "index": "\(message.snapshot!.metadata.index)", "bytes": "\(written)"])
            node.receiveSnapshot(message, imagePath: path)
            var ack = Quorumpb_SnapshotAck()
            ack.ok = true
            return ack
        } catch {
            if !path.isEmpty { try? FileSystem.remove(path) }
            var ack = Quorumpb_SnapshotAck()
            ack.error = "\(error)"
            return ack
        }
    }

    func leaseRenew(request: Quorumpb_LeaseRenewRequest, context: ServerContext) async throws
        -> Quorumpb_LeaseRenewResponse
    {
        try check(clusterID: request.clusterID, from: 0)
        var response = Quorumpb_LeaseRenewResponse()
        if let ttl = node.leases.renew(request.id) {
            response.ttl = ttl
        } else {
            response.notLeader = true
        }
        return response
    }

    func leaseTimeToLive(request: Etcdserverpb_LeaseTimeToLiveRequest, context: ServerContext) async throws
        -> Etcdserverpb_LeaseTimeToLiveResponse
    {
        guard node.status.isLeader else { throw EtcdError.notLeader.rpcError }
        return try await rpc { () async throws(EtcdError) in try await handler.localLeaseTimeToLive(request) }
    }

    func members(request: Quorumpb_MembersRequest, context: ServerContext) async throws -> Quorumpb_MembersResponse {
        var response = Quorumpb_MembersResponse()
        response.clusterID = node.clusterID
        response.members = node.members.all.map(\.proto)
        return response
    }

    func memberPromote(request: Etcdserverpb_MemberPromoteRequest, context: ServerContext) async throws
        -> Etcdserverpb_MemberPromoteResponse
    {
        try await rpc { () async throws(EtcdError) in try await handler.memberPromote(request) }
    }

    func hashKV(request: Etcdserverpb_HashKVRequest, context: ServerContext) async throws -> Etcdserverpb_HashKVResponse {
        try await rpc { () async throws(EtcdError) in try handler.hashKV(request) }
    }
}
