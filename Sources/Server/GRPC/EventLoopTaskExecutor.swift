import NIOCore
import NIOPosix

/// Runs the RPC handlers' Swift-concurrency jobs on NIO's event loops instead of the global (Dispatch) pool.
///
/// Why: profiles of every hot path (put, range, lease keep-alive) showed the server's CPU going mostly to moving
/// each request between threads — NIO's loop reads the request, a Dispatch worker runs the handler, the loop
/// writes the answer — at one futex wake-up and context switch per hop, on a 2-core machine shared with the
/// clients. A job enqueued from an event loop (a request just read, a response just flushed) now runs on that
/// same loop, in the same wake-up; only jobs resumed from elsewhere (the Raft loop completing a proposal) cross
/// threads, to an event loop of `group`. Handlers never block for long (they await proposals and read barriers;
/// SQLite reads are short), which is what makes event-loop threads a safe home for them.
final class EventLoopTaskExecutor: TaskExecutor {
    let group: MultiThreadedEventLoopGroup

    init(group: MultiThreadedEventLoopGroup) {
        self.group = group
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? group.next()
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}
