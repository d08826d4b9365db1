import Foundation

/// Runs blocking work (a long file write, a database scan) on a thread of its own, so that it never holds one of
/// the few threads Swift's cooperative pool has (as many as cores: two here).
enum BlockingWork {
    static func run<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try body() })
            }
            thread.name = name
            thread.start()
        }
    }
}
