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

/// The receiving side of `quorumpb.Peer`: snapshots into the member, and the few requests other members need
/// answered by this one (membership, hashes). Raft messages and lease renewals (`quorumpb.Raft`) are served in
/// place by the transport: see `PeerFastRoutes`.
struct PeerService: Quorumpb_Peer.SimpleServiceProtocol {
    let node: MemberNode
    let handler: EtcdHandler
    let logger: Logger

    private func check(clusterID: UInt64, from: UInt64) throws {
        if let refusal = PeerCheck.refusal(clusterID: clusterID, from: from, node: node, logger: logger) {
            throw refusal.rpcError
        }
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
        var started: UInt64 = 0
        do {
            for try await chunk in request {
                if message == nil {
                    started = monotonicNanoseconds()
                    try check(clusterID: chunk.clusterID, from: chunk.from)
                    let m = try Message(serialized: chunk.message)
                    guard m.kind == .snapshot, let index = m.snapshot?.metadata.index else {
                        throw RPCError(code: .invalidArgument, message: "first chunk carries no snapshot message")
                    }
                    message = m
                    // A name of its own per transfer: two streams of the same snapshot must never share a file.
                    path =
                        node.config.dataDir
                        + "/member/snap/incoming-\(Identity.hex(chunk.from))-\(index)-\(UInt32.random(in: 0...UInt32.max)).db"
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
            let syncStarted = monotonicNanoseconds()
            try file.sync(dataOnly: false)
            let synced = monotonicNanoseconds()
            node.observer.snapshotDatabaseSaved(nanoseconds: synced - started, syncNanoseconds: synced - syncStarted)
            logger.info(
                "received database snapshot",
                metadata: [
                    "from": "\(Identity.hex(message.from))", "index": "\(message.snapshot!.metadata.index)",
                    "bytes": "\(written)",
                ])
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
        try await rpc { () async throws(EtcdError) in try await handler.memberPromote(request, .member) }
    }

    func hashKV(request: Etcdserverpb_HashKVRequest, context: ServerContext) async throws -> Etcdserverpb_HashKVResponse
    {
        try await rpc { () async throws(EtcdError) in try handler.hashKV(request, .member) }
    }
}

/// Who may talk to this member: the same cluster, and not a member that was removed from it.
enum PeerCheck {
    static func refusal(clusterID: UInt64, from: UInt64, node: MemberNode, logger: Logger) -> EtcdError? {
        if clusterID != node.clusterID {
            logger.warning(
                "request sent was ignored due to cluster ID mismatch",
                metadata: [
                    "remote-peer-id": "\(Identity.hex(from))",
                    "remote-peer-cluster-id": "\(Identity.hex(clusterID))",
                    "local-member-cluster-id": "\(Identity.hex(node.clusterID))",
                ])
            return EtcdError(.failedPrecondition, "etcdserver: request cluster ID mismatch")
        }
        if node.members.isRemoved(from) {
            logger.warning(
                "rejected stream from a removed member", metadata: ["remote-peer-id": "\(Identity.hex(from))"])
            return EtcdError(.permissionDenied, "etcdserver: the member has been permanently removed from the cluster")
        }
        return nil
    }
}
