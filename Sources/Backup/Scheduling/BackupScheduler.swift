import Foundation

/// Decides when to back up and when to prune: a pure state machine with no clock, thread or I/O of its own.
///
/// Its caller (normally `BackupRunner`) feeds it events — a periodic tick with the time and whether this member leads,
/// and the end of each backup or prune — and performs the `Action`s it returns. Keeping the decisions here, as a value
/// type, lets tests walk through leader changes, failures and clock jumps step by step and check every transition.
///
/// Rules:
/// - `interval` 0 disables everything.
/// - Only the leader backs up; losing leadership while a backup runs asks for it to be cancelled.
/// - Never two backups at once: a new one starts only after the previous one has reported its end, even across
///   leadership changes.
/// - A backup is due `interval` after the newest backup known to exist (its creation time), so a new leader that
///   learned of a recent backup does not take another straight away; with none known, a backup is due at once.
/// - Attempts start at least `interval` apart, retries included. After `n` consecutive failures the next attempt waits
///   `interval × 2^(n−1)`, capped at `maxRetryDelay` (never below `interval`): a store that keeps failing is not
///   hammered, and the first retry comes when the next regular backup would have.
/// - After each success, prune (one prune at a time).
/// - A clock that jumped backwards cannot postpone the next backup by more than the longest delay the rules allow.
public struct BackupScheduler: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Time between backups; 0 disables backups. Default 15 minutes.
        public var interval: TimeInterval
        /// Longest wait between attempts after repeated failures. Default 1 hour.
        public var maxRetryDelay: TimeInterval

        public init(interval: TimeInterval = 15 * 60, maxRetryDelay: TimeInterval = 3600) {
            self.interval = max(0, interval)
            self.maxRetryDelay = maxRetryDelay
        }

        public var isEnabled: Bool { interval > 0 }
    }

    /// One backup attempt.
    public struct Attempt: Sendable, Equatable {
        /// 1 for the first try after a success (or ever), 2 for the first retry, ...
        public var number: Int
        public var started: Date
    }

    public enum State: Sendable, Equatable {
        /// `interval` is 0.
        case disabled
        /// Not the leader, nothing running.
        case standby
        /// Leader; the next backup starts at `until`.
        case waiting(until: Date)
        /// Leader; a backup is running.
        case running(Attempt)
        /// Leadership was lost while a backup ran; cancellation was requested and its end is awaited.
        case cancelling(Attempt)
    }

    public enum Action: Sendable, Equatable {
        /// Take a backup now and report its end with `onBackupFinished`.
        case startBackup(Attempt)
        /// Cancel the running backup (it still reports its end with `onBackupFinished`).
        case cancelBackup
        /// Apply the retention policy and remove expired backups and old orphans; report with `onPruneFinished`.
        case prune
    }

    /// What a finished backup produced.
    public struct Completed: Sendable, Equatable {
        public var name: BackupName
        public var size: Int64

        public init(name: BackupName, size: Int64) {
            self.name = name
            self.size = size
        }
    }

    public enum Outcome: Sendable, Equatable {
        case succeeded(Completed)
        case failed(String)
        case cancelled
    }

    public let configuration: Configuration
    public private(set) var state: State
    private var isLeader = false
    private var leaderSince: Date?
    private var lastAttemptStart: Date?
    private var newestBackup: Date?
    private var consecutiveFailures = 0
    private var lastError: String?
    private var lastFailure: Date?
    private var lastSuccess: Date?
    private var lastBackupName: BackupName?
    private var lastDuration: TimeInterval?
    private var lastSize: Int64?
    private var pruning = false
    /// The time of the latest event, to recompute the due time when the store reports a newer backup.
    private var lastNow: Date?
    private var lastPruneError: String?

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        state = configuration.isEnabled ? .standby : .disabled
    }

    // MARK: Events

    /// A periodic tick (every few seconds). Starts a due backup, or cancels a running one when leadership was lost.
    public mutating func onTick(now: Date, isLeader leading: Bool) -> [Action] {
        if case .disabled = state { return [] }
        lastNow = now
        if leading && !isLeader { leaderSince = now }
        if !leading { leaderSince = nil }
        isLeader = leading
        switch state {
        case .disabled:
            return []
        case .standby:
            guard leading else { return [] }
            state = .waiting(until: nextDue(now: now))
            return startIfDue(now: now)
        case .waiting(let until):
            guard leading else {
                state = .standby
                return []
            }
            // A clock that went backwards must not push the next backup beyond what the rules allow from now.
            let latest = now.addingTimeInterval(longestDelay)
            if until > latest { state = .waiting(until: latest) }
            return startIfDue(now: now)
        case .running(let attempt):
            guard leading else {
                state = .cancelling(attempt)
                return [.cancelBackup]
            }
            return []
        case .cancelling:
            return []
        }
    }

    /// The backup started by `.startBackup` ended (successfully, with an error, or cancelled).
    public mutating func onBackupFinished(_ outcome: Outcome, now: Date) -> [Action] {
        let attempt: Attempt
        switch state {
        case .running(let a), .cancelling(let a): attempt = a
        default: return []  // Not expecting one (a duplicate report); nothing to do.
        }
        lastNow = now
        var actions: [Action] = []
        switch outcome {
        case .succeeded(let completed):
            consecutiveFailures = 0
            lastError = nil
            lastSuccess = now
            lastDuration = max(0, now.timeIntervalSince(attempt.started))
            lastSize = completed.size
            lastBackupName = completed.name
            noteBackupExists(createdAt: completed.name.time)
            if isLeader && !pruning {
                pruning = true
                actions.append(.prune)
            }
        case .failed(let message):
            consecutiveFailures += 1
            lastError = message
            lastFailure = now
        case .cancelled:
            break
        }
        state = isLeader ? .waiting(until: nextDue(now: now)) : .standby
        return actions + (isLeader ? startIfDue(now: now) : [])
    }

    /// A prune ended. `newestBackup` is the creation time of the newest complete backup it saw, if it listed any.
    public mutating func onPruneFinished(newestBackup: Date?, error: String?) {
        pruning = false
        lastPruneError = error
        if let newestBackup { noteBackupExists(createdAt: newestBackup) }
    }

    /// The store was listed (e.g. at start-up) and its newest complete backup was created at `newestBackup`.
    public mutating func onBackupsListed(newestBackup: Date?) {
        if let newestBackup { noteBackupExists(createdAt: newestBackup) }
        if case .waiting = state, let lastNow { state = .waiting(until: nextDue(now: lastNow)) }
    }

    // MARK: Status

    public var status: BackupStatus {
        var running = false
        var next: Date?
        switch state {
        case .running, .cancelling: running = true
        case .waiting(let until): next = until
        case .disabled, .standby: break
        }
        return BackupStatus(
            enabled: configuration.isEnabled, isLeader: isLeader, backupInProgress: running,
            interval: configuration.interval, lastSuccess: lastSuccess, lastBackupName: lastBackupName?.rawValue,
            lastDuration: lastDuration, lastSize: lastSize, consecutiveFailures: consecutiveFailures,
            lastError: lastError, lastFailure: lastFailure, newestBackup: newestBackup, nextAttempt: next,
            lastPruneError: lastPruneError)
    }

    /// Why backups are unhealthy at `now`, or nil when they are fine (or not this member's job).
    ///
    /// Only the leader judges: it is the member that takes backups. Unhealthy when the newest backup known (or, with
    /// none, the moment this member became leader) is more than twice the interval old.
    public func healthProblem(now: Date) -> String? {
        guard configuration.isEnabled, isLeader, let reference = newestBackup ?? leaderSince else { return nil }
        let age = now.timeIntervalSince(reference)
        guard age > 2 * configuration.interval else { return nil }
        var reason =
            newestBackup == nil
            ? "no backup yet, leader for \(formatDuration(age)) (interval \(formatDuration(configuration.interval)))"
            : "newest backup is \(formatDuration(age)) old (interval \(formatDuration(configuration.interval)))"
        if consecutiveFailures > 0, let lastError {
            reason +=
                "; \(consecutiveFailures) consecutive failure\(consecutiveFailures == 1 ? "" : "s"), last: \(lastError)"
        }
        return reason
    }

    // MARK: Rules

    /// The longest any rule can make a leader wait for its next attempt.
    private var longestDelay: TimeInterval {
        max(configuration.interval, configuration.maxRetryDelay)
    }

    /// Delay after `failures` consecutive failures: interval, 2×, 4×, ... capped at `maxRetryDelay` (never below the
    /// interval).
    func retryDelay(failures: Int) -> TimeInterval {
        guard failures > 0 else { return configuration.interval }
        let doubled = configuration.interval * pow(2, Double(min(failures - 1, 30)))
        return max(configuration.interval, min(doubled, configuration.maxRetryDelay))
    }

    private func nextDue(now: Date) -> Date {
        var due = Date.distantPast
        if let newestBackup { due = newestBackup.addingTimeInterval(configuration.interval) }
        if let lastAttemptStart {
            due = max(due, lastAttemptStart.addingTimeInterval(retryDelay(failures: consecutiveFailures)))
        }
        return min(due, now.addingTimeInterval(longestDelay))
    }

    private mutating func startIfDue(now: Date) -> [Action] {
        guard case .waiting(let until) = state, isLeader, now >= until else { return [] }
        let attempt = Attempt(number: consecutiveFailures + 1, started: now)
        lastAttemptStart = now
        state = .running(attempt)
        return [.startBackup(attempt)]
    }

    private mutating func noteBackupExists(createdAt: Date) {
        if newestBackup == nil || createdAt > newestBackup! { newestBackup = createdAt }
    }
}

/// A snapshot of the scheduler for metrics, `/health` and `quorumctl`.
public struct BackupStatus: Sendable, Equatable {
    public var enabled: Bool
    public var isLeader: Bool
    public var backupInProgress: Bool
    public var interval: TimeInterval
    /// When this member's last successful backup finished.
    public var lastSuccess: Date?
    public var lastBackupName: String?
    /// How long the last successful backup took, snapshot and upload together.
    public var lastDuration: TimeInterval?
    /// Snapshot size of the last successful backup, in bytes.
    public var lastSize: Int64?
    public var consecutiveFailures: Int
    public var lastError: String?
    public var lastFailure: Date?
    /// Creation time of the newest backup known to exist (taken here or seen in the store).
    public var newestBackup: Date?
    /// When the next attempt is due (leader, idle); nil otherwise.
    public var nextAttempt: Date?
    public var lastPruneError: String?
}

/// `45s`, `15m`, `1h5m`, `3d4h`: compact durations for health messages and logs.
public func formatDuration(_ seconds: TimeInterval) -> String {
    let total = Int(max(0, seconds).rounded(.down))
    let days = total / 86_400
    let hours = total % 86_400 / 3600
    let minutes = total % 3600 / 60
    let secs = total % 60
    if days > 0 { return hours > 0 ? "\(days)d\(hours)h" : "\(days)d" }
    if hours > 0 { return minutes > 0 ? "\(hours)h\(minutes)m" : "\(hours)h" }
    if minutes > 0 { return secs > 0 ? "\(minutes)m\(secs)s" : "\(minutes)m" }
    return "\(secs)s"
}
