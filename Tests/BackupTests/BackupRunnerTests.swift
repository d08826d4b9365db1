import Foundation
import Synchronization
import TestSupport
import Testing

@testable import Backup

@Suite struct BackupRunnerTests {
    /// Everything a runner test needs: a manual clock, a local store, a leader flag, a snapshot producer that writes
    /// `snapshotSize` deterministic bytes (or fails / blocks as told), and the logged events.
    final class Harness: Sendable {
        let clock: ManualClock
        let storeDirectory = TemporaryDirectory("store")
        let staging = TemporaryDirectory("staging")
        let store: LocalDirectoryStore
        let leader = Shared(true)
        let events = Shared<[BackupEvent]>([])
        let snapshots = Shared(0)
        /// Failures to produce before succeeding.
        let failuresToInject = Shared(0)
        /// When set, each snapshot waits for it (cancellation still ends the wait).
        let hold = Shared<Gate?>(nil)
        /// Opened when a snapshot starts.
        let snapshotStarted = Shared<Gate?>(nil)
        let runner: BackupRunner

        init(
            start: Date = referenceTime, schedule: BackupScheduler.Configuration = .init(),
            clock sharedClock: ManualClock? = nil, store sharedStore: LocalDirectoryStore? = nil
        ) {
            clock = sharedClock ?? ManualClock(start)
            store = sharedStore ?? LocalDirectoryStore(directory: storeDirectory.url)
            let (clock, leader, events, snapshots, failures, hold, started) = (
                clock, leader, events, snapshots, failuresToInject, hold, snapshotStarted
            )
            runner = BackupRunner(
                configuration: .init(
                    schedule: schedule, tickInterval: .seconds(10), stagingDirectory: staging.url,
                    quorumVersion: "0.9.0-test", etcdVersion: "3.5.0"),
                store: store, clock: clock, isLeader: { leader.value },
                takeSnapshot: { url in
                    let n = snapshots.update { count -> Int in
                        count += 1
                        return count
                    }
                    started.value?.open()
                    if let gate = hold.value {
                        // Stands in for a long snapshot: ends when the gate opens or the task is cancelled.
                        await withTaskCancellationHandler {
                            await gate.wait()
                        } onCancel: {
                            gate.open()
                        }
                        try Task.checkCancellation()
                    }
                    let fail = failures.update { left -> Bool in
                        guard left > 0 else { return false }
                        left -= 1
                        return true
                    }
                    if fail { throw BackupError.io(path: url.path, operation: "write", detail: "injected failure") }
                    try writeRandomFile(url, size: 4096 + n, seed: UInt64(n))
                    return SnapshotInfo(
                        revision: Int64(1000 + n), raftIndex: UInt64(2000 + n), clusterID: 0xabc, memberID: 0x1f,
                        memberName: "etcd-b")
                }, log: { event in events.update { $0.append(event) } })
        }

        /// One tick at the clock's time, then wait for the backup and prune it may have started.
        func step() async {
            await runner.tick()
            await runner.waitUntilIdle()
        }

        var eventKinds: [String] {
            events.value.map { event in
                switch event {
                case .started: return "started"
                case .succeeded: return "succeeded"
                case .failed: return "failed"
                case .cancelled: return "cancelled"
                case .pruned: return "pruned"
                case .pruneFailed: return "pruneFailed"
                case .listFailed: return "listFailed"
                }
            }
        }
    }

    @Test func aDayOfBackupsWithPruning() async throws {
        let h = Harness(start: RFC3339.parse("2026-12-06T00:00:00Z")!)
        for _ in 0..<96 {
            for _ in 0..<90 {  // ticks every 10 s
                await h.step()
                h.clock.advance(by: 10)
            }
        }
        #expect(h.snapshots.value == 96)
        let listed = try await h.store.list()
        // Last hour (23:45, 23:30, 23:15, 23:00) and the first backup of each earlier hour (00:00 ... 22:00).
        #expect(listed.count == 4 + 23)
        #expect(listed.first?.name == "2026-12-06T23-45-00Z-1096")
        #expect(listed.last?.name == "2026-12-06T00-00-00Z-1001")
        let manifest = try #require(listed.first)
        #expect(manifest.clusterID == "abc")
        #expect(manifest.memberID == "1f")
        #expect(manifest.memberName == "etcd-b")
        #expect(manifest.raftIndex == 2096)
        #expect(manifest.quorumVersion == "0.9.0-test")
        #expect(manifest.etcdVersion == "3.5.0")
        #expect(manifest.snapshotSize == 4096 + 96)
        #expect(FileManager.default.subpaths(atPath: h.staging.path)?.isEmpty == true, "staging file removed")
        #expect(h.eventKinds.filter { $0 == "pruned" }.count == 96)
        #expect(!h.eventKinds.contains("failed"))
        let status = h.runner.currentStatus
        #expect(status.lastSize == Int64(4096 + 96))
        #expect(status.lastBackupName == "2026-12-06T23-45-00Z-1096")
        #expect(status.consecutiveFailures == 0)
        #expect(h.runner.healthProblem() == nil)
        // What the store kept is what the policy keeps for the whole day's backups.
        let all = (0..<96).map {
            BackupName(
                time: RFC3339.parse("2026-12-06T00:00:00Z")!.addingTimeInterval(Double($0) * 900),
                revision: 1001 + Int64($0))
        }
        let expected = RetentionPolicy.default.keep(all.map { ($0.rawValue, $0.time) }, now: all.last!.time)
        #expect(Set(listed.map(\.name)) == expected)
    }

    @Test func failuresAreLoggedRetriedAndReportedByHealth() async throws {
        let h = Harness()
        h.failuresToInject.value = 2
        await h.step()
        #expect(h.eventKinds == ["started", "failed"])
        #expect(
            h.events.value.last
                == .failed(attempt: 1, error: "write \(h.staging.path)/quorum-backup.db.partial: injected failure"))
        #expect(h.runner.currentStatus.consecutiveFailures == 1)
        h.clock.advance(by: 899)
        await h.step()
        #expect(h.snapshots.value == 1, "no retry before the interval")
        h.clock.advance(by: 1)
        await h.step()
        #expect(h.snapshots.value == 2)
        #expect(h.runner.currentStatus.consecutiveFailures == 2)
        // The second retry waits twice the interval; meanwhile health complains.
        h.clock.advance(by: 1200)
        await h.step()
        #expect(h.snapshots.value == 2)
        #expect(
            h.runner.healthProblem()
                == "no backup yet, leader for 35m (interval 15m); 2 consecutive failures, last: "
                + "write \(h.staging.path)/quorum-backup.db.partial: injected failure")
        h.clock.advance(by: 600)
        await h.step()
        #expect(h.snapshots.value == 3)
        #expect(h.eventKinds.suffix(3) == ["started", "succeeded", "pruned"])
        #expect(h.runner.healthProblem() == nil)
        #expect(try await h.store.list().count == 1)
    }

    @Test func losingLeadershipCancelsTheRunningBackup() async throws {
        let h = Harness()
        let started = Gate()
        h.snapshotStarted.value = started
        h.hold.value = Gate()
        await h.runner.tick()
        await started.wait()
        #expect(h.runner.currentStatus.backupInProgress)
        h.leader.value = false
        h.clock.advance(by: 10)
        await h.runner.tick()
        await h.runner.waitUntilIdle()
        #expect(h.eventKinds == ["started", "cancelled"])
        #expect(try await h.store.list().isEmpty)
        #expect(try await h.store.orphans().isEmpty)
        #expect(FileManager.default.subpaths(atPath: h.staging.path)?.isEmpty == true)
        #expect(!h.runner.currentStatus.backupInProgress)
        #expect(h.runner.currentStatus.consecutiveFailures == 0)
        #expect(h.runner.healthProblem() == nil, "followers do not judge")
    }

    @Test func neverTwoBackupsAtOnce() async throws {
        let h = Harness()
        let release = Gate()
        let started = Gate()
        h.hold.value = release
        h.snapshotStarted.value = started
        await h.runner.tick()
        await started.wait()
        // An hour of ticks while the first backup hangs.
        for _ in 0..<360 {
            h.clock.advance(by: 10)
            await h.runner.tick()
        }
        #expect(h.snapshots.value == 1)
        h.hold.value = nil
        release.open()
        await h.runner.waitUntilIdle()
        // The next backup was overdue, so it started as soon as the first had ended — not before.
        #expect(h.snapshots.value == 2)
        let kinds = h.eventKinds
        #expect(kinds.filter { $0 == "started" }.count == 2)
        #expect(kinds.firstIndex(of: "succeeded")! < kinds.lastIndex(of: "started")!)
        #expect(kinds.filter { $0 == "succeeded" }.count == 2)
    }

    /// The real loop: on becoming leader it lists the store (a backup 5 minutes old delays the first one by 10
    /// minutes), ticks on the clock, and stops cleanly when its task is cancelled.
    @Test func runLoop() async throws {
        let h = Harness()
        let scratch = TemporaryDirectory()
        try await LocalDirectoryStoreTests.putBackup(
            h.store, scratch: scratch, time: referenceTime.addingTimeInterval(-300), revision: 1)
        let loop = Task { await h.runner.run() }
        await h.clock.waitForSleepCalls(1)
        #expect(h.snapshots.value == 0)
        #expect(h.runner.currentStatus.nextAttempt == referenceTime.addingTimeInterval(600))
        for calls in 2...61 {  // ten minutes of ticks
            h.clock.advance(by: 10)
            await h.clock.waitForSleepCalls(calls)
        }
        await h.runner.waitUntilIdle()
        #expect(h.snapshots.value == 1)
        #expect(try await h.store.list().count == 2)
        loop.cancel()
        await loop.value
        #expect(h.eventKinds == ["started", "succeeded", "pruned"])
    }

    /// Two members sharing a store: when leadership moves, the new leader lists the store and continues the cadence.
    @Test func leadershipHandOverContinuesTheCadence() async throws {
        let a = Harness()
        let b = Harness(clock: a.clock, store: a.store)
        b.leader.value = false
        for _ in 0..<(65 * 6) {  // A leads for 65 minutes
            await a.step()
            await b.step()
            a.clock.advance(by: 10)
        }
        a.leader.value = false
        b.leader.value = true
        for _ in 0..<(35 * 6) {  // then B for 35
            await a.step()
            await b.step()
            a.clock.advance(by: 10)
        }
        // A took 03:15 ... 04:15, B 04:30 and 04:45; retention has since thinned hour 03 to its first backup.
        let times = try await a.store.list().map { RFC3339.format($0.createdAt) }.sorted()
        #expect(
            times == [
                "2026-12-06T03:15:00Z", "2026-12-06T04:00:00Z", "2026-12-06T04:15:00Z", "2026-12-06T04:30:00Z",
                "2026-12-06T04:45:00Z",
            ])
        #expect(a.snapshots.value == 5)
        #expect(b.snapshots.value == 2, "B backs up at 04:30 and 04:45, not on taking over at 04:20")
    }

    /// Cancelling `run` cancels the backup in progress and starts nothing new, even when the next one is overdue.
    @Test func stoppingCancelsTheBackupAndStartsNothing() async throws {
        let h = Harness()
        let started = Gate()
        h.snapshotStarted.value = started
        h.hold.value = Gate()
        let loop = Task { await h.runner.run() }
        await started.wait()
        await h.clock.waitForSleepCalls(1)
        h.clock.advance(by: 2000)  // the next backup is overdue once this one ends
        await h.clock.waitForSleepCalls(2)
        loop.cancel()
        await loop.value
        #expect(h.snapshots.value == 1)
        #expect(h.eventKinds == ["started", "cancelled"])
        #expect(try await h.store.list().isEmpty)
    }

    @Test func disabledRunnerDoesNothing() async throws {
        let h = Harness(schedule: .init(interval: 0))
        for _ in 0..<100 {
            await h.step()
            h.clock.advance(by: 60)
        }
        #expect(h.snapshots.value == 0)
        #expect(h.events.value.isEmpty)
        #expect(!h.runner.currentStatus.enabled)
    }

    @Test func eventsDescribeThemselves() {
        var report = PruneReport()
        report.kept = ["a", "b"]
        report.deleted = ["c"]
        report.failures = ["delete d: denied"]
        #expect(
            BackupEvent.pruned(report).description == "pruned backups: kept 2, deleted 1; failures: delete d: denied")
        #expect(BackupEvent.pruned(report).level == .warning)
        #expect(
            BackupEvent.succeeded(name: "n", size: 10, duration: 1.25).description
                == "backup n stored: 10 bytes in 1.2s"
                || BackupEvent.succeeded(name: "n", size: 10, duration: 1.25).description
                    == "backup n stored: 10 bytes in 1.3s"
        )
        #expect(BackupEvent.failed(attempt: 2, error: "x").level == .error)
        #expect(BackupEvent.started(attempt: 3).description == "backup started (attempt 3)")
    }
}
