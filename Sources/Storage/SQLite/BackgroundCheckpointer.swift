import Foundation

/// Copies a database's journal (WAL) into the database on a thread of its own, with its own connection, so that the
/// writer's commits do not: a checkpoint of 4,096 frames inside a COMMIT held the apply loop 100–129 ms under a load
/// of 64 KiB values.
///
/// The writer still checkpoints itself, rarely (`WriterCheckpointPolicy`): SQLite starts the journal over only when a
/// write transaction begins with every frame copied, which a checkpointer beside a busy writer never sees (new frames
/// arrive while it copies). The writer's own checkpoint then finds nearly everything copied already and is short.
///
/// A checkpoint that fails (an fsync that failed: Linux forgets the dirty pages, so a later "successful" checkpoint
/// could copy a journal that is not on disk) is kept and handed to the writer, whose next COMMIT reports it
/// (`takeFailure`), as the writer's own checkpoint would have. Requests while one runs coalesce into one more run:
/// nothing queues. The thread and connection exist between `start()` and `stop()`; the owner stops it before it
/// swaps the database file.
public final class BackgroundCheckpointer: @unchecked Sendable {
    public let path: String
    /// Guards everything below.
    private let condition = NSCondition()
    private var requested = false
    private var running = false
    private var stopping = false
    private var finished = true
    /// A checkpoint is running (on the thread, without the lock).
    private var busy = false
    private var failure: SQLiteError?
    private var completed = 0
    private var progress: SQLiteConnection.CheckpointProgress?

    /// The thread holds the checkpointer until `stop()` ends it, so an owner must stop it (`Backend` does, in its
    /// `deinit` and around a file swap).
    public init(path: String) { self.path = path }

    /// Checkpoints run so far, for tests and logs.
    public var checkpoints: Int {
        condition.lock()
        defer { condition.unlock() }
        return completed
    }

    /// What the newest checkpoint that ran saw (tests and logs): the journal's frames, and how many are copied.
    public var lastProgress: SQLiteConnection.CheckpointProgress? {
        condition.lock()
        defer { condition.unlock() }
        return progress
    }

    /// Starts the thread (opening its connection there); a second call while it runs does nothing.
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard !running else { return }
        running = true
        stopping = false
        finished = false
        let thread = Thread { [self] in run() }
        thread.name = "sqlite-checkpointer"
        thread.start()
    }

    /// Stops the thread after the checkpoint it runs, if any, and closes its connection. Returns when it has.
    public func stop() {
        condition.lock()
        defer { condition.unlock() }
        guard running else { return }
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        running = false
    }

    /// Asks for a checkpoint soon. Cheap and non-blocking: the writer calls it from inside its COMMIT.
    public func request() {
        condition.lock()
        requested = true
        condition.signal()
        condition.unlock()
    }

    /// A checkpoint failure not yet reported, which the caller reports now; nil when there is none.
    public func takeFailure() -> SQLiteError? {
        condition.lock()
        defer { condition.unlock() }
        let taken = failure
        failure = nil
        return taken
    }

    /// Drops a pending request and waits for a running checkpoint to end: the writer is about to checkpoint itself,
    /// which must not find this one holding the checkpoint lock (it would give up, and the journal go on growing).
    /// Only the writer requests checkpoints, and it is here, so none starts until it asks again.
    public func holdOff() {
        condition.lock()
        defer { condition.unlock() }
        requested = false
        while busy { condition.wait() }
    }

    /// Waits until no checkpoint is requested or running (tests).
    public func waitUntilIdle() {
        condition.lock()
        defer { condition.unlock() }
        while requested || busy { condition.wait() }
    }

    /// The checkpointer's connection, with the database's WAL open: a connection that has not read its database
    /// yet does not know it is in WAL mode, and its checkpoints copy nothing (`checkpointPassive`).
    private static func open(_ path: String) throws(SQLiteError) -> SQLiteConnection {
        let connection = try SQLiteConnection(path: path)
        _ = try connection.scalar("SELECT COUNT(*) FROM sqlite_master")
        return connection
    }

    private func run() {
        var connection: SQLiteConnection?
        defer {
            connection = nil
            condition.lock()
            finished = true
            busy = false
            condition.broadcast()
            condition.unlock()
        }
        while true {
            condition.lock()
            while !requested && !stopping { condition.wait() }
            if stopping {
                condition.unlock()
                return
            }
            requested = false
            busy = true
            condition.unlock()

            var failed: SQLiteError?
            var ran: SQLiteConnection.CheckpointProgress?
            do {
                if connection == nil { connection = try Self.open(path) }
                ran = try connection?.checkpointPassive()
            } catch {
                failed = error
            }

            condition.lock()
            completed += 1
            if let ran { progress = ran }
            busy = false
            if let failed, failure == nil { failure = failed }
            condition.broadcast()
            condition.unlock()
        }
    }
}

/// When the writer checkpoints itself, and when it asks the background checkpointer: the writer's side of
/// `BackgroundCheckpointer`, a pure function of the journal's length so that it is tested on its own.
public struct WriterCheckpointPolicy: Sendable, Equatable {
    /// Frames after which the background checkpointer is asked.
    public var background: Int
    /// Frames after which the writer checkpoints in its COMMIT (the journal's bound).
    public var inline: Int

    public init(background: Int, inline: Int) {
        precondition(background > 0 && inline >= background)
        self.background = background
        self.inline = inline
    }

    public enum Decision: Equatable, Sendable {
        case nothing
        case askBackground
        case checkpointInline
    }

    public func decide(frames: Int) -> Decision {
        if frames >= inline { return .checkpointInline }
        if frames >= background { return .askBackground }
        return .nothing
    }
}
