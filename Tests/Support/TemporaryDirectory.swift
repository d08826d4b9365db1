import Foundation

/// A fresh directory under the system's temporary directory, removed when the value goes away.
///
/// Creating it cannot fail on a machine able to run the tests at all, so it does not throw: a failure stops the test
/// process with the reason.
public final class TemporaryDirectory: Sendable {
    public let url: URL
    public var path: String { url.path }

    /// `label` (by default the test function's name) goes into the directory's name, to tell leftovers apart.
    public init(_ label: String = #function) {
        let safe = label.filter { $0.isLetter || $0.isNumber }.prefix(40)
        url = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("quorum-\(safe)-\(UUID().uuidString.prefix(8))", isDirectory: true)
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            fatalError("cannot create a temporary directory \(url.path): \(error)")
        }
    }

    /// Foundation's `removeItem` gives up at the first file it cannot unlink, and a test's background remover (the
    /// log's released segments) may unlink one between the listing and the unlink: a few attempts leave nothing.
    deinit {
        for _ in 0..<5 {
            do {
                try FileManager.default.removeItem(at: url)
                return
            } catch {
                if !FileManager.default.fileExists(atPath: url.path) { return }
            }
        }
    }

    /// The path of `name` inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    /// The URL of `name` inside the directory.
    public func fileURL(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Writes `text` to `name` inside the directory and returns its URL.
    @discardableResult
    public func write(_ text: String, to name: String) throws -> URL {
        let target = fileURL(name)
        try text.write(to: target, atomically: true, encoding: .utf8)
        return target
    }
}

/// Whole-file helpers for corrupting files on purpose.
public enum Bytes {
    public static func read(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}
