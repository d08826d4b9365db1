import Foundation

/// A directory of this process's own for targets that read files (WAL segments, snapshots, config files): in
/// /dev/shm when it exists, so that an execution costs no disk I/O, and removed at exit.
enum Scratch {
    static let directory: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let path = base + "/quorum-fuzz-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Scratch.directory) }
        return path
    }()

    /// `name` under the scratch directory, emptied (a directory) or removed (a file) first.
    static func path(_ name: String) -> String {
        let path = directory + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        return path
    }

    static func write(_ bytes: [UInt8], to path: String) {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            fatalError("cannot write \(path)")
        }
    }
}
