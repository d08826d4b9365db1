import Chaos
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 15's power loss on real processes: members on `scripts/lossyfs.py` (FUSE), which forgets at a cut what
/// was not fsynced. The soak is `quorum-chaos --power-cuts N`.
@Suite(.serialized) struct PowerLossTests {
    static let script = ChaosTests.packageRoot + "/scripts/lossyfs.py"

    static func seed() -> UInt64 {
        UInt64(ProcessInfo.processInfo.environment["QUORUM_CHAOS_SEED"] ?? "") ?? UInt64.random(in: 1...999_999)
    }

    static func requireSupport() throws {
        try #require(Chaos.isSupported(), "network namespaces need root: run the suite as root (CI does)")
        try #require(
            LossyFileSystem.isSupported(script: script),
            "lossyfs needs root, /dev/fuse, python3 with fusepy and libfuse 2 (scripts/test.sh installs them)")
    }

    /// A run's options on the debug build, in a fresh work directory named after `label`, with a seed printed (and
    /// replayed from `QUORUM_CHAOS_SEED`, which repeats the choice of victims and timings).
    static func options(_ label: String) -> PowerLossOptions {
        let seed = Self.seed()
        print("power-loss (\(label)) seed \(seed) (QUORUM_CHAOS_SEED replays the choice of victims and timings)")
        return PowerLossOptions(
            seed: seed, binary: ChaosTests.packageRoot + "/.build/debug/quorum", lossyfs: Self.script,
            workDirectory: NSTemporaryDirectory() + "quorum-power-\(label)-\(UUID().uuidString.prefix(8))")
    }

    /// The file system itself: after a cut, a file keeps exactly what its last fsync made durable, and a directory
    /// exactly the entries its last fsync made durable.
    @Test func lossyfsKeepsOnlyWhatWasSynced() throws {
        try Self.requireSupport()
        let work = NSTemporaryDirectory() + "lossyfs-test-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: work) }
        let disk = LossyFileSystem(
            script: Self.script, backing: work + "/disk", mountPoint: work + "/mnt", log: work + "/lossyfs.log")
        defer { disk.kill() }
        try disk.mount()
        let root = work + "/mnt"

        func write(_ path: String, _ byte: UInt8, count: Int, at offset: Int, sync: Bool) throws {
            let fd = open(path, O_RDWR | O_CREAT, 0o644)
            try #require(fd >= 0, "open \(path): \(errno)")
            defer { close(fd) }
            let bytes = [UInt8](repeating: byte, count: count)
            #expect(pwrite(fd, bytes, count, off_t(offset)) == count)
            if sync { #expect(fsync(fd) == 0) }
        }
        func syncDirectory(_ path: String) {
            let fd = open(path, O_RDONLY | O_DIRECTORY)
            #expect(fd >= 0 && fsync(fd) == 0)
            close(fd)
        }
        func contents(_ path: String) -> [UInt8]? {
            FileManager.default.contents(atPath: path).map { [UInt8]($0) }
        }

        #expect(mkdir(root + "/d", 0o755) == 0)
        syncDirectory(root + "/d")
        syncDirectory(root)
        try write(root + "/d/synced", 0x41, count: 10_000, at: 0, sync: true)
        try write(root + "/d/synced", 0x42, count: 5_000, at: 10_000, sync: false)  // a tail never synced
        try write(root + "/d/synced", 0x43, count: 100, at: 0, sync: false)  // an overwrite never synced
        try write(root + "/d/unsynced", 0x44, count: 10_000, at: 0, sync: false)
        syncDirectory(root + "/d")  // both names are durable from here
        try write(root + "/d/late", 0x45, count: 100, at: 0, sync: true)  // data synced, its name never
        #expect(rename(root + "/d/unsynced", root + "/d/renamed") == 0)  // never synced either
        #expect(contents(root + "/d/synced")?.count == 15_000)
        let pending = try #require(disk.unsynced())
        #expect(pending.unsyncedFiles == 2 && pending.unsyncedBytes >= 15_000 && pending.unsyncedDirectories == 1)

        try disk.powerCut()

        #expect(disk.mounts == 2)
        #expect(contents(root + "/d/synced") == [UInt8](repeating: 0x41, count: 10_000))
        #expect(contents(root + "/d/unsynced") == [])
        #expect(!FileManager.default.fileExists(atPath: root + "/d/renamed"))
        #expect(!FileManager.default.fileExists(atPath: root + "/d/late"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/d").sorted() == ["synced", "unsynced"])
        #expect(disk.unsynced()?.unsyncedBytes == 0)
    }

    /// Power cuts on the leader, on a follower and on every member at once, with writers going on: nothing
    /// acknowledged is lost, revisions stay continuous, the members converge, and the cuts did drop data.
    @Test func acknowledgedWritesSurvivePowerCuts() async throws {
        try Self.requireSupport()
        var options = Self.options("test")
        let work = options.workDirectory
        options.schedule = [.leader, .follower, .everyMember, .leader]
        let report = await PowerLossRun.run(options)
        print(report)
        #expect(report.passed, "\(report)")
        #expect(report.memberCuts == 6 && report.restarts == 6, "\(report)")
        #expect(report.acknowledgedWrites >= 80, "too few writes to mean anything: \(report)")
        #expect(report.droppedBytes > 0, "the cuts dropped nothing: they tested nothing: \(report)")
        if report.passed { try? FileManager.default.removeItem(atPath: work) }
    }

    /// A disk that also writes unsynced pages back early, in no order, some of them torn at a sector boundary:
    /// after cuts, logs and databases hold a later page without an earlier one or half a page. Recovery must still
    /// keep every acknowledged write and nothing that would reorder revisions.
    @Test func cutsWithPagesWrittenBackEarlyAndTornLoseNothingAcknowledged() async throws {
        try Self.requireSupport()
        var options = Self.options("torn")
        let work = options.workDirectory
        options.schedule = [.everyMember, .leader, .everyMember]
        options.earlyWriteback = 0.3
        let report = await PowerLossRun.run(options)
        print(report)
        #expect(report.passed, "\(report)")
        #expect(report.pagesWrittenEarly > 0, "no page was written early: the run tested nothing new: \(report)")
        if report.passed { try? FileManager.default.removeItem(atPath: work) }
    }

    /// A one-member cluster has no other copy: what it acknowledged must be on its own disk. Regression test for
    /// the data directory's own entries (`data`, `member`, `member/wal`, `member/snap`), which were created without
    /// fsyncing their parents: the first cut took the whole directory, and the member came back as a new cluster
    /// without any of its acknowledged writes.
    @Test func aLoneMemberKeepsItsAcknowledgedWritesAcrossCuts() async throws {
        try Self.requireSupport()
        var options = Self.options("one")
        let work = options.workDirectory
        options.members = 1
        options.writers = 2
        options.schedule = [.leader, .leader]
        let report = await PowerLossRun.run(options)
        print(report)
        #expect(report.passed, "\(report)")
        #expect(report.memberCuts == 2 && report.acknowledgedWrites >= 40, "\(report)")
        if report.passed { try? FileManager.default.removeItem(atPath: work) }
    }

    /// The checks can fail: with fsync off (etcd's --unsafe-no-fsync), a cut of every member loses acknowledged
    /// writes, and the run says so.
    @Test func theChecksCatchWritesLostWithoutFsync() async throws {
        try Self.requireSupport()
        var options = Self.options("nofsync")
        let work = options.workDirectory
        options.schedule = [.everyMember]
        options.extraFlags = ["--unsafe-no-fsync"]
        let report = await PowerLossRun.run(options)
        print(report)
        #expect(!report.passed)
        #expect(!report.lostWrites.isEmpty, "acknowledged writes were not fsynced, yet none was lost: \(report)")
        try? FileManager.default.removeItem(atPath: work)
    }
}
