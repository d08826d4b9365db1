#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The file system as the write-ahead log sees it: exactly the calls whose durability it reasons about, so that the
/// same log code runs on POSIX in a member and on a simulated disk (`Simulation.SimFileSystem`) that loses unsynced
/// writes, tears sectors and fails fsync from a seed. SQLite runs on it too, through `DiskVFS` (the simulation
/// tests open the real key space that way); a member's database uses SQLite's own unix VFS, not this seam.
///
/// Durability is part of the contract, not an implementation detail: written bytes are durable only after the file's
/// `sync`, and a file's name (created or renamed) only after `syncDirectory` of the directory holding it. After a
/// failed `sync` nothing written since the previous successful one may be assumed durable, even if a later `sync`
/// succeeds (Linux drops the dirty pages of a failed writeback and reports the error once).
///
/// `WriteAheadLogOn` is generic over it rather than holding an existential, so the production log
/// (`WriteAheadLog`, on `PosixDisk`) calls `File` directly.
public protocol Disk {
    associatedtype Handle: DiskFile

    /// Opens `path`; `create` makes it if missing with `mode`, `truncate` empties it.
    func open(_ path: String, writable: Bool, create: Bool, truncate: Bool, mode: mode_t) throws -> Handle
    func exists(_ path: String) -> Bool
    /// Names in a directory (no "." or ".."), sorted.
    func list(_ directory: String) throws -> [String]
    /// Creates `path` and missing parents, each durably.
    func makeDirectory(_ path: String) throws
    /// Makes creations, renames and removals inside `directory` durable.
    func syncDirectory(_ directory: String) throws
    func rename(_ from: String, to: String) throws
    /// Removes a file; a missing one is not an error.
    func remove(_ path: String) throws
    /// Removes a file nothing will read again, now or later: the caller does not wait for it, and a crash may leave
    /// it. For files whose removal is slow and has no reason to hold anyone up (a released log segment: unlinking
    /// 64 MiB whose pages are cached took the Raft loop 50-120 ms). By default, `remove`.
    func discard(_ path: String) throws
}

extension Disk {
    public func discard(_ path: String) throws { try remove(path) }
}

/// An open file of a `Disk`.
public protocol DiskFile: AnyObject {
    var path: String { get }
    var size: Int { get throws }
    /// Writes all of `bytes` at `offset` (into the page cache: durable only after `sync`).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws
    /// Reads up to `count` bytes at `offset` (fewer only at end of file).
    func read(count: Int, at offset: Int) throws -> [UInt8]
    /// Makes what was written durable; `dataOnly` skips metadata not needed to read the data back (`fdatasync`).
    func sync(dataOnly: Bool) throws
    func truncate(to length: Int) throws
    /// Reserves `length` bytes (zeros) so appends do not extend the file; best effort.
    func preallocate(length: Int)
}

extension DiskFile {
    public func write(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { (b) throws in try write(b, at: offset) }
    }

    public func readAll() throws -> [UInt8] {
        try read(count: try size, at: 0)
    }
}

/// The real file system: `File` and the `FileSystem` helpers, unchanged. A stateless value, so holding one costs
/// nothing and the generic log specialised on it makes the same calls it made before the seam existed.
public struct PosixDisk: Disk, Sendable {
    public init() {}

    public func open(_ path: String, writable: Bool, create: Bool, truncate: Bool, mode: mode_t) throws -> File {
        try File(path: path, writable: writable, create: create, truncate: truncate, mode: mode)
    }

    public func exists(_ path: String) -> Bool { FileSystem.exists(path) }
    public func list(_ directory: String) throws -> [String] { try FileSystem.list(directory) }
    public func makeDirectory(_ path: String) throws { try FileSystem.makeDirectory(path) }
    public func syncDirectory(_ directory: String) throws { try FileSystem.syncDirectory(directory) }
    public func rename(_ from: String, to: String) throws { try FileSystem.rename(from, to: to) }
    public func remove(_ path: String) throws { try FileSystem.remove(path) }
    public func discard(_ path: String) throws { BackgroundRemover.shared.remove(path) }
}

extension File: DiskFile {}
