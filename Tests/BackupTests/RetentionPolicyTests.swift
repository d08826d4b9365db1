import Foundation
import TestSupport
import Testing

@testable import Backup

@Suite struct RetentionPolicyTests {
    let policy = RetentionPolicy.default
    /// 2026-01-01T00:00:00Z.
    static let newYear = Date(timeIntervalSince1970: 1_767_225_600)

    static func at(_ text: String) -> Date { RFC3339.parse(text)! }

    static func backup(_ time: Date) -> (name: String, time: Date) {
        (BackupName(time: time, revision: Int64(time.timeIntervalSince1970)).rawValue, time)
    }

    /// What etcd-manager does in production: a backup every 15 minutes and a prune after each one, for a year.
    @Test func aYearOfQuarterHourBackupsPrunedAfterEachOne() {
        var kept: [(name: String, time: Date)] = []
        let steps = 366 * 96  // 2026-01-01T00:00Z ... 2027-01-02T00:00Z inclusive
        var now = Self.newYear
        var maxKept = 0
        for step in 0...steps {
            now = Self.newYear.addingTimeInterval(Double(step) * 900)
            kept.append(Self.backup(now))
            let keep = policy.keep(kept, now: now)
            kept.removeAll { !keep.contains($0.name) }
            maxKept = max(maxKept, kept.count)
        }
        #expect(now == Self.at("2027-01-02T00:00:00Z"))
        let ages = kept.map { now.timeIntervalSince($0.time) }.sorted()
        let lastHour = ages.filter { $0 < 3600 }
        let hourly = ages.filter { $0 >= 3600 && $0 < 168 * 3600 }
        let daily = ages.filter { $0 >= 168 * 3600 }
        // Everything from the last hour: now, -15m, -30m, -45m.
        #expect(lastHour == [0, 900, 1800, 2700])
        // One per hour from -1h to -167h. The hour starting exactly 168h ago has only its first backup left, which is
        // 168h old and so counts as that day's daily backup.
        #expect(hourly == (1...167).map { Double($0) * 3600 })
        // One per day, at midnight, from 168h (7 days) to 364 days ago; the one 365 days (8760h) ago has just expired.
        #expect(daily == (7...364).map { Double($0) * 86_400 })
        #expect(kept.count == 4 + 167 + 358)
        #expect(maxKept <= kept.count + 1)
        // Spacing: 15 minutes within the hour, an hour within the week, a day beyond.
        let times = kept.map(\.time).sorted(by: >)
        for (newer, older) in zip(times, times.dropFirst()) {
            let gap = newer.timeIntervalSince(older)
            let age = now.timeIntervalSince(older)
            #expect(
                gap == (age <= 3600 ? 900 : age <= 168 * 3600 ? 3600 : 86_400), "gap before \(RFC3339.format(older))")
        }
    }

    /// Applied once to the whole history (no pruning in between), the policy keeps one more hour and one more day:
    /// the backups that iterative pruning had already removed as non-first of their hour.
    @Test func aYearOfHistoryPrunedOnce() {
        let all = (0...(366 * 96)).map { Self.backup(Self.newYear.addingTimeInterval(Double($0) * 900)) }
        let now = all.last!.time
        let keep = policy.keep(all, now: now)
        let ages = all.filter { keep.contains($0.name) }.map { now.timeIntervalSince($0.time) }
        #expect(ages.filter { $0 < 3600 }.count == 4)
        #expect(ages.filter { $0 >= 3600 && $0 < 168 * 3600 }.count == 168)
        #expect(ages.filter { $0 >= 168 * 3600 }.count == 359)
        #expect(ages.max()! == 8760 * 3600 - 900)
    }

    @Test func emptyInputKeepsNothing() {
        #expect(policy.keep([(name: String, time: Date)](), now: referenceTime).isEmpty)
    }

    /// Exactly one hour old is no longer "everything from the last hour": it competes for its hour.
    @Test func keepAllBoundary() {
        let now = Self.at("2026-06-01T11:30:00Z")
        let a = Self.backup(Self.at("2026-06-01T10:20:00Z"))  // 70m: hour 10's first
        let b = Self.backup(Self.at("2026-06-01T10:30:00Z"))  // exactly 60m: hour 10, not first
        let c = Self.backup(Self.at("2026-06-01T10:30:01Z"))  // 59m59s: kept as recent
        #expect(policy.keep([a, b, c], now: now) == [a.name, c.name])
    }

    /// Exactly `hourlyFor` old competes for its day instead of its hour.
    @Test func hourlyBoundary() {
        let now = Self.at("2026-06-08T12:00:00Z")
        let dayStart = Self.backup(Self.at("2026-06-01T11:00:00Z"))  // 169h: first of June 1 among daily ones
        let exactly = Self.backup(Self.at("2026-06-01T12:00:00Z"))  // 168h: daily range, not first of June 1
        let inside = Self.backup(Self.at("2026-06-01T12:00:01Z"))  // just under 168h: first of its hour
        let newest = Self.backup(now)
        #expect(
            policy.keep([dayStart, exactly, inside, newest], now: now) == [dayStart.name, inside.name, newest.name])
    }

    /// Exactly `dailyFor` old is gone; a second younger stays.
    @Test func dailyBoundary() {
        let now = Self.at("2027-01-01T12:00:00Z")
        let expired = Self.backup(now.addingTimeInterval(-8760 * 3600))
        let kept = Self.backup(now.addingTimeInterval(-8760 * 3600 + 1))
        let newest = Self.backup(now)
        #expect(policy.keep([expired, kept, newest], now: now) == [kept.name, newest.name])
    }

    /// Buckets are UTC hours and days, not "an hour since the previous kept one".
    @Test func bucketsAlignToUTC() {
        let now = Self.at("2026-06-10T00:00:00Z")
        let backups = [
            "2026-06-09T20:59:59Z",  // hour 20's first: kept
            "2026-06-09T21:00:00Z",  // hour 21's first, one second later: kept
            "2026-06-09T21:59:59Z",  // hour 21 again: dropped
            "2026-06-01T23:59:59Z",  // June 1's first (daily range): kept
            "2026-06-02T00:00:00Z",  // June 2's first, one second later: kept
            "2026-06-02T23:00:00Z",  // June 2 again: dropped
            "2026-06-10T00:00:00Z",  // newest
        ].map { Self.backup(Self.at($0)) }
        #expect(policy.keep(backups, now: now) == Set([0, 1, 3, 4, 6].map { backups[$0].name }))
    }

    /// The newest backup survives even when everything is older than `dailyFor` (a clock jump, a long outage).
    @Test func newestIsAlwaysKept() {
        let now = Self.at("2030-01-01T00:00:00Z")
        let old = [Self.at("2026-01-01T00:00:00Z"), Self.at("2026-01-02T00:00:00Z")].map(Self.backup)
        #expect(policy.keep(old, now: now) == [old[1].name])
    }

    /// Same time, different names (two members racing): the lexically first is the bucket's choice; the result never
    /// depends on input order.
    @Test func tiesAreDeterministic() {
        let now = Self.at("2026-06-10T12:00:00Z")
        let t = Self.at("2026-06-10T09:00:00Z")
        let a = (name: BackupName(time: t, revision: 1).rawValue, time: t)
        let b = (name: BackupName(time: t, revision: 2).rawValue, time: t)
        let newest = Self.backup(now)
        #expect(policy.keep([a, b, newest], now: now) == [a.name, newest.name])
        #expect(policy.keep([b, a, newest], now: now) == [a.name, newest.name])
    }

    @Test func inputOrderDoesNotMatter() {
        let seed = testSeed("inputOrderDoesNotMatter")
        var generator = SeededRandom(seed: seed)
        let now = Self.at("2026-09-01T00:00:00Z")
        // Irregular backups over 400 days, some in the future.
        let backups = (0..<3000).map { _ in
            Self.backup(now.addingTimeInterval(-Double(Int.random(in: -7200..<(400 * 86_400), using: &generator))))
        }
        let expected = policy.keep(backups, now: now)
        for _ in 0..<5 {
            #expect(policy.keep(backups.shuffled(using: &generator), now: now) == expected)
        }
        // Sanity: the policy's invariants hold on irregular input too.
        for backup in backups where now.timeIntervalSince(backup.time) < 3600 {
            #expect(expected.contains(backup.name))
        }
        for backup in backups where now.timeIntervalSince(backup.time) >= 8760 * 3600 {
            #expect(!expected.contains(backup.name))
        }
    }

    /// A clock that goes backwards deletes nothing on the strength of the bad time: backups "from the future" have a
    /// negative age and are kept, and nothing that the forward clock kept is lost beyond what the policy allows.
    @Test func clockGoingBackwards() {
        var kept: [(name: String, time: Date)] = []
        var now = Self.newYear
        for step in 0..<(3 * 96) {
            now = Self.newYear.addingTimeInterval(Double(step) * 900)
            kept.append(Self.backup(now))
            let keep = policy.keep(kept, now: now)
            kept.removeAll { !keep.contains($0.name) }
        }
        let before = Set(kept.map(\.name))
        // The clock jumps back five hours.
        let earlier = now.addingTimeInterval(-5 * 3600)
        let keep = policy.keep(kept, now: earlier)
        for backup in kept where backup.time > earlier {
            #expect(keep.contains(backup.name), "future backup \(backup.name) deleted")
        }
        #expect(keep.isSubset(of: before))
        // Everything deleted at the earlier time would also have been deleted at the later (correct) time.
        let keepLater = policy.keep(kept, now: now)
        #expect(before.subtracting(keep).isSubset(of: before.subtracting(keepLater)) || keep == keepLater)
        // And the whole set is kept when the clock is before every backup.
        #expect(policy.keep(kept, now: Self.newYear.addingTimeInterval(-86_400)) == before)
    }

    @Test func customWindows() {
        let dailyOnly = RetentionPolicy(keepAllFor: 0, hourlyFor: 0, dailyFor: 3 * 86_400)
        let now = Self.at("2026-06-10T12:00:00Z")
        let backups = stride(from: 0, to: 5 * 86_400, by: 6 * 3600).map {
            Self.backup(now.addingTimeInterval(-Double($0)))
        }
        let keep = dailyOnly.keep(backups, now: now)
        // June 10 (12:00, 06:00, 00:00), June 9, June 8 and June 7 (partly inside 3 days) each keep their first
        // backup within the window; the newest is always kept.
        let keptTimes = backups.filter { keep.contains($0.name) }.map { RFC3339.format($0.time) }.sorted()
        #expect(
            keptTimes == [
                "2026-06-07T18:00:00Z", "2026-06-08T00:00:00Z", "2026-06-09T00:00:00Z",
                "2026-06-10T00:00:00Z", "2026-06-10T12:00:00Z",
            ])
    }
}
