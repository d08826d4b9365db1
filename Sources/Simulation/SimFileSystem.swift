import Storage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Faults a `SimFileSystem` injects, each drawn from its seeded generator.
public struct SimDiskFaults: Sendable {
    /// Probability that a file write fails with EIO or ENOSPC, after a random prefix of it reached the page cache
    /// (a short write followed by the error, as `pwrite` can do).
    public var writeError: Double = 0
    /// Probability that a file's fsync or fdatasync fails with EIO. As on Linux, the writeback that failed leaves
    /// some of the dirty pages on disk and drops the rest, and the pages count as clean afterwards: a retried fsync
    /// succeeds without writing them (what PostgreSQL learnt in 2018, "fsyncgate").
    public var syncError: Double = 0
    /// Probability that fsync of a directory fails with EIO; the names changed in it stay undurable.
    public var directorySyncError: Double = 0
    /// Probability that an fsync (of a file or a directory) is slow: the device is busy or failing, and the call
    /// blocks its caller for a time drawn from `stall` (reported through `SimFileSystem.onStall`). etcd's operators
    /// know the symptom: a leader whose fdatasync takes a second misses its heartbeats and loses its leadership.
    public var slowSync: Double = 0
    public var stall: ClosedRange<SimTime> = .ms(50) ... .ms(1_500)

    public init(
        writeError: Double = 0, syncError: Double = 0, directorySyncError: Double = 0, slowSync: Double = 0
    ) {
        self.writeError = writeError
        self.syncError = syncError
        self.directorySyncError = directorySyncError
        self.slowSync = slowSync
    }
}

/// What a `SimFileSystem` did, for tests to see that the faults they asked for happened.
public struct SimFileSystemStats: Sendable {
    public var crashes = 0
    /// Dirty pages a crash or a failed fsync kept whole, dropped, or kept only some 512-byte sectors of.
    public var pagesKept = 0
    public var pagesLost = 0
    public var pagesTorn = 0
    /// Unsynced creations, renames and removals a crash undid.
    public var namesLost = 0
    public var writeErrors = 0
    public var syncErrors = 0
    /// Slow fsyncs, and the virtual time they blocked their callers in all.
    public var stalls = 0
    public var stalledMicroseconds: SimTime = 0
    public init() {}
}

/// A file system in memory with a page cache and a power switch, so the real write-ahead log (`WriteAheadLogOn`)
/// and the real SQLite database under the key space (through `Storage.DiskVFS`) run on a disk that misbehaves the
/// way real ones do, from a seed.
///
/// What it models:
/// - Each file has durable bytes and a page cache: writes go to the cache (what reads see) and mark 4 KiB pages
///   dirty; a successful `sync` writes the dirty pages and the size back, and only that makes them durable.
/// - `crash(rng:)` (a power cut) keeps the durable bytes and, of each dirty page, all of it, none of it, or a random
///   subset of its 512-byte sectors: the kernel flushes pages in no particular order and a disk with a volatile
///   cache writes sectors in no particular order either, so a write that was not synced may be torn and may have
///   reached the disk while an earlier one did not. A pending size change (an extension, a truncation) is kept or
///   lost as a whole, as a journaled metadata update is.
/// - Names: creations, renames and removals are durable only once their directory is fsynced. A crash keeps a
///   random prefix of each directory's unsynced changes (a journal commits them in order), so an un-fsynced rename
///   may be lost. A file no durable name refers to is gone after a crash. Directories are durable when made (the
///   real `FileSystem.makeDirectory` fsyncs each parent).
/// - Faults (`SimDiskFaults`): EIO or ENOSPC from writes, EIO from fsync with Linux's semantics (see `syncError`).
/// - `cutPower(afterOperations:)` makes every call after the next n fail, as if the power went out in the middle of
///   whatever the caller was doing (cutting a segment, repairing a tail); `crash(rng:)` then decides what survived.
///
/// Not modelled: several processes, hard links, file modes, `O_DIRECT`, metadata-only fsync differences
/// (`fdatasync` and `fsync` both write the size), and disks that lie about fsync. It is not thread-safe: `DiskVFS`
/// serialises the calls of SQLite's connections under one lock.
public final class SimFileSystem: Disk {
    public static let pageSize = 4096
    public static let sectorSize = 512

    /// One file's contents: `durable` is what a crash starts from, `cache` what reads see.
    final class Inode {
        var durable: [UInt8] = []
        var cache: [UInt8] = []
        var dirtyPages: Set<Int> = []
        var sizeDirty = false
        /// The lowest length the file was truncated to since its last writeback: a truncation is one metadata
        /// update, kept or lost whole.
        var truncatedTo: Int?
    }

    /// An unsynced change to a directory's names.
    enum NameChange {
        case link(String, Inode)
        case unlink(String)
        case rename(String, String, Inode)

        var directory: String {
            switch self {
            case .link(let path, _), .unlink(let path), .rename(_, let path, _): return SimFileSystem.parent(of: path)
            }
        }
    }

    public var faults: SimDiskFaults
    public private(set) var stats = SimFileSystemStats()
    /// Told how long a slow fsync blocks its caller (`SimDiskFaults.slowSync`): the member simulation charges it to
    /// the loop that made the call, which runs nothing else meanwhile.
    public var onStall: ((SimTime) -> Void)?

    private var rng: SimRandom
    private var names: [String: Inode] = [:]
    private var durableNames: [String: Inode] = [:]
    private var directories: Set<String> = ["/"]
    private var pendingNames: [NameChange] = []
    /// Bumped by every crash: handles opened before it fail, as a restarted process holds no old descriptors.
    private var generation = 0
    private var operationsUntilPowerCut: Int?

    /// `seed` drives the injected faults; crashes draw from the generator passed to `crash(rng:)`.
    public init(seed: UInt64, faults: SimDiskFaults = SimDiskFaults()) {
        rng = SimRandom(seed: seed)
        self.faults = faults
    }

    // MARK: - Power

    /// Every disk call after the next `count` fails with EIO and changes nothing, until `crash(rng:)`.
    public func cutPower(afterOperations count: Int) {
        operationsUntilPowerCut = count
    }

    /// Whether the power is out (`cutPower` ran its course): the caller should `crash` and restart.
    public var isPowerOut: Bool { operationsUntilPowerCut == 0 }

    /// A power cut and restart: what was durable stays, unsynced writes and names survive in part, in no order,
    /// possibly torn; every open handle dies.
    public func crash(rng: inout SimRandom) {
        stats.crashes += 1
        generation += 1
        operationsUntilPowerCut = nil
        var byDirectory: [String: [NameChange]] = [:]
        for change in pendingNames { byDirectory[change.directory, default: []].append(change) }
        for directory in byDirectory.keys.sorted() {
            let changes = byDirectory[directory]!
            let kept = rng.int(0..<(changes.count + 1))
            for change in changes.prefix(kept) { Self.apply(change, to: &durableNames) }
            stats.namesLost += changes.count - kept
        }
        pendingNames.removeAll()
        var seen: Set<ObjectIdentifier> = []
        for path in durableNames.keys.sorted() {
            let inode = durableNames[path]!
            guard seen.insert(ObjectIdentifier(inode)).inserted else { continue }
            writeBack(inode, completely: false, rng: &rng)
            inode.cache = inode.durable
        }
        names = durableNames
    }

    // MARK: - Disk

    public func open(_ path: String, writable: Bool, create: Bool, truncate: Bool, mode: mode_t) throws -> SimFile {
        try operation("open", path)
        guard directories.contains(Self.parent(of: path)) else {
            throw FileError(operation: "open", path: path, errno: ENOENT)
        }
        let inode: Inode
        if let existing = names[path] {
            inode = existing
            if truncate && writable { Self.truncate(inode, to: 0) }
        } else {
            guard create else { throw FileError(operation: "open", path: path, errno: ENOENT) }
            inode = Inode()
            names[path] = inode
            pendingNames.append(.link(path, inode))
        }
        return SimFile(path: path, inode: inode, writable: writable, fileSystem: self, generation: generation)
    }

    public func exists(_ path: String) -> Bool {
        names[path] != nil || directories.contains(path)
    }

    public func list(_ directory: String) throws -> [String] {
        try operation("opendir", directory)
        guard directories.contains(directory) else {
            throw FileError(operation: "opendir", path: directory, errno: ENOENT)
        }
        let prefix = directory == "/" ? "/" : directory + "/"
        var result: [String] = []
        for path in names.keys where Self.parent(of: path) == directory {
            result.append(String(path.dropFirst(prefix.count)))
        }
        for path in directories where path != directory && Self.parent(of: path) == directory {
            result.append(String(path.dropFirst(prefix.count)))
        }
        return result.sorted()
    }

    /// Paths are absolute (`/wal`), as the simulator's callers build them.
    public func makeDirectory(_ path: String) throws {
        precondition(path.hasPrefix("/"), "SimFileSystem paths are absolute: \(path)")
        try operation("mkdir", path)
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            guard names[prefix] == nil else { throw FileError(operation: "mkdir", path: prefix, errno: ENOTDIR) }
            directories.insert(prefix)
        }
    }

    public func syncDirectory(_ directory: String) throws {
        try operation("fsync", directory)
        guard directories.contains(directory) else {
            throw FileError(operation: "open", path: directory, errno: ENOENT)
        }
        stallNow()
        if rng.chance(faults.directorySyncError) {
            stats.syncErrors += 1
            throw FileError(operation: "fsync", path: directory, errno: EIO)
        }
        var rest: [NameChange] = []
        for change in pendingNames {
            if change.directory == directory {
                Self.apply(change, to: &durableNames)
            } else {
                rest.append(change)
            }
        }
        pendingNames = rest
    }

    public func rename(_ from: String, to: String) throws {
        try operation("rename", from)
        guard let inode = names[from] else { throw FileError(operation: "rename", path: from, errno: ENOENT) }
        guard directories.contains(Self.parent(of: to)) else {
            throw FileError(operation: "rename", path: from, errno: ENOENT)
        }
        names[from] = nil
        names[to] = inode
        pendingNames.append(.rename(from, to, inode))
    }

    public func remove(_ path: String) throws {
        try operation("unlink", path)
        guard names.removeValue(forKey: path) != nil else { return }
        pendingNames.append(.unlink(path))
    }

    // MARK: - Files

    /// Counts a call against a pending power cut; once the power is out every call fails.
    func operation(_ name: String, _ path: String) throws {
        guard let left = operationsUntilPowerCut else { return }
        if left == 0 { throw FileError(operation: name + " (power cut)", path: path, errno: EIO) }
        operationsUntilPowerCut = left - 1
    }

    func check(_ file: SimFile, _ name: String) throws {
        try operation(name, file.path)
        guard file.generation == generation else { throw FileError(operation: name, path: file.path, errno: EBADF) }
    }

    func write(_ file: SimFile, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        try check(file, "write")
        guard file.writable else { throw FileError(operation: "write", path: file.path, errno: EBADF) }
        if rng.chance(faults.writeError) {
            stats.writeErrors += 1
            let written = rng.int(0..<(bytes.count + 1))
            Self.write(file.inode, UnsafeRawBufferPointer(rebasing: bytes[0..<written]), at: offset)
            throw FileError(operation: "write", path: file.path, errno: rng.chance(0.5) ? EIO : ENOSPC)
        }
        Self.write(file.inode, bytes, at: offset)
    }

    func sync(_ file: SimFile) throws {
        try check(file, "fsync")
        stallNow()
        if rng.chance(faults.syncError) {
            stats.syncErrors += 1
            // The writeback failed part way: what reached the disk is random, and the kernel forgets the rest.
            writeBack(file.inode, completely: false, rng: &rng)
            throw FileError(operation: "fsync", path: file.path, errno: EIO)
        }
        writeBack(file.inode, completely: true, rng: &rng)
    }

    /// A slow fsync, now and then. Draws from the generator only when slow fsyncs are asked for, so that seeds
    /// without them replay as before.
    private func stallNow() {
        guard faults.slowSync > 0, rng.chance(faults.slowSync) else { return }
        let stall = rng.int(in: faults.stall)
        stats.stalls += 1
        stats.stalledMicroseconds += stall
        onStall?(stall)
    }

    func truncate(_ file: SimFile, to length: Int) throws {
        try check(file, "truncate")
        guard file.writable else { throw FileError(operation: "truncate", path: file.path, errno: EINVAL) }
        Self.truncate(file.inode, to: length)
    }

    func preallocate(_ file: SimFile, length: Int) {
        guard (try? check(file, "fallocate")) != nil, file.writable else { return }
        let inode = file.inode
        if length > inode.cache.count {
            // Unwritten extents: zeros to read, nothing to write back but the size.
            inode.cache += [UInt8](repeating: 0, count: length - inode.cache.count)
            inode.sizeDirty = true
        }
    }

    static func write(_ inode: Inode, _ bytes: UnsafeRawBufferPointer, at offset: Int) {
        guard !bytes.isEmpty else { return }
        let end = offset + bytes.count
        if end > inode.cache.count {
            inode.cache += [UInt8](repeating: 0, count: end - inode.cache.count)
            inode.sizeDirty = true
        }
        inode.cache.withUnsafeMutableBytes { cache in
            UnsafeMutableRawBufferPointer(rebasing: cache[offset..<end]).copyMemory(from: bytes)
        }
        for page in (offset / pageSize)...((end - 1) / pageSize) { inode.dirtyPages.insert(page) }
    }

    static func truncate(_ inode: Inode, to length: Int) {
        if length < inode.cache.count {
            inode.cache.removeSubrange(length...)
            inode.dirtyPages = inode.dirtyPages.filter { $0 * pageSize < length }
        } else {
            inode.cache += [UInt8](repeating: 0, count: length - inode.cache.count)
        }
        inode.truncatedTo = min(inode.truncatedTo ?? length, length)
        inode.sizeDirty = true
    }

    /// Writes an inode's dirty pages and size back: all of them (a successful fsync), or what a crash or a failed
    /// writeback leaves (the size change kept or not, each page kept, dropped or torn at sector granularity).
    /// Either way the pages are clean afterwards.
    func writeBack(_ inode: Inode, completely: Bool, rng: inout SimRandom) {
        var disk = inode.durable
        if let cut = inode.truncatedTo, completely || rng.chance(0.5), cut < disk.count {
            disk.removeSubrange(cut...)
        }
        let size = inode.sizeDirty && !completely && rng.chance(0.5) ? disk.count : inode.cache.count
        if size < disk.count {
            disk.removeSubrange(size...)
        } else if size > disk.count {
            disk += [UInt8](repeating: 0, count: size - disk.count)
        }
        let limit = min(size, inode.cache.count)
        func copy(_ range: Range<Int>) {
            let r = range.clamped(to: 0..<limit)
            if !r.isEmpty { disk.replaceSubrange(r, with: inode.cache[r]) }
        }
        for page in inode.dirtyPages.sorted() {
            let start = page * Self.pageSize
            if completely {
                copy(start..<(start + Self.pageSize))
                continue
            }
            let roll = rng.int(0..<10)
            if roll < 4 {
                stats.pagesKept += 1
                copy(start..<(start + Self.pageSize))
            } else if roll < 8 {
                stats.pagesLost += 1
            } else {
                stats.pagesTorn += 1
                for sector in stride(from: start, to: start + Self.pageSize, by: Self.sectorSize) where rng.chance(0.5)
                {
                    copy(sector..<(sector + Self.sectorSize))
                }
            }
        }
        inode.durable = disk
        inode.dirtyPages.removeAll()
        inode.sizeDirty = false
        inode.truncatedTo = nil
    }

    static func apply(_ change: NameChange, to names: inout [String: Inode]) {
        switch change {
        case .link(let path, let inode): names[path] = inode
        case .unlink(let path): names[path] = nil
        case .rename(let from, let to, let inode):
            names[from] = nil
            names[to] = inode
        }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// An open file of a `SimFileSystem`; dies with the power.
public final class SimFile: DiskFile {
    public let path: String
    let inode: SimFileSystem.Inode
    let writable: Bool
    let fileSystem: SimFileSystem
    let generation: Int

    init(path: String, inode: SimFileSystem.Inode, writable: Bool, fileSystem: SimFileSystem, generation: Int) {
        self.path = path
        self.inode = inode
        self.writable = writable
        self.fileSystem = fileSystem
        self.generation = generation
    }

    public var size: Int {
        get throws {
            try fileSystem.check(self, "fstat")
            return inode.cache.count
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        try fileSystem.write(self, bytes, at: offset)
    }

    public func read(count: Int, at offset: Int) throws -> [UInt8] {
        try fileSystem.check(self, "read")
        guard offset < inode.cache.count else { return [] }
        return Array(inode.cache[offset..<min(offset + count, inode.cache.count)])
    }

    public func sync(dataOnly: Bool) throws {
        try fileSystem.sync(self)
    }

    public func truncate(to length: Int) throws {
        try fileSystem.truncate(self, to: length)
    }

    public func preallocate(length: Int) {
        fileSystem.preallocate(self, length: length)
    }
}
