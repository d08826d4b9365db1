import Foundation

/// Runs a producer on a thread of its own, at most `capacity` results ahead of the consumer, so that what the
/// producer waits for (SQLite stepping through pages, the disk) overlaps what the consumer does with each result.
///
/// The producer is called on the reading thread only, until it returns nil, throws, or `close()` stops it; whatever
/// it touches (a SQLite connection) belongs to that thread until `close()` returns. Results come out in the order
/// the producer made them, an error after the results before it.
final class ReadAhead<Element>: @unchecked Sendable {
    private let condition = NSCondition()
    private let capacity: Int
    private let produce: () throws -> Element?
    /// Made but not yet taken; nil ends the stream. Guarded by `condition`.
    private var ready: [Result<Element?, any Error>] = []
    private var stopping = false
    private var running = true

    /// Starts the reading thread at once.
    init(capacity: Int, name: String, produce: @escaping () throws -> Element?) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.produce = produce
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    deinit { precondition(!running, "ReadAhead dropped without close(): its thread still owns the producer") }

    /// The next result, waiting for it; nil once the producer is done (and after an error was thrown once).
    func next() throws -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while ready.isEmpty && running { condition.wait() }
        guard !ready.isEmpty else { return nil }
        let result = ready.removeFirst()
        condition.broadcast()
        return try result.get()
    }

    /// Stops the producer (after the call it is in) and waits for the thread to end: the producer's resources are
    /// the caller's again.
    func close() {
        condition.lock()
        defer { condition.unlock() }
        stopping = true
        condition.broadcast()
        while running { condition.wait() }
        ready.removeAll()
    }

    private func run() {
        while true {
            condition.lock()
            while ready.count >= capacity && !stopping { condition.wait() }
            let stop = stopping
            condition.unlock()
            if stop { break }
            let result = Result { try produce() }
            condition.lock()
            ready.append(result)
            condition.broadcast()
            condition.unlock()
            if case .success(let element) = result, element != nil { continue }
            break
        }
        condition.lock()
        running = false
        condition.broadcast()
        condition.unlock()
    }
}
