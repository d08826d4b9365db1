import Foundation
import MVCC
import Storage

/// etcd's Defragment without etcd's stall: free pages go back to the file system in short steps, each a transaction
/// of its own queued on the apply loop behind the batches already waiting, so writes and reads go on between them
/// (etcd's defragment, like Quorum's full `VACUUM` before, holds every write for the whole rewrite: etcd issue 9222).
/// The RPC answers once no free page is left and the journal is emptied: the files then take the space in use.
extension MemberNode {
    /// Free pages the first step returns (1 MiB of 4 KiB pages); later steps are sized from the ones before, up to
    /// `defragmentMaxStepPages` (64 MiB).
    static let defragmentFirstStepPages = 256
    static let defragmentMaxStepPages = 16_384
    /// What one step should hold the apply loop for: well under the 100 ms a write may wait because of it.
    static let defragmentStepTargetNanoseconds: UInt64 = 20_000_000
    /// How long the last step waits for readers on older snapshots before it leaves the journal as it is.
    static let defragmentTruncateWaitMilliseconds: Int32 = 50

    /// Returns the database's free pages to the file system while writes go on (see above). A database created before
    /// Quorum reclaimed in steps is first rebuilt by one full `VACUUM` (writes wait for it, that once).
    public func defragment() async throws(EtcdError) {
        let error: EtcdError? = await withCheckedContinuation { continuation in
            let run = DefragmentRun(started: monotonicNanoseconds()) { continuation.resume(returning: $0) }
            applyQueue.push(.perform { node in node.defragmentStep(run) })
        }
        if let error { throw error }
    }

    /// One step; queues the next behind whatever arrived meanwhile, or finishes.
    func defragmentStep(_ run: DefragmentRun) {
        assertOnApplyLoop()
        do {
            let committing = monotonicNanoseconds()
            try commitBackend()
            run.committed(monotonicNanoseconds() - committing)
            // Checked at every step: a snapshot installed meanwhile may have replaced the file with an older-format one.
            if try !backend.vacuumsIncrementally() {
                logger.warning(
                    """
                    defragment: the database predates incremental vacuum; rebuilding it once with a full VACUUM \
                    (writes wait for it); later defragments run in steps
                    """,
                    metadata: ["path": "\(backend.path)"])
                try backend.convertToIncrementalVacuum()
                finishDefragment(run, steps: "full-vacuum")
                return
            }
            let start = monotonicNanoseconds()
            let left = try backend.vacuumStep(pages: run.pages)
            run.took(monotonicNanoseconds() - start, target: Self.defragmentStepTargetNanoseconds)
            if left > 0 {
                applyQueue.push(.perform { node in node.defragmentStep(run) })
                return
            }
            try backend.truncateJournal(waitingAtMost: Self.defragmentTruncateWaitMilliseconds)
            finishDefragment(run, steps: "\(run.steps)")
        } catch {
            run.finish(.internal("defragment: \(error)"))
        }
    }

    private func finishDefragment(_ run: DefragmentRun, steps: String) {
        refreshSize()
        logger.info(
            "finished defragmenting",
            metadata: [
                "steps": "\(steps)", "longest-step-ms": "\(run.longest / 1_000_000)",
                "steps-ms": "\(run.stepTotal / 1_000_000)", "commits-before-steps-ms": "\(run.commitTotal / 1_000_000)",
                "took-ms": "\((monotonicNanoseconds() - run.started) / 1_000_000)",
                "db-size": "\(dbSize.load(ordering: .relaxed))",
                "db-size-in-use": "\(dbSizeInUse.load(ordering: .relaxed))",
            ])
        run.finish(nil)
    }
}

/// A defragmentation under way: its step size and its caller. Touched only on the apply loop, one step at a time.
final class DefragmentRun: @unchecked Sendable {
    let started: UInt64
    private let completion: @Sendable (EtcdError?) -> Void
    private(set) var pages = MemberNode.defragmentFirstStepPages
    private(set) var steps = 0
    /// The longest step so far, in nanoseconds.
    private(set) var longest: UInt64 = 0
    /// The time spent in steps, and in committing the apply batch before each (which may checkpoint the journal): with
    /// the run's wall time, they say how much of the apply loop the defragment took.
    private(set) var stepTotal: UInt64 = 0
    private(set) var commitTotal: UInt64 = 0

    init(started: UInt64, completion: @escaping @Sendable (EtcdError?) -> Void) {
        self.started = started
        self.completion = completion
    }

    /// Records a step's duration and sizes the next: twice the pages after a short step, half after a long one.
    func took(_ nanoseconds: UInt64, target: UInt64) {
        steps += 1
        stepTotal += nanoseconds
        longest = max(longest, nanoseconds)
        if nanoseconds < target / 2 {
            pages = min(pages * 2, MemberNode.defragmentMaxStepPages)
        } else if nanoseconds > target * 2 {
            pages = max(pages / 2, 64)
        }
    }

    func committed(_ nanoseconds: UInt64) { commitTotal += nanoseconds }

    func finish(_ error: EtcdError?) { completion(error) }
}
