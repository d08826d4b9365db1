import Foundation
import GoSyntax
import Logging
import MVCC
import Storage

/// etcd's Defragment without etcd's stall: free pages go back to the file system in short steps on the apply loop,
/// paced by `MaintenancePacer` so that writes and reads go on between them (etcd's defragment, like Quorum's full
/// `VACUUM` before, holds every write for the whole rewrite: etcd issue 9222). The RPC answers once no free page is
/// left and the journal is emptied: the files then take the space in use.
extension MemberNode {
    /// The most pages one defragment step returns, whatever the clock says: a bound where time does not pass
    /// (the simulator's clock, a test's manual one), as `compactionBatchLimit` bounds a compaction step's rows.
    static let defragmentMaxStepPages = 1024
    /// How long the last step waits for readers on older snapshots before it leaves the journal as it is.
    static let defragmentTruncateWaitMilliseconds: Int32 = 50

    /// Returns the database's free pages to the file system while writes go on (see above); a call made while a
    /// defragment runs joins it. A database created before Quorum reclaimed in steps is first rebuilt by one full
    /// `VACUUM` (writes wait for it, that once).
    public func defragment() async throws(EtcdError) {
        let error: EtcdError? = await withCheckedContinuation { continuation in
            applyQueue.push(.perform { node in node.joinDefragment { continuation.resume(returning: $0) } })
        }
        if let error { throw error }
    }

    /// As the member begins to stop: a defragment under way ends between two steps (what it freed stays freed) and
    /// its callers, with those of a physical Compact, hear etcd's "server stopped". The server's stop waits for the
    /// calls in flight, and a defragment of gigabytes under load takes minutes: measured, a SIGTERM in the middle of
    /// one waited for its end. A physical compaction goes on in steps after the restart.
    public func releaseMaintenanceCallers() {
        applyQueue.push(.perform { node in node.endMaintenanceForStop() })
    }

    func endMaintenanceForStop() {
        assertOnApplyLoop()
        finishDefragment(.stopped, how: "stopped")
        for pending in physicalCompactions { waiters.resume(pending.id, with: .failure(.stopped)) }
        physicalCompactions = []
    }

    func joinDefragment(_ completion: @escaping @Sendable (EtcdError?) -> Void) {
        assertOnApplyLoop()
        defragmentCallers.append(completion)
        if defragmentPacer.onRequest(now: maintenanceClock()) { startDefragment() }
    }

    /// A run's start: the writer's page cache grows to hold the pages every step walks, and those pages are read on
    /// a thread of their own (`FreeListPrefetch`) before the first step, which that thread queues: a step that read
    /// them itself held the apply loop for up to 229 ms. Another thread reads, a little ahead of the steps, the pages
    /// they move and their parents (`TailPrefetch`): reading those held steps 20-720 ms. A simulated disk has no page
    /// cache to fill, and no threads.
    private func startDefragment() {
        do {
            try backend.setVacuumCache(pages: backend.vacuumCachePages())
            if backend.vfs == nil {
                defragmentReadAhead = TailPrefetch(
                    path: backend.path, end: Int(try backend.pageCount()), freePages: Int(try backend.freePages()))
                defragmentReadAhead?.start()
            }
        } catch {
            finishDefragment(.internal("defragment: \(error)"), how: "failed")
            return
        }
        guard backend.vfs == nil else { return defragmentStep() }
        let path = backend.path
        let queue = applyQueue
        let run = defragmentPacer.started
        let thread = Thread {
            let started = monotonicNanoseconds()
            let read = FreeListPrefetch.run(path: path)
            let took = monotonicNanoseconds() - started
            queue.push(.perform { node in node.defragmentPrefetched(read, took: took, run: run) })
        }
        thread.name = "defragment-prefetch"
        thread.start()
    }

    /// The read-ahead for `run` is done: its first step. A run that ended meanwhile (the member is stopping) is not
    /// stepped, nor is a later one: that one's own read-ahead queues its first step.
    private func defragmentPrefetched(_ read: FreeListPrefetch.Summary, took: UInt64, run: UInt64?) {
        assertOnApplyLoop()
        guard defragmentPacer.started == run else { return }
        logger.info(
            "read the free list ahead of the defragment",
            metadata: [
                "trunk-pages": "\(read.trunks)", "pointer-map-pages": "\(read.pointerMaps)",
                "took": "\(GoDuration.format(.nanoseconds(took)))",
            ])
        timedDuty("defragment step") { defragmentStep() }
    }

    /// From the apply loop's housekeeping: the next step, if one is due.
    func defragmentStepIfDue() {
        assertOnApplyLoop()
        if defragmentPacer.isDue(now: maintenanceClock()) { defragmentStep() }
    }

    /// One step; then the next right away (nothing else waited), later (housekeeping runs it when due), or the end.
    private func defragmentStep() {
        assertOnApplyLoop()
        guard defragmentPacer.isRunning else { return }
        do {
            try commitBackend()
            // Checked at every step: a snapshot installed meanwhile may have replaced the file with an older-format one.
            if try !backend.vacuumsIncrementally() {
                logger.warning(
                    """
                    defragment: the database predates incremental vacuum; rebuilding it once with a full VACUUM \
                    (writes wait for it); later defragments run in steps
                    """,
                    metadata: ["path": "\(backend.path)"])
                try backend.convertToIncrementalVacuum()
                finishDefragment(nil, how: "full-vacuum")
                return
            }
            let start = maintenanceClock()
            let step = try backend.vacuumStep(
                pages: Self.defragmentMaxStepPages, nanoseconds: defragmentPacer.stepBudget,
                clock: maintenanceClock)
            let end = maintenanceClock()
            // A backend commit like any other (`etcd_disk_backend_commit_duration_seconds`): a step's own commit may
            // copy the journal when it finds it at the writer's bound.
            observer.backendCommitted(nanoseconds: step.commitNanoseconds)
            if let readAhead = defragmentReadAhead {
                readAhead.onVacuumProgress(end: Int(try backend.pageCount()), freePages: Int(step.left))
            }
            let action = defragmentPacer.onStep(
                took: end - start, workLeft: step.left > 0, othersWaiting: !applyQueue.isEmpty, now: end)
            switch action {
            case .stepNow:
                applyQueue.push(.perform { node in node.timedDuty("defragment step") { node.defragmentStep() } })
            case .stepLater: break
            case .finish:
                try backend.truncateJournal(waitingAtMost: Self.defragmentTruncateWaitMilliseconds)
                finishDefragment(nil, how: "steps")
            }
        } catch {
            finishDefragment(.internal("defragment: \(error)"), how: "failed")
        }
    }

    /// Ends the run and answers every caller; also what a stopping member does with a run under way.
    func finishDefragment(_ error: EtcdError?, how: String) {
        let pacer = defragmentPacer
        guard let started = defragmentPacer.onFinished() else { return }
        do {
            try backend.setVacuumCache(pages: nil)
        } catch {
            logger.warning("defragment: could not size the page cache back", metadata: ["error": "\(error)"])
        }
        let readAheadPages = defragmentReadAhead?.stop()
        defragmentReadAhead = nil
        if error == nil { refreshSize() }
        let callers = defragmentCallers
        defragmentCallers = []
        var metadata: Logger.Metadata = [
            "how": "\(how)", "steps": "\(pacer.steps)", "yields": "\(pacer.yields)",
            "longest-step-ms": "\(pacer.longestStep / 1_000_000)",
            "steps-ms": "\(pacer.stepTime / 1_000_000)", "took-ms": "\((maintenanceClock() - started) / 1_000_000)",
            "db-size": "\(dbSize.load(ordering: .relaxed))",
            "db-size-in-use": "\(dbSizeInUse.load(ordering: .relaxed))",
        ]
        if let readAheadPages { metadata["read-ahead-pages"] = "\(readAheadPages)" }
        if let error { metadata["error"] = "\(error)" }
        logger.info("finished defragmenting", metadata: metadata)
        for caller in callers { caller(error) }
    }
}
