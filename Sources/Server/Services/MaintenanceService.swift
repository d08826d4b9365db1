import Auth
import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import Node
import Storage

/// etcdserverpb.Maintenance over gRPC.
struct MaintenanceService: Etcdserverpb_Maintenance.SimpleServiceProtocol {
    let handler: EtcdHandler
    /// etcd's maintenance metrics (defragmentation, hashing, snapshots); nil where nobody scrapes them.
    var metrics: ServerMetrics? = nil

    func alarm(request: Etcdserverpb_AlarmRequest, context: ServerContext) async throws -> Etcdserverpb_AlarmResponse {
        try await rpc { () async throws(EtcdError) in
            try await handler.alarm(request, try await handler.currentCaller())
        }
    }

    func status(request: Etcdserverpb_StatusRequest, context: ServerContext) async throws
        -> Etcdserverpb_StatusResponse
    {
        try await rpc { () async throws(EtcdError) in try handler.status(try await handler.currentCaller()) }
    }

    func defragment(request: Etcdserverpb_DefragmentRequest, context: ServerContext) async throws
        -> Etcdserverpb_DefragmentResponse
    {
        let started = ContinuousClock.now
        metrics?.defragmentations(inFlight: 1)
        defer {
            metrics?.defragmentations(inFlight: -1)
            metrics?.defragmented(seconds: Self.seconds(since: started))
        }
        return try await rpc { () async throws(EtcdError) in
            try await handler.defragment(try await handler.currentCaller())
        }
    }

    func hash(request: Etcdserverpb_HashRequest, context: ServerContext) async throws -> Etcdserverpb_HashResponse {
        let started = ContinuousClock.now
        let hash = try await rpc { () async throws(EtcdError) in try handler.hash(try await handler.currentCaller()) }
        metrics?.hashed(seconds: Self.seconds(since: started), atRevision: false)
        return hash
    }

    func hashKV(request: Etcdserverpb_HashKVRequest, context: ServerContext) async throws
        -> Etcdserverpb_HashKVResponse
    {
        let started = ContinuousClock.now
        let hash = try await rpc { () async throws(EtcdError) in
            try handler.hashKV(request, try await handler.currentCaller())
        }
        metrics?.hashed(seconds: Self.seconds(since: started), atRevision: true)
        return hash
    }

    /// Streams an etcd snapshot: the bbolt database etcd would hold for this member's state, with etcd's sha256
    /// trailer as its last 32 bytes (`etcdctl snapshot save` checks it, `snapshot restore` needs it). The file is
    /// written from one consistent read of the database, then sent in chunks: memory stays small however large it is.
    func snapshot(
        request: Etcdserverpb_SnapshotRequest, response: RPCWriter<Etcdserverpb_SnapshotResponse>,
        context: ServerContext
    ) async throws {
        let caller = try await rpc { () async throws(EtcdError) in try await handler.currentCaller() }
        try await snapshot(caller) { try await response.write($0) }
    }

    /// Writes a snapshot for `caller` through `write` (the gRPC service and the JSON gateway); refusals are
    /// `EtcdError`s thrown before anything is written.
    func snapshot(_ caller: Caller, write: (Etcdserverpb_SnapshotResponse) async throws -> Void) async throws {
        let node = handler.node
        try await rpc { () async throws(EtcdError) in try handler.authorize(.snapshot, caller) }
        let path = node.config.dataDir + "/member/snap/snapshot-\(UInt64.random(in: 0...UInt64.max)).tmp"
        defer { try? FileSystem.remove(path) }
        // What the apply loop holds in SQLite's open transaction goes in first, so the snapshot is as of now.
        try await rpc { () async throws(EtcdError) in try await node.commitBackend() }
        let summary: EtcdSnapshotExport.Summary
        let started = ContinuousClock.now
        defer { metrics?.snapshotSent(seconds: Self.seconds(since: started)) }
        do {
            summary = try await BlockingWork.run("quorum-snapshot") {
                // A scratch file, read back below and removed: the client's copy is the one to make durable
                // (etcdctl fsyncs it), as etcd streams from its database without writing a file at all.
                try EtcdSnapshotExport.write(
                    backend: node.backend, to: path, term: node.status.term, durable: false)
            }
        } catch {
            throw RPCError(code: .internalError, message: "snapshot: \(error)")
        }
        let file = try File(path: path, writable: false)
        let total = try file.size
        var sent = 0
        var first = true
        let chunk = 32 * 1024
        while sent < total {
            let bytes = try file.read(count: min(chunk, total - sent), at: sent)
            if bytes.isEmpty { break }
            sent += bytes.count
            var message = Etcdserverpb_SnapshotResponse()
            if first {
                message.header = node.header(revision: summary.revision)
                message.version = Version.etcdServer
                first = false
            }
            message.remainingBytes = UInt64(total - sent)
            message.blob = Data(bytes)
            try await write(message)
        }
    }

    func moveLeader(request: Etcdserverpb_MoveLeaderRequest, context: ServerContext) async throws
        -> Etcdserverpb_MoveLeaderResponse
    {
        try await rpc { () async throws(EtcdError) in
            try await handler.moveLeader(request, try await handler.currentCaller())
        }
    }

    func downgrade(request: Etcdserverpb_DowngradeRequest, context: ServerContext) async throws
        -> Etcdserverpb_DowngradeResponse
    {
        try await rpc { () async throws(EtcdError) in
            try await handler.downgrade(request, try await handler.currentCaller())
        }
    }

    private static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}
