import Foundation

/// Unlinks files on a thread of its own, in the order given, for `PosixDisk.discard`: the caller goes on at once.
///
/// Why: unlinking a file drops its cached pages and frees its extents in the caller's system call. For a released
/// 64 MiB log segment that took 50-120 ms, on the Raft loop, at every snapshot: every client of the member waited
/// (`scripts/bench-stalls.sh` found the episodes 8 s apart, one per 100,000 entries; with `--max-wals 0`, which keeps
/// every segment, they were gone). etcd purges its segments from a goroutine of its own for the same reason.
///
/// The queue is bounded: past `capacity` paths waiting, the caller unlinks the file itself. A failure is not
/// reported to anyone (the file was garbage); a missing file is not a failure.
public final class BackgroundRemover: @unchecked Sendable {
    // @unchecked: every field is guarded by `condition`.
    public static let shared = BackgroundRemover(capacity: 256)

    private let condition = NSCondition()
    private var waiting: [String] = []
    private var removing = false
    private var started = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Queues `path` for unlinking; when the queue is full, unlinks it now.
    public func remove(_ path: String) {
        condition.lock()
        guard waiting.count < capacity else {
            condition.unlock()
            try? FileSystem.remove(path)
            return
        }
        waiting.append(path)
        if !started {
            started = true
            let thread = Thread { [self] in run() }
            thread.name = "file-remover"
            thread.start()
        }
        condition.signal()
        condition.unlock()
    }

    /// Waits until every path queued so far is unlinked (tests).
    public func waitUntilIdle() {
        condition.lock()
        defer { condition.unlock() }
        while !waiting.isEmpty || removing { condition.wait() }
    }

    /// Bytes freed per step before the unlink, and the pause after each.
    static let shrinkStepBytes = 4 << 20
    static let shrinkPauseMicroseconds: UInt32 = 2_000

    /// Shrinks the file a few MiB at a time, then unlinks what is left. Freeing 64 MiB of extents in one unlink is one
    /// large file-system transaction, which the log's next fdatasync then waits for (ext4 commits its journal as a
    /// whole): measured, a background unlink still delayed every client 30-60 ms at each snapshot. In steps, each
    /// transaction is small.
    private static func shrinkThenRemove(_ path: String) {
        var status = stat()
        if stat(path, &status) == 0 {
            var size = Int(status.st_size)
            while size > shrinkStepBytes {
                size -= shrinkStepBytes
                guard truncate(path, off_t(size)) == 0 else { break }
                usleep(shrinkPauseMicroseconds)
            }
        }
        try? FileSystem.remove(path)
    }

    /// The thread lives as long as the process once started: one per process, idle on its condition.
    private func run() {
        while true {
            condition.lock()
            while waiting.isEmpty { condition.wait() }
            let path = waiting.removeFirst()
            removing = true
            condition.unlock()
            Self.shrinkThenRemove(path)
            condition.lock()
            removing = false
            condition.broadcast()
            condition.unlock()
        }
    }
}
