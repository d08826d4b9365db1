import Foundation
import Synchronization

/// The wall clock and sleeping, injected so tests drive time by hand.
public protocol BackupClock: Sendable {
    func now() -> Date
    func sleep(for duration: Duration) async throws
}

/// The real clock.
public struct SystemBackupClock: BackupClock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}

/// What the snapshot producer reports about the snapshot file it wrote.
public struct SnapshotInfo: Sendable, Equatable {
    /// etcd revision the snapshot holds.
    public var revision: Int64
    /// Raft index it was taken at.
    public var raftIndex: UInt64
    public var clusterID: UInt64
    /// This member.
    public var memberID: UInt64
    public var memberName: String

    public init(revision: Int64, raftIndex: UInt64, clusterID: UInt64, memberID: UInt64, memberName: String) {
        self.revision = revision
        self.raftIndex = raftIndex
        self.clusterID = clusterID
        self.memberID = memberID
        self.memberName = memberName
    }
}

/// Something worth logging, handed to the runner's log callback.
public enum BackupEvent: Sendable, Equatable, CustomStringConvertible {
    case started(attempt: Int)
    case succeeded(name: String, size: Int64, duration: TimeInterval)
    case failed(attempt: Int, error: String)
    /// Cancelled because leadership was lost or the runner stopped.
    case cancelled
    case pruned(PruneReport)
    case pruneFailed(String)
    /// The start-up listing of the store failed (backups continue; the first one may come earlier than needed).
    case listFailed(String)

    public enum Level: Sendable { case info, warning, error }

    public var level: Level {
        switch self {
        case .started, .succeeded, .cancelled: return .info
        case .pruned(let report): return report.failures.isEmpty ? .info : .warning
        case .listFailed: return .warning
        case .failed, .pruneFailed: return .error
        }
    }

    public var description: String {
        switch self {
        case .started(let attempt):
            return attempt == 1 ? "backup started" : "backup started (attempt \(attempt))"
        case .succeeded(let name, let size, let duration):
            return "backup \(name) stored: \(size) bytes in \(String(format: "%.1f", duration))s"
        case .failed(let attempt, let error):
            return "backup failed (attempt \(attempt)): \(error)"
        case .cancelled:
            return "backup cancelled (no longer leader, or stopping)"
        case .pruned(let r):
            var text = "pruned backups: kept \(r.kept.count), deleted \(r.deleted.count)"
            if !r.orphansDeleted.isEmpty { text += ", removed \(r.orphansDeleted.count) orphaned" }
            if !r.failures.isEmpty { text += "; failures: " + r.failures.joined(separator: "; ") }
            return text
        case .pruneFailed(let error):
            return "pruning backups failed: \(error)"
        case .listFailed(let error):
            return "listing backups failed: \(error)"
        }
    }
}

/// Drives a `BackupScheduler` in real time and carries out its actions: takes the snapshot through the injected
/// closure, hashes it, writes the manifest and stores both, prunes after each success, cancels when leadership is lost.
///
/// Wiring (the integrator provides): a `BackupStore`; `isLeader` (cheap and synchronous: read the node's current
/// role, it is called every tick); `takeSnapshot`, which writes an etcd-format snapshot to the given file URL (creating or truncating it) and
/// returns what it holds; a staging directory on the same machine for that file; a log callback. Then
/// `Task { await runner.run() }` and cancel that task on shutdown. `currentStatus` and `healthProblem()` can be read
/// synchronously from any thread (metrics, `/health`).
public actor BackupRunner {
    public struct Configuration: Sendable {
        public var schedule: BackupScheduler.Configuration
        public var retention: RetentionPolicy
        /// Orphans younger than this are left alone (another member may still be writing them).
        public var orphanGracePeriod: TimeInterval
        /// How often the scheduler is consulted. Leadership loss is noticed within one tick.
        public var tickInterval: Duration
        /// Where the snapshot is written before it is stored (one file, `quorum-backup.db.partial`, removed after).
        public var stagingDirectory: URL
        public var quorumVersion: String
        /// etcd API version recorded in manifests, e.g. "3.5.0".
        public var etcdVersion: String

        public init(
            schedule: BackupScheduler.Configuration = .init(), retention: RetentionPolicy = .default,
            orphanGracePeriod: TimeInterval = 3600, tickInterval: Duration = .seconds(5), stagingDirectory: URL,
            quorumVersion: String, etcdVersion: String
        ) {
            self.schedule = schedule
            self.retention = retention
            self.orphanGracePeriod = orphanGracePeriod
            self.tickInterval = tickInterval
            self.stagingDirectory = stagingDirectory
            self.quorumVersion = quorumVersion
            self.etcdVersion = etcdVersion
        }
    }

    public let configuration: Configuration
    public let store: any BackupStore
    private let clock: any BackupClock
    private let isLeader: @Sendable () -> Bool
    private let takeSnapshot: @Sendable (URL) async throws -> SnapshotInfo
    private let log: @Sendable (BackupEvent) -> Void
    private var scheduler: BackupScheduler
    /// A copy of the scheduler after every step, readable without awaiting the actor.
    private let published: Mutex<BackupScheduler>
    private var backupTask: Task<Void, Never>?
    private var pruneTask: Task<Void, Never>?
    private var wasLeader = false
    private var stopping = false

    public init(
        configuration: Configuration, store: any BackupStore, clock: any BackupClock = SystemBackupClock(),
        isLeader: @escaping @Sendable () -> Bool,
        takeSnapshot: @escaping @Sendable (URL) async throws -> SnapshotInfo,
        log: @escaping @Sendable (BackupEvent) -> Void
    ) {
        self.configuration = configuration
        self.store = store
        self.clock = clock
        self.isLeader = isLeader
        self.takeSnapshot = takeSnapshot
        self.log = log
        scheduler = BackupScheduler(configuration: configuration.schedule)
        published = Mutex(scheduler)
    }

    /// Runs until the calling task is cancelled, ticking every `tickInterval`. On cancellation, cancels a running
    /// backup and waits for it and any prune to end.
    public func run() async {
        while !Task.isCancelled {
            await tick()
            do {
                try await clock.sleep(for: configuration.tickInterval)
            } catch {
                break
            }
        }
        // Stopping: whatever ends now starts nothing new.
        stopping = true
        backupTask?.cancel()
        pruneTask?.cancel()
        await waitUntilIdle()
    }

    /// One scheduler step at the clock's current time. When this member has just become leader, the store is listed
    /// first, so that it continues the previous leader's cadence instead of backing up again at once.
    public func tick() async {
        let leading = configuration.schedule.isEnabled && isLeader()
        if leading && !wasLeader {
            await loadNewestBackup()
        }
        wasLeader = leading
        perform(scheduler.onTick(now: clock.now(), isLeader: leading))
    }

    /// Lists the store and tells the scheduler about the newest complete backup. A failure is logged; the scheduler
    /// then goes by what it knew (at worst one backup earlier than needed).
    public func loadNewestBackup() async {
        do {
            let newest = try await store.list().first?.createdAt
            scheduler.onBackupsListed(newestBackup: newest)
            publish()
        } catch {
            log(.listFailed("\(error)"))
        }
    }

    /// Waits until no backup or prune is running.
    public func waitUntilIdle() async {
        while true {
            if let task = backupTask {
                await task.value
            } else if let task = pruneTask {
                await task.value
            } else {
                return
            }
        }
    }

    public var status: BackupStatus { scheduler.status }

    /// The scheduler's status as of its latest step, without awaiting the actor.
    public nonisolated var currentStatus: BackupStatus { published.withLock { $0.status } }

    /// Why backups are unhealthy now (see `BackupScheduler.healthProblem`), without awaiting the actor.
    public nonisolated func healthProblem() -> String? {
        published.withLock { $0 }.healthProblem(now: clock.now())
    }

    // MARK: Actions

    private func perform(_ actions: [BackupScheduler.Action]) {
        publish()
        for action in actions {
            switch action {
            case .startBackup(let attempt) where !stopping: startBackup(attempt)
            case .cancelBackup: backupTask?.cancel()
            case .prune where !stopping: startPrune()
            case .startBackup, .prune: break
            }
        }
    }

    private func publish() {
        let copy = scheduler
        published.withLock { $0 = copy }
    }

    private func startBackup(_ attempt: BackupScheduler.Attempt) {
        log(.started(attempt: attempt.number))
        let job = BackupJob(
            started: attempt.started, configuration: configuration, store: store, takeSnapshot: takeSnapshot)
        backupTask = Task {
            let outcome = await job.run()
            self.backupFinished(outcome, attempt: attempt)
        }
    }

    private func backupFinished(_ outcome: BackupScheduler.Outcome, attempt: BackupScheduler.Attempt) {
        backupTask = nil
        let now = clock.now()
        switch outcome {
        case .succeeded(let completed):
            log(
                .succeeded(
                    name: completed.name.rawValue, size: completed.size,
                    duration: max(0, now.timeIntervalSince(attempt.started))))
        case .failed(let error): log(.failed(attempt: attempt.number, error: error))
        case .cancelled: log(.cancelled)
        }
        perform(scheduler.onBackupFinished(outcome, now: now))
    }

    private func startPrune() {
        let store = store
        let policy = configuration.retention
        let grace = configuration.orphanGracePeriod
        let now = clock.now()
        pruneTask = Task {
            let result: Result<PruneReport, any Error>
            do {
                result = .success(
                    try await BackupPruner.prune(store: store, policy: policy, orphanGracePeriod: grace, now: now))
            } catch {
                result = .failure(error)
            }
            self.pruneFinished(result)
        }
    }

    private func pruneFinished(_ result: Result<PruneReport, any Error>) {
        pruneTask = nil
        switch result {
        case .success(let report):
            log(.pruned(report))
            scheduler.onPruneFinished(
                newestBackup: report.newestBackup, error: report.failures.isEmpty ? nil : report.failures.joined())
        case .failure(let error):
            if !(error is CancellationError) { log(.pruneFailed("\(error)")) }
            scheduler.onPruneFinished(newestBackup: nil, error: "\(error)")
        }
        publish()
    }
}

/// One backup, start to end, off the runner's actor: snapshot to the staging file, hash it, build the manifest, store.
struct BackupJob: Sendable {
    static let stagingFileName = "quorum-backup.db.partial"

    var started: Date
    var configuration: BackupRunner.Configuration
    var store: any BackupStore
    var takeSnapshot: @Sendable (URL) async throws -> SnapshotInfo

    func run() async -> BackupScheduler.Outcome {
        let staging = configuration.stagingDirectory.appendingPathComponent(Self.stagingFileName)
        defer { try? FileIO.removeFile(staging.path) }
        do {
            try FileIO.makeDirectories(configuration.stagingDirectory.path)
            try FileIO.removeFile(staging.path)
            let info = try await takeSnapshot(staging)
            try Task.checkCancellation()
            guard info.revision >= 0 else {
                return .failed("snapshot reported a negative revision \(info.revision)")
            }
            let digest = try FileDigest.compute(file: staging)
            let name = BackupName(time: started, revision: info.revision)
            let manifest = BackupManifest(
                name: name, clusterID: info.clusterID, memberID: info.memberID, memberName: info.memberName,
                raftIndex: info.raftIndex, quorumVersion: configuration.quorumVersion,
                etcdVersion: configuration.etcdVersion, snapshot: digest)
            try await store.put(name: name, snapshotFile: staging, manifest: manifest)
            return .succeeded(.init(name: name, size: digest.size))
        } catch {
            if error is CancellationError || Task.isCancelled { return .cancelled }
            return .failed("\(error)")
        }
    }
}
