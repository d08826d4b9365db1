import EtcdProto
import Foundation
import Logging
import MVCC
import Raft
import Storage

extension MemberNode {
    // MARK: Opening

    /// Opens the member's data directory, creating and bootstrapping it on first start.
    public static func open(
        config: NodeConfig, transport: any RaftTransport = NoPeers(), logger: Logger,
        observer: any NodeObserver = NoObserver(),
        now: @escaping @Sendable () -> Int64 = { Int64(monotonicNanoseconds()) },
        onFatal: @escaping @Sendable (String) -> Void = { fatalError($0) },
        onRemoved: @escaping @Sendable () -> Void = {}, loop: (any SerialLoop)? = nil,
        applyLoop: (any SerialLoop)? = nil, watchLoop: (any SerialLoop)? = nil, raftSeed: UInt64? = nil,
        wallClock: @escaping @Sendable () -> Date = { Date() }
    ) throws -> MemberNode {
        try FileSystem.makeDirectory(config.dataDir + "/member/snap")
        let lock = try DirectoryLock(directory: config.dataDir)
        return try MemberNode(
            config: config, disk: PosixDisk(), vfs: nil, lock: lock, transport: transport, logger: logger,
            observer: observer, now: now, onFatal: onFatal, onRemoved: onRemoved,
            loop: loop ?? ThreadLoop(name: "quorum-raft"), applyLoop: applyLoop ?? ThreadLoop(name: "quorum-apply"),
            watchLoop: watchLoop ?? ThreadLoop(name: "quorum-watch"),
            raftSeed: raftSeed ?? UInt64.random(in: 1...UInt64.max), wallClock: wallClock)
    }

    /// Opens a member whose log and database live on `disk` (SQLite through `vfs`, a VFS over the same disk): a
    /// simulation's member on a simulated disk. Everything else is as `open`, every loop and clock given. The member
    /// sends no database snapshots from such a disk yet (`Backend.replace` and image files are POSIX-only), so a
    /// simulation keeps the whole log (`snapshotCount`).
    public static func open<D: Disk>(
        config: NodeConfig, disk: D, vfs: DiskVFS, transport: any RaftTransport, logger: Logger,
        now: @escaping @Sendable () -> Int64, onFatal: @escaping @Sendable (String) -> Void,
        onRemoved: @escaping @Sendable () -> Void = {}, loop: any SerialLoop, applyLoop: any SerialLoop,
        watchLoop: any SerialLoop, raftSeed: UInt64, wallClock: @escaping @Sendable () -> Date
    ) throws -> MemberNode {
        try disk.makeDirectory(config.dataDir + "/member/snap")
        return try MemberNode(
            config: config, disk: disk, vfs: vfs, lock: nil, transport: transport, logger: logger,
            observer: NoObserver(), now: now, onFatal: onFatal, onRemoved: onRemoved, loop: loop, applyLoop: applyLoop,
            watchLoop: watchLoop, raftSeed: raftSeed, wallClock: wallClock)
    }

    /// The member's write-ahead log, created (joining a cluster, or founding one) or opened and recovered
    /// (`Recovery`), with who the member is and the state Raft starts from. The database learns the founding or
    /// joining members here too.
    static func openLog<D: Disk>(
        config: NodeConfig, disk: D, backend: Backend, walOptions: WriteAheadLog.Options, logger: Logger
    ) throws -> (wal: any RaftLog, memberID: UInt64, clusterID: UInt64, state: PersistentState) {
        let wal: any RaftLog
        let memberID: UInt64
        let clusterID: UInt64
        let raftState: PersistentState
        let isNew = !WriteAheadLogOn<D>.exists(in: config.walDirectory, disk: disk)
        if isNew, let join = config.join {
            // Joining a running cluster: the members told us who we are; the leader sends the state.
            var metadata = Quorumpb_NodeMetadata()
            metadata.memberID = join.memberID
            metadata.clusterID = join.clusterID
            metadata.name = config.name
            let members = try ClusterMembers(backend: backend)
            try backend.beginBatch()
            for m in join.members { try members.upsert(m, backend: backend) }
            try backend.setMetaInt("consistent_index", 0)
            try backend.makeDurable()
            wal = try WriteAheadLogOn<D>.create(
                in: config.walDirectory, disk: disk, metadata: try metadata.serializedBytes(), options: walOptions)
            memberID = join.memberID
            clusterID = join.clusterID
            raftState = PersistentState()
            logger.info(
                "joining an existing cluster",
                metadata: [
                    "local-member-id": "\(Identity.hex(memberID))", "cluster-id": "\(Identity.hex(clusterID))",
                    "members": "\(join.members.count)",
                ])
        } else if isNew {
            guard config.initialClusterState == .new else {
                throw EtcdError(
                    .failedPrecondition,
                    "a member with --initial-cluster-state=existing must learn the cluster from its peers first")
            }
            let initial = config.initialCluster.map { member in
                MemberInfo(
                    id: Identity.memberID(peerURLs: member.peerURLs, token: config.initialClusterToken),
                    name: "", peerURLs: member.peerURLs, clientURLs: [], isLearner: false)
            }
            guard let me = config.initialCluster.first(where: { $0.name == config.name }) else {
                throw EtcdError(
                    .invalidArgument,
                    "couldn't find local name \"\(config.name)\" in the initial cluster configuration")
            }
            let myID = Identity.memberID(peerURLs: me.peerURLs, token: config.initialClusterToken)
            let newClusterID = Identity.clusterID(memberIDs: initial.map(\.id))
            var metadata = Quorumpb_NodeMetadata()
            metadata.memberID = myID
            metadata.clusterID = newClusterID
            metadata.name = config.name
            // The database learns the founding members before the log exists, so a crash between the two
            // leaves a database that the next start simply rewrites.
            let members = try ClusterMembers(backend: backend)
            try backend.beginBatch()
            for m in initial { try members.upsert(m, backend: backend) }
            try backend.setMetaInt("consistent_index", 0)
            try backend.makeDurable()
            // The log is born with the founding configuration in it (see `RaftNode.bootstrapState`): there is no
            // moment at which it exists without it.
            let founding = RaftNode.bootstrapState(peers: initial.map(\.id))
            wal = try WriteAheadLogOn<D>.create(
                in: config.walDirectory, disk: disk, metadata: try metadata.serializedBytes(),
                entries: founding.entries.map {
                    WALEntry(index: $0.index, term: $0.term, kind: $0.kind.rawValue, data: $0.data)
                },
                hardState: WALHardState(
                    term: founding.hardState.term, vote: founding.hardState.vote, commit: founding.hardState.commit),
                options: walOptions)
            memberID = myID
            clusterID = newClusterID
            raftState = founding
            logger.info(
                "bootstrapping a new cluster",
                metadata: [
                    "local-member-id": "\(Identity.hex(myID))", "cluster-id": "\(Identity.hex(newClusterID))",
                    "initial-cluster-size": "\(initial.count)",
                ])
        } else {
            let (log, recovery) = try WriteAheadLogOn<D>.open(in: config.walDirectory, disk: disk, options: walOptions)
            wal = log
            if let repaired = recovery.repairedTail {
                logger.warning("repaired torn write-ahead log tail", metadata: ["position": "\(repaired)"])
            }
            let metadata = try Quorumpb_NodeMetadata(serializedBytes: recovery.metadata)
            memberID = metadata.memberID
            clusterID = metadata.clusterID
            let disk = Recovery.Disk(
                hardState: recovery.hardState, snapshot: recovery.snapshot, entries: recovery.entries,
                appliedIndex: UInt64(try backend.metaInt("consistent_index") ?? 0),
                appliedTerm: try backend.metaInt("consistent_term").map { UInt64($0) },
                appliedConf: try backend.metaData("conf_state").flatMap { ConfStateCodec.decode(Array($0)) })
            let force =
                config.forceNewCluster
                ? Recovery.ForceNewCluster(
                    memberID: memberID,
                    members: Dictionary(
                        uniqueKeysWithValues: try ClusterMembers(backend: backend).all.map { ($0.id, $0) }))
                : nil
            let plan: Recovery.Plan
            do {
                plan = try Recovery.plan(disk, forceNewCluster: force)
            } catch {
                throw EtcdError(.failedPrecondition, "cannot restart from \(config.dataDir): \(error)")
            }
            for action in plan.actions {
                switch action {
                case .saveSnapshotMarker(let marker):
                    try wal.saveSnapshot(marker, replacingLog: false)
                case .append(let entries, let hs):
                    try wal.append(sync: true) { encoder in
                        for e in entries {
                            encoder.appendEntry(index: e.index, term: e.term, kind: e.kind.rawValue, data: e.data)
                        }
                        encoder.appendHardState(WALHardState(term: hs.term, vote: hs.vote, commit: hs.commit))
                    }
                    logger.warning(
                        "forcing a new one-member cluster: the other members are removed through the log",
                        metadata: [
                            "local-member-id": "\(Identity.hex(memberID))",
                            "removed-members": "\(plan.removedMembers.map(Identity.hex))",
                            "kept-through-index": "\(plan.recoveredThrough)",
                            "previous-commit-index": "\(recovery.hardState.commit)",
                        ])
                }
            }
            raftState = plan.state
            let hardState = plan.state.hardState
            let applied = plan.state.applied
            let entries = plan.state.entries
            logger.info(
                "restarting member",
                metadata: [
                    "local-member-id": "\(Identity.hex(memberID))", "cluster-id": "\(Identity.hex(clusterID))",
                    "commit-index": "\(hardState.commit)", "applied-index": "\(applied)",
                    "wal-entries": "\(entries.count)",
                ])
        }
        return (wal, memberID, clusterID, raftState)
    }
}
