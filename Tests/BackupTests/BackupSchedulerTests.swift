import Foundation
import Testing

@testable import Backup

@Suite struct BackupSchedulerTests {
    typealias Action = BackupScheduler.Action
    let t0 = referenceTime

    func at(_ seconds: TimeInterval) -> Date { t0.addingTimeInterval(seconds) }

    func success(_ started: Date, revision: Int64 = 7, size: Int64 = 1000) -> BackupScheduler.Outcome {
        .succeeded(.init(name: BackupName(time: started, revision: revision), size: size))
    }

    func started(_ actions: [Action]) -> BackupScheduler.Attempt? {
        for case .startBackup(let attempt) in actions { return attempt }
        return nil
    }

    @Test func disabledDoesNothing() {
        var s = BackupScheduler(configuration: .init(interval: 0))
        #expect(s.state == .disabled)
        for minute in 0..<120 {
            #expect(s.onTick(now: at(Double(minute) * 60), isLeader: true).isEmpty)
        }
        #expect(s.healthProblem(now: at(86_400)) == nil)
        #expect(!s.status.enabled)
    }

    @Test func followersNeverBackUp() {
        var s = BackupScheduler()
        for minute in 0..<120 {
            #expect(s.onTick(now: at(Double(minute) * 60), isLeader: false).isEmpty)
        }
        #expect(s.state == .standby)
        #expect(s.healthProblem(now: at(86_400)) == nil)
    }

    @Test func leaderBacksUpEveryIntervalAndPrunesAfterEachSuccess() {
        var s = BackupScheduler()
        var starts: [Date] = []
        var prunes = 0
        // Ten seconds per tick for five hours; each backup takes 40 seconds.
        var running: BackupScheduler.Attempt?
        for tick in 0..<(5 * 360) {
            let now = at(Double(tick) * 10)
            if let attempt = running, now.timeIntervalSince(attempt.started) >= 40 {
                let actions = s.onBackupFinished(success(attempt.started), now: now)
                #expect(actions == [.prune])
                prunes += 1
                s.onPruneFinished(newestBackup: attempt.started, error: nil)
                running = nil
            }
            let actions = s.onTick(now: now, isLeader: true)
            if let attempt = started(actions) {
                #expect(running == nil, "two backups at once")
                #expect(attempt.number == 1)
                running = attempt
                starts.append(now)
            } else {
                #expect(actions.isEmpty)
            }
        }
        #expect(starts.first == t0, "with no backup known, the first one starts at once")
        #expect(starts.count == 20)
        #expect(prunes == 20)
        for (a, b) in zip(starts, starts.dropFirst()) { #expect(b.timeIntervalSince(a) == 900) }
        let status = s.status
        #expect(status.lastDuration == 40)
        #expect(status.lastSize == 1000)
        #expect(status.consecutiveFailures == 0)
        #expect(status.lastBackupName == BackupName(time: starts.last!, revision: 7).rawValue)
    }

    @Test func aKnownRecentBackupDelaysTheFirstOne() {
        var s = BackupScheduler()
        s.onBackupsListed(newestBackup: at(-300))
        #expect(s.onTick(now: t0, isLeader: true).isEmpty)
        #expect(s.state == .waiting(until: at(600)))
        #expect(s.onTick(now: at(599), isLeader: true).isEmpty)
        #expect(started(s.onTick(now: at(600), isLeader: true)) != nil)
    }

    @Test func learningOfANewerBackupWhileWaitingPostponesTheNextOne() {
        var s = BackupScheduler()
        s.onBackupsListed(newestBackup: at(-1200))
        _ = s.onTick(now: t0, isLeader: true)  // due at -300: starts at once
        #expect(s.state == .running(.init(number: 1, started: t0)))
        _ = s.onBackupFinished(.failed("disk full"), now: at(5))
        s.onBackupsListed(newestBackup: at(10))  // another member's backup, just taken
        #expect(s.state == .waiting(until: at(910)))
    }

    @Test func leadershipLossCancelsAndNoSecondBackupUntilTheFirstEnds() {
        var s = BackupScheduler()
        let attempt = started(s.onTick(now: t0, isLeader: true))
        #expect(attempt != nil)
        #expect(s.onTick(now: at(10), isLeader: false) == [.cancelBackup])
        #expect(s.state == .cancelling(attempt!))
        // Leadership comes back before the cancelled backup has ended: nothing new starts.
        #expect(s.onTick(now: at(20), isLeader: true).isEmpty)
        #expect(s.onTick(now: at(2000), isLeader: true).isEmpty)
        #expect(s.status.backupInProgress)
        // It ends; as leader again, the next attempt is due an interval after the cancelled one started, which has
        // passed: it starts at once (but only now).
        let actions = s.onBackupFinished(.cancelled, now: at(2010))
        #expect(started(actions)?.started == at(2010))
        #expect(started(actions)?.number == 1, "a cancellation is not a failure")
        #expect(s.status.consecutiveFailures == 0)
    }

    @Test func cancelledThenStandbyThenLeaderRespectsTheInterval() {
        var s = BackupScheduler()
        _ = s.onTick(now: t0, isLeader: true)
        #expect(s.onTick(now: at(10), isLeader: false) == [.cancelBackup])
        #expect(s.onBackupFinished(.cancelled, now: at(12)).isEmpty)
        #expect(s.state == .standby)
        // Leader again a minute later: attempts stay an interval apart.
        #expect(s.onTick(now: at(60), isLeader: true).isEmpty)
        #expect(s.state == .waiting(until: at(900)))
    }

    @Test func aBackupThatSucceedsDespiteCancellationCountsButDoesNotPrune() {
        var s = BackupScheduler()
        _ = s.onTick(now: t0, isLeader: true)
        _ = s.onTick(now: at(10), isLeader: false)
        #expect(s.onBackupFinished(success(t0), now: at(30)).isEmpty, "no prune: no longer leader")
        #expect(s.status.lastSuccess == at(30))
        #expect(s.status.newestBackup == t0)
        #expect(s.state == .standby)
    }

    @Test func duplicateOrUnexpectedFinishReportsAreIgnored() {
        var s = BackupScheduler()
        #expect(s.onBackupFinished(success(t0), now: t0).isEmpty)
        #expect(s.status.lastSuccess == nil)
        _ = s.onTick(now: t0, isLeader: true)
        #expect(s.onBackupFinished(success(t0), now: at(5)) == [.prune])
        #expect(s.onBackupFinished(.failed("late duplicate"), now: at(6)).isEmpty)
        #expect(s.status.consecutiveFailures == 0)
    }

    /// Attempts after failures back off (15m, 30m, 60m, then every hour) and are never closer than the interval; a
    /// success restores the normal cadence.
    @Test func failuresBackOffButNeverRetryFasterThanTheInterval() {
        var s = BackupScheduler()
        var starts: [Date] = []
        var failuresLeft = 6
        for tick in 0..<(12 * 360) {
            let now = at(Double(tick) * 10)
            if case .running(let attempt) = s.state, now.timeIntervalSince(attempt.started) >= 20 {
                let outcome =
                    failuresLeft > 0 ? BackupScheduler.Outcome.failed("S3 unreachable") : success(attempt.started)
                if failuresLeft > 0 { failuresLeft -= 1 }
                let actions = s.onBackupFinished(outcome, now: now)
                if actions.contains(.prune) { s.onPruneFinished(newestBackup: nil, error: nil) }
                if let attempt = started(actions) { starts.append(attempt.started) }
            }
            if let attempt = started(s.onTick(now: now, isLeader: true)) {
                starts.append(attempt.started)
                #expect(attempt.number == min(7, starts.count) || failuresLeft == 0)
            }
        }
        let gaps = zip(starts, starts.dropFirst()).map { $1.timeIntervalSince($0) }
        #expect(Array(gaps.prefix(9)) == [900, 1800, 3600, 3600, 3600, 3600, 900, 900, 900])
        #expect(gaps.allSatisfy { $0 >= 900 })
        #expect(s.status.consecutiveFailures == 0)
        #expect(s.status.lastError == nil)
    }

    @Test func retryDelays() {
        let s = BackupScheduler(configuration: .init(interval: 600, maxRetryDelay: 3000))
        #expect((0...6).map { s.retryDelay(failures: $0) } == [600, 600, 1200, 2400, 3000, 3000, 3000])
        let long = BackupScheduler(configuration: .init(interval: 7200, maxRetryDelay: 3600))
        #expect(long.retryDelay(failures: 3) == 7200, "never below the interval")
    }

    @Test func aBackupLongerThanTheIntervalIsFollowedAtOnceButNotOverlapped() {
        var s = BackupScheduler()
        let first = started(s.onTick(now: t0, isLeader: true))!
        for tick in 1..<120 { #expect(s.onTick(now: at(Double(tick) * 10), isLeader: true).isEmpty) }
        let actions = s.onBackupFinished(success(first.started), now: at(1200))
        #expect(actions.first == .prune)
        #expect(started(actions)?.started == at(1200))
    }

    @Test func onlyOnePruneAtATime() {
        var s = BackupScheduler(configuration: .init(interval: 60))
        _ = s.onTick(now: t0, isLeader: true)
        #expect(s.onBackupFinished(success(t0), now: at(1)) == [.prune])
        _ = s.onTick(now: at(60), isLeader: true)
        #expect(s.onBackupFinished(success(at(60)), now: at(61)).isEmpty, "previous prune still running")
        s.onPruneFinished(newestBackup: at(60), error: "delete x: denied")
        #expect(s.status.lastPruneError == "delete x: denied")
        _ = s.onTick(now: at(120), isLeader: true)
        #expect(s.onBackupFinished(success(at(120)), now: at(121)) == [.prune])
    }

    /// Two members and a leadership hand-over: the new leader, having listed the store, continues the cadence instead
    /// of backing up again at once.
    @Test func leaderHandOverKeepsTheCadence() {
        var a = BackupScheduler()
        var b = BackupScheduler()
        var storeNewest: Date?
        var starts: [(member: String, at: Date)] = []
        for tick in 0..<(3 * 360) {
            let now = at(Double(tick) * 10)
            let aLeads = now < at(3600 + 300)
            for (member, leads) in [("a", aLeads), ("b", !aLeads)] {
                var s = member == "a" ? a : b
                if case .running(let attempt) = s.state, now.timeIntervalSince(attempt.started) >= 30 {
                    if s.onBackupFinished(success(attempt.started), now: now).contains(.prune) {
                        s.onPruneFinished(newestBackup: attempt.started, error: nil)
                    }
                    storeNewest = max(storeNewest ?? .distantPast, attempt.started)
                }
                if member == "b" && tick == 0 { s.onBackupsListed(newestBackup: storeNewest) }
                if leads && member == "b" && now == at(3600 + 300) {
                    s.onBackupsListed(newestBackup: storeNewest)  // what the runner does via its listings
                }
                if let attempt = started(s.onTick(now: now, isLeader: leads)) {
                    starts.append((member, attempt.started))
                }
                if member == "a" { a = s } else { b = s }
            }
        }
        #expect(starts.filter { $0.member == "a" }.map(\.at) == [t0, at(900), at(1800), at(2700), at(3600)])
        #expect(starts.filter { $0.member == "b" }.first?.at == at(4500), "b continues the cadence")
        #expect(starts.count == 12)
    }

    @Test func healthReportsAStaleNewestBackupOnTheLeader() {
        var s = BackupScheduler()
        _ = s.onTick(now: t0, isLeader: true)
        _ = s.onBackupFinished(success(t0), now: at(20))
        s.onPruneFinished(newestBackup: t0, error: nil)
        #expect(s.healthProblem(now: at(1800)) == nil, "exactly twice the interval is still fine")
        // Backups then fail for a while.
        var now = at(900)
        while now < at(4 * 3600) {
            if case .running = s.state { _ = s.onBackupFinished(.failed("AccessDenied"), now: now) }
            _ = s.onTick(now: now, isLeader: true)
            now = now.addingTimeInterval(10)
        }
        let problem = s.healthProblem(now: at(1860))
        #expect(problem?.hasPrefix("newest backup is 31m old (interval 15m)") == true, "\(problem ?? "nil")")
        #expect(problem?.contains("consecutive failures, last: AccessDenied") == true)
        // Followers do not judge.
        _ = s.onTick(now: now, isLeader: false)
        #expect(s.healthProblem(now: now) == nil)
    }

    @Test func healthWithoutAnyBackup() {
        var s = BackupScheduler()
        _ = s.onTick(now: t0, isLeader: true)
        _ = s.onBackupFinished(.failed("no space left on device"), now: at(5))
        #expect(s.healthProblem(now: at(1799)) == nil)
        #expect(
            s.healthProblem(now: at(2400))
                == "no backup yet, leader for 40m (interval 15m); 1 consecutive failure, last: no space left on device")
    }

    /// A clock that jumps back a day does not stop backups for a day: the wait is capped at the longest delay the
    /// rules allow (here the one-hour retry cap).
    @Test func clockJumpingBackwardsPostponesByAtMostTheLongestDelay() {
        var s = BackupScheduler()
        _ = s.onTick(now: t0, isLeader: true)
        _ = s.onBackupFinished(success(t0), now: at(10))
        s.onPruneFinished(newestBackup: t0, error: nil)
        #expect(s.state == .waiting(until: at(900)))
        let jumped = at(-86_400)
        #expect(s.onTick(now: jumped, isLeader: true).isEmpty)
        #expect(s.state == .waiting(until: jumped.addingTimeInterval(3600)))
        #expect(started(s.onTick(now: jumped.addingTimeInterval(3600), isLeader: true)) != nil)
    }

    @Test func statusReportsTheNextAttempt() {
        var s = BackupScheduler()
        _ = s.onTick(now: t0, isLeader: true)
        #expect(s.status.backupInProgress)
        #expect(s.status.nextAttempt == nil)
        _ = s.onBackupFinished(success(t0, size: 4096), now: at(12))
        #expect(s.status.nextAttempt == at(900))
        #expect(s.status.lastSize == 4096)
        #expect(s.status.lastDuration == 12)
        #expect(s.status.isLeader)
    }

    @Test func durations() {
        #expect(formatDuration(0) == "0s")
        #expect(formatDuration(59.9) == "59s")
        #expect(formatDuration(60) == "1m")
        #expect(formatDuration(61) == "1m1s")
        #expect(formatDuration(3600) == "1h")
        #expect(formatDuration(3900) == "1h5m")
        #expect(formatDuration(86_400 * 3 + 3600 * 4 + 59) == "3d4h")
        #expect(formatDuration(-5) == "0s")
    }
}
