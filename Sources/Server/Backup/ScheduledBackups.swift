import Backup
import Foundation
import Logging
import Node

/// The member's scheduled backups: `Backup.BackupRunner` (the scheduling, the stores, the retention) given what only
/// a member can supply: whether it leads, and an etcd-format snapshot of its state.
final class ScheduledBackups: Sendable {
    let runner: BackupRunner
    let settings: BackupSettings

    init(settings: BackupSettings, node: MemberNode, name: String, logger: Logger, metrics: ServerMetrics) throws {
        self.settings = settings
        let store = try BackupDestination.makeStore(settings.destination, s3Endpoint: settings.s3Endpoint)
        let staging = URL(fileURLWithPath: node.config.dataDir + "/member/snap")
        // Tick often enough for short intervals (tests, demos), at most every 5 s.
        let tick = max(0.1, min(5, settings.interval / 4))
        let configuration = BackupRunner.Configuration(
            schedule: .init(interval: settings.interval),
            retention: RetentionPolicy(
                keepAllFor: 3600, hourlyFor: settings.hourlyRetention, dailyFor: settings.dailyRetention),
            tickInterval: .milliseconds(Int64(tick * 1000)), stagingDirectory: staging,
            quorumVersion: Version.quorum, etcdVersion: Version.etcdServer)
        runner = BackupRunner(
            configuration: configuration, store: store, isLeader: { node.status.isLeader },
            takeSnapshot: { url in
                try await node.commitBackend()
                let summary = try await BlockingWork.run("quorum-backup") {
                    try EtcdSnapshotExport.write(backend: node.backend, to: url.path, term: node.status.term)
                }
                return SnapshotInfo(
                    revision: summary.revision, raftIndex: summary.consistentIndex, clusterID: node.clusterID,
                    memberID: node.memberID, memberName: name)
            },
            log: { event in
                if case .failed = event { metrics.backupFailed() }
                switch event.level {
                case .info: logger.info("\(event.description)", metadata: ["backup-dir": "\(settings.destination)"])
                case .warning:
                    logger.warning("\(event.description)", metadata: ["backup-dir": "\(settings.destination)"])
                case .error: logger.error("\(event.description)", metadata: ["backup-dir": "\(settings.destination)"])
                }
            })
    }

    /// Runs until the task is cancelled.
    func run() async { await runner.run() }

    var status: BackupStatus { runner.currentStatus }
    func healthProblem() -> String? { runner.healthProblem() }
}
