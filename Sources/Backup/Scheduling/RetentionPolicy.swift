import Foundation

/// Which backups to keep, the way kops' etcd-manager keeps them:
///
/// - everything younger than `keepAllFor` (1 hour);
/// - then, for backups younger than `hourlyFor` (168 h), the earliest backup of each UTC hour;
/// - then, for backups younger than `dailyFor` (8760 h), the earliest backup of each UTC day;
/// - nothing older.
///
/// Keeping the *earliest* of each bucket (as etcd-manager does) makes the choice stable: later backups never enter an
/// older bucket, so the backup kept for an hour stays the one kept, and pruning after every backup deletes each
/// backup at most once instead of churning. Hour and day buckets are separate (etcd-manager shares one map between
/// them, so a day bucket and the midnight hour bucket can shadow each other near the 168 h boundary).
///
/// One deliberate addition: the newest backup is always kept, whatever its age. A clock that jumps years ahead, or a
/// cluster that could not back up for longer than `dailyFor`, must not end with no backup at all.
///
/// Backups dated in the future (the clock went backwards) have a negative age and fall in the keep-all window:
/// nothing is deleted on the strength of a time that cannot be trusted.
public struct RetentionPolicy: Sendable, Equatable {
    public var keepAllFor: TimeInterval
    public var hourlyFor: TimeInterval
    public var dailyFor: TimeInterval

    public static let `default` = RetentionPolicy()

    public init(
        keepAllFor: TimeInterval = 3600, hourlyFor: TimeInterval = 168 * 3600, dailyFor: TimeInterval = 8760 * 3600
    ) {
        self.keepAllFor = keepAllFor
        self.hourlyFor = hourlyFor
        self.dailyFor = dailyFor
    }

    /// The names among `backups` to keep at time `now`; every other name may be deleted. Input order does not matter;
    /// duplicate names are treated as one backup.
    public func keep(_ backups: [(name: String, time: Date)], now: Date) -> Set<String> {
        guard !backups.isEmpty else { return [] }
        var keep = Set<String>()
        // Earliest (time, name) per bucket; the name breaks ties so the result never depends on input order.
        var hours: [Int: (time: Date, name: String)] = [:]
        var days: [Int: (time: Date, name: String)] = [:]
        func earlier(_ a: (time: Date, name: String), _ b: (time: Date, name: String)?) -> Bool {
            guard let b else { return true }
            return a.time < b.time || (a.time == b.time && a.name < b.name)
        }
        var newest = backups[0]
        for backup in backups {
            if backup.time > newest.time || (backup.time == newest.time && backup.name > newest.name) {
                newest = backup
            }
            let age = now.timeIntervalSince(backup.time)
            if age < keepAllFor {
                keep.insert(backup.name)
            } else if age < hourlyFor {
                let bucket = Self.bucket(backup.time, 3600)
                if earlier((backup.time, backup.name), hours[bucket]) { hours[bucket] = (backup.time, backup.name) }
            } else if age < dailyFor {
                let bucket = Self.bucket(backup.time, 86_400)
                if earlier((backup.time, backup.name), days[bucket]) { days[bucket] = (backup.time, backup.name) }
            }
        }
        keep.insert(newest.name)
        for (_, chosen) in hours { keep.insert(chosen.name) }
        for (_, chosen) in days { keep.insert(chosen.name) }
        return keep
    }

    /// `keep` for manifests, by backup name and creation time.
    public func keep(_ manifests: [BackupManifest], now: Date) -> Set<String> {
        keep(manifests.map { (name: $0.name, time: $0.createdAt) }, now: now)
    }

    /// UTC-aligned bucket index (floor division, so times before 1970 bucket correctly too).
    static func bucket(_ time: Date, _ width: Double) -> Int {
        Int((time.timeIntervalSince1970 / width).rounded(.down))
    }
}
