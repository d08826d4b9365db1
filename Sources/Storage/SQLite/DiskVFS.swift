import CSQLite
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A SQLite VFS over any `Disk`, so that the real SQLite code (pager, WAL, checkpoints, recovery) runs on the
/// simulated disk (`Simulation.SimFileSystem`) the way the write-ahead log already does.
///
/// Production does not use it: a member opens its database with SQLite's own unix VFS (`SQLiteConnection` without a
/// VFS), at unchanged speed. This VFS mirrors what the unix VFS does on Linux wherever durability depends on it:
/// - `xSync` is the file's `sync` (`fdatasync` with `SQLITE_SYNC_DATAONLY`), and the first sync of a journal or WAL
///   file that was opened with `SQLITE_OPEN_CREATE` also syncs its directory, as the unix VFS's `UNIXFILE_DIRSYNC`
///   does: `Disk`'s contract makes a created name durable only then. Unlike the unix VFS, which ignores a failed
///   directory fsync, a failure is reported (`SQLITE_IOERR_DIR_FSYNC`) and retried at the next sync. The main
///   database file's name gets no directory sync, as on POSIX: it becomes durable with the WAL's.
/// - `xAccess(EXISTS)` counts an empty file as absent, as the unix VFS does (SQLite relies on it for an empty WAL).
/// - Sector size 4096 and `SQLITE_IOCAP_POWERSAFE_OVERWRITE`, the unix VFS's defaults on Linux.
/// - Locks: all connections are in this process, so the lock levels (SHARED/RESERVED/PENDING/EXCLUSIVE) live in a
///   table per database path with the unix VFS's in-process rules (its `unixInodeInfo`), and `xShmLock`'s eight
///   slots are shared or exclusive per connection as in `unixShmLock`.
/// - Shared memory (the WAL index) is process memory shared by the connections of one database path, dropped when
///   the last one unmaps it. It is not durable, as the real `-shm` file is not: SQLite rebuilds the index from the
///   WAL when it finds it empty.
/// - No memory mapping: `xFetch` returns no page, so SQLite reads through `xRead` even with `mmap_size` set.
///
/// Randomness (`xRandomness`), time and sleep come from the owner, so a simulated run is deterministic. SQLite
/// draws WAL salts from its own PRNG, which it seeds from the *default* VFS; `seedSQLiteRandomness` seeds that.
///
/// `restart()` is what a power cut does to the process: every shm region and lock is forgotten and every file open
/// before it fails from then on (closing an old connection then cannot checkpoint, unlock or delete anything).
///
/// Concurrency: SQLite serialises the calls of one connection, but connections of one database (the writer and
/// the pooled readers) may call from different threads. Every call takes `lock` around its disk access and the
/// shared tables (the lock table, the shm regions and their slots, the generation, the random state), which is
/// what makes the `@unchecked Sendable` sound and also lets a `Disk` that is not thread-safe (`SimFileSystem`) serve
/// several connections. A shm region's bytes are SQLite's to synchronise (its own locks and `xShmBarrier`).
public final class DiskVFS: @unchecked Sendable {
    /// The name SQLite knows the VFS by (`sqlite3_open_v2`'s last argument).
    public let name: String
    let temporaryDirectory: String
    let sleeper: @Sendable (Int) -> Void
    let clock: @Sendable () -> Int64

    private let vfs: UnsafeMutablePointer<sqlite3_vfs>
    private let vfsName: UnsafeMutablePointer<CChar>
    let methods: UnsafeMutablePointer<sqlite3_io_methods>

    let lock = NSLock()
    // Guarded by `lock`.
    let disk: ErasedDisk
    var generation = 0
    var randomState: UInt64
    var fileLocks: [String: FileLocks] = [:]
    var sharedMemory: [String: SharedMemory] = [:]

    private static let instances = Atomic<Int>(0)

    /// Registers a VFS over `disk` (not as SQLite's default). Temporary files (`zName` NULL: statement journals,
    /// the temp database) go to `temporaryDirectory`, which must exist on the disk. `seed` drives `xRandomness`,
    /// `sleep` receives microseconds (a simulation returns at once), `now` is milliseconds since the Unix epoch.
    public init<D: Disk>(
        disk: D, temporaryDirectory: String, seed: UInt64, sleep: @escaping @Sendable (Int) -> Void = { _ in },
        now: @escaping @Sendable () -> Int64 = { 0 }
    ) {
        name = "quorum-disk-\(Self.instances.add(1, ordering: .relaxed).newValue)"
        self.temporaryDirectory = temporaryDirectory
        self.disk = ErasedDisk(disk)
        randomState = seed
        sleeper = sleep
        clock = now
        vfsName = strdup(name)!
        methods = .allocate(capacity: 1)
        methods.initialize(to: DiskVFSCallbacks.ioMethodsTemplate)
        vfs = .allocate(capacity: 1)
        vfs.initialize(to: DiskVFSCallbacks.vfsTemplate)
        vfs.pointee.szOsFile = Int32(MemoryLayout<QuorumVFSFile>.stride)
        vfs.pointee.zName = UnsafePointer(vfsName)
        vfs.pointee.pAppData = Unmanaged.passUnretained(self).toOpaque()
        sqlite3_vfs_register(vfs, 0)
    }

    /// Every connection opened on the VFS holds it (`SQLiteConnection.vfs`), so none is left when this runs.
    deinit {
        sqlite3_vfs_unregister(vfs)
        vfs.deallocate()
        methods.deinitialize(count: 1)
        methods.deallocate()
        free(vfsName)
    }

    /// A process restart after a power cut: forgets every lock and shm region and disowns every open file.
    public func restart() {
        lock.withLock {
            generation += 1
            fileLocks.removeAll()
            sharedMemory.removeAll()
        }
    }

    /// Seeds SQLite's own PRNG (process-wide: WAL salts come from it, not from `xRandomness`); 0 returns it to the
    /// default VFS's randomness. For deterministic simulated runs.
    public static func seedSQLiteRandomness(_ seed: UInt32) {
        _ = quorum_sqlite3_seed_randomness(Int32(bitPattern: seed))
    }

    /// SplitMix64, under `lock`.
    func nextRandom() -> UInt64 {
        randomState &+= 0x9E37_79B9_7F4A_7C15
        var z = randomState
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The calls of a `Disk` the VFS makes, with the handle type erased: C callbacks cannot be generic.
struct ErasedDisk {
    let open: (String, _ writable: Bool, _ create: Bool) throws -> any DiskFile
    let exists: (String) -> Bool
    let remove: (String) throws -> Void
    let syncDirectory: (String) throws -> Void
    let rename: (String, String) throws -> Void

    init<D: Disk>(_ disk: D) {
        open = { path, writable, create in
            try disk.open(path, writable: writable, create: create, truncate: false, mode: 0o644)
        }
        exists = { disk.exists($0) }
        remove = { try disk.remove($0) }
        syncDirectory = { try disk.syncDirectory($0) }
        rename = { try disk.rename($0, to: $1) }
    }
}

/// The file operations a database on the VFS needs beside SQLite's own (`Backend.replace` swapping in an image,
/// snapshot images written and removed), on the same disk and under the same lock as the VFS's callbacks.
extension DiskVFS {
    public func removeFile(_ path: String) throws { try lock.withLock { try disk.remove(path) } }
    public func renameFile(_ from: String, to: String) throws { try lock.withLock { try disk.rename(from, to) } }
    public func syncDirectory(_ directory: String) throws { try lock.withLock { try disk.syncDirectory(directory) } }
    public func syncFile(_ path: String) throws {
        try lock.withLock { try disk.open(path, true, false).sync(dataOnly: false) }
    }
    public func fileSize(_ path: String) -> Int? {
        lock.withLock { try? disk.open(path, false, false).size }
    }
}

/// The lock state of one database file among this process's connections (the unix VFS's `unixInodeInfo`): the
/// highest level any connection holds, and how many hold SHARED or more.
final class FileLocks {
    var level = SQLITE_LOCK_NONE
    var shared = 0
}

/// The WAL index of one database: regions of process memory and the eight `xShmLock` slots.
final class SharedMemory {
    var regions: [UnsafeMutableRawPointer] = []
    var regionSize = 0
    /// Each mapped connection's shared and exclusive slots, as bit masks.
    var holders: [ObjectIdentifier: (shared: UInt16, exclusive: UInt16)] = [:]

    deinit {
        for region in regions { region.deallocate() }
    }
}

/// One file SQLite opened on a `DiskVFS`.
final class DiskVFSFile {
    let vfs: DiskVFS
    let file: any DiskFile
    let path: String
    let generation: Int
    let deleteOnClose: Bool
    /// A journal or WAL this open may have created: its first sync also syncs the directory.
    var syncDirectory: Bool
    var lockLevel = SQLITE_LOCK_NONE
    var shm: SharedMemory?

    init(vfs: DiskVFS, file: any DiskFile, path: String, deleteOnClose: Bool, syncDirectory: Bool) {
        self.vfs = vfs
        self.file = file
        self.path = path
        self.generation = vfs.generation
        self.deleteOnClose = deleteOnClose
        self.syncDirectory = syncDirectory
    }

    /// Whether the file was opened since the last `restart` (under the VFS's lock).
    var isCurrent: Bool { generation == vfs.generation }

    var directory: String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

// SQLite's extended I/O error codes (`SQLITE_IOERR | n << 8`): macros Swift does not import.
let SQLITE_IOERR_READ = SQLITE_IOERR | 1 << 8
let SQLITE_IOERR_SHORT_READ = SQLITE_IOERR | 2 << 8
let SQLITE_IOERR_WRITE = SQLITE_IOERR | 3 << 8
let SQLITE_IOERR_FSYNC = SQLITE_IOERR | 4 << 8
let SQLITE_IOERR_DIR_FSYNC = SQLITE_IOERR | 5 << 8
let SQLITE_IOERR_TRUNCATE = SQLITE_IOERR | 6 << 8
let SQLITE_IOERR_FSTAT = SQLITE_IOERR | 7 << 8
let SQLITE_IOERR_DELETE = SQLITE_IOERR | 10 << 8
let SQLITE_IOERR_CHECKRESERVEDLOCK = SQLITE_IOERR | 14 << 8
let SQLITE_IOERR_LOCK = SQLITE_IOERR | 15 << 8
let SQLITE_IOERR_SHMSIZE = SQLITE_IOERR | 19 << 8
let SQLITE_IOERR_SHMLOCK = SQLITE_IOERR | 20 << 8
let SQLITE_IOERR_SHMMAP = SQLITE_IOERR | 21 << 8

/// SQLite's result code for a failed disk call: a full disk is `SQLITE_FULL`, anything else the operation's I/O error.
private func code(_ error: any Error, _ ioError: Int32) -> Int32 {
    if let error = error as? FileError, error.errno == ENOSPC { return SQLITE_FULL }
    return ioError
}

/// The C entry points. Each finds its Swift object (the VFS in `pAppData`, the file in `QuorumVFSFile.owner`) and
/// works under the VFS's lock.
enum DiskVFSCallbacks {
    static func vfs(_ pointer: UnsafeMutablePointer<sqlite3_vfs>?) -> DiskVFS {
        Unmanaged<DiskVFS>.fromOpaque(pointer!.pointee.pAppData).takeUnretainedValue()
    }

    static func file(_ pointer: UnsafeMutablePointer<sqlite3_file>?) -> DiskVFSFile {
        let raw = UnsafeMutableRawPointer(pointer!).assumingMemoryBound(to: QuorumVFSFile.self)
        return Unmanaged<DiskVFSFile>.fromOpaque(raw.pointee.owner).takeUnretainedValue()
    }

    /// Runs `body` on the file under its VFS's lock; a file from before a `restart` gets `stale`.
    static func withFile(
        _ pointer: UnsafeMutablePointer<sqlite3_file>?, stale: Int32, _ body: (DiskVFSFile) -> Int32
    ) -> Int32 {
        let f = file(pointer)
        return f.vfs.lock.withLock { f.isCurrent ? body(f) : stale }
    }

    // MARK: sqlite3_vfs

    static var vfsTemplate: sqlite3_vfs {
        var v = sqlite3_vfs()
        v.iVersion = 2
        v.mxPathname = 512
        v.xOpen = { vfs, name, file, flags, outFlags in DiskVFSCallbacks.open(vfs, name, file, flags, outFlags) }
        v.xDelete = { vfs, name, syncDirectory in
            let owner = DiskVFSCallbacks.vfs(vfs)
            let path = String(cString: name!)
            return owner.lock.withLock {
                do {
                    try owner.disk.remove(path)
                    if syncDirectory != 0 {
                        let slash = path.lastIndex(of: "/") ?? path.startIndex
                        try owner.disk.syncDirectory(slash == path.startIndex ? "/" : String(path[..<slash]))
                    }
                    return SQLITE_OK
                } catch {
                    return SQLITE_IOERR_DELETE
                }
            }
        }
        v.xAccess = { vfs, name, flags, result in
            let owner = DiskVFSCallbacks.vfs(vfs)
            let path = String(cString: name!)
            let exists = owner.lock.withLock { () -> Bool in
                guard owner.disk.exists(path) else { return false }
                guard flags == SQLITE_ACCESS_EXISTS else { return true }
                // The unix VFS counts an empty regular file as absent.
                return ((try? owner.disk.open(path, false, false).size) ?? 0) > 0
            }
            result!.pointee = exists ? 1 : 0
            return SQLITE_OK
        }
        v.xFullPathname = { _, name, count, out in
            let path = name!
            let length = strlen(path)
            guard length < Int(count) else { return SQLITE_CANTOPEN }
            memcpy(out!, path, length + 1)
            return SQLITE_OK
        }
        v.xDlOpen = { _, _ in nil }
        v.xDlError = { _, count, out in
            guard count > 0, let out else { return }
            _ = "extensions are not loaded on a DiskVFS".withCString { strncpy(out, $0, Int(count) - 1) }
            out[Int(count) - 1] = 0
        }
        v.xDlSym = { _, _, _ in nil }
        v.xDlClose = { _, _ in }
        v.xRandomness = { vfs, count, out in
            let owner = DiskVFSCallbacks.vfs(vfs)
            owner.lock.withLock {
                for i in 0..<Int(count) { out![i] = CChar(truncatingIfNeeded: owner.nextRandom()) }
            }
            return count
        }
        v.xSleep = { vfs, microseconds in
            DiskVFSCallbacks.vfs(vfs).sleeper(Int(microseconds))
            return microseconds
        }
        v.xCurrentTime = { vfs, days in
            days!.pointee =
                Double(DiskVFSCallbacks.julianEpochMilliseconds + DiskVFSCallbacks.vfs(vfs).clock()) / 86_400_000
            return SQLITE_OK
        }
        v.xGetLastError = { _, _, _ in 0 }
        v.xCurrentTimeInt64 = { vfs, milliseconds in
            milliseconds!.pointee = DiskVFSCallbacks.julianEpochMilliseconds + DiskVFSCallbacks.vfs(vfs).clock()
            return SQLITE_OK
        }
        return v
    }

    /// The Unix epoch as a Julian day number in milliseconds (what `xCurrentTimeInt64` counts from).
    static let julianEpochMilliseconds: Int64 = 210_866_760_000_000

    static func open(
        _ vfsPointer: UnsafeMutablePointer<sqlite3_vfs>?, _ name: UnsafePointer<CChar>?,
        _ filePointer: UnsafeMutablePointer<sqlite3_file>?, _ flags: Int32, _ outFlags: UnsafeMutablePointer<Int32>?
    ) -> Int32 {
        let owner = vfs(vfsPointer)
        let raw = UnsafeMutableRawPointer(filePointer!).assumingMemoryBound(to: QuorumVFSFile.self)
        raw.pointee.base.pMethods = nil
        raw.pointee.owner = nil
        let writable = flags & SQLITE_OPEN_READWRITE != 0
        let create = flags & SQLITE_OPEN_CREATE != 0
        let journal = flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL | SQLITE_OPEN_WAL) != 0
        return owner.lock.withLock {
            let path =
                name.map { String(cString: $0) }
                ?? owner.temporaryDirectory + "/etilqs_" + String(owner.nextRandom(), radix: 16)
            if flags & SQLITE_OPEN_EXCLUSIVE != 0 && owner.disk.exists(path) { return SQLITE_CANTOPEN }
            let handle: any DiskFile
            do {
                handle = try owner.disk.open(path, writable, create)
            } catch {
                return SQLITE_CANTOPEN
            }
            let file = DiskVFSFile(
                vfs: owner, file: handle, path: path, deleteOnClose: flags & SQLITE_OPEN_DELETEONCLOSE != 0,
                syncDirectory: create && journal)
            raw.pointee.owner = Unmanaged.passRetained(file).toOpaque()
            raw.pointee.base.pMethods = UnsafePointer(owner.methods)
            outFlags?.pointee = flags
            return SQLITE_OK
        }
    }

    // MARK: sqlite3_io_methods

    static var ioMethodsTemplate: sqlite3_io_methods {
        var m = sqlite3_io_methods()
        m.iVersion = 3
        m.xClose = { pointer in
            let f = DiskVFSCallbacks.file(pointer)
            f.vfs.lock.withLock {
                if f.isCurrent {
                    DiskVFSCallbacks.unmap(f)
                    DiskVFSCallbacks.unlock(f, to: SQLITE_LOCK_NONE)
                    if f.deleteOnClose { try? f.vfs.disk.remove(f.path) }
                }
            }
            let raw = UnsafeMutableRawPointer(pointer!).assumingMemoryBound(to: QuorumVFSFile.self)
            Unmanaged<DiskVFSFile>.fromOpaque(raw.pointee.owner).release()
            raw.pointee.owner = nil
            return SQLITE_OK
        }
        m.xRead = { pointer, buffer, count, offset in
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_IOERR_READ) { f in
                let bytes: [UInt8]
                do {
                    bytes = try f.file.read(count: Int(count), at: Int(offset))
                } catch {
                    return SQLITE_IOERR_READ
                }
                let out = buffer!
                bytes.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                guard bytes.count < Int(count) else { return SQLITE_OK }
                // SQLite requires the rest zeroed: it reads a short page as a new one.
                memset(out + bytes.count, 0, Int(count) - bytes.count)
                return SQLITE_IOERR_SHORT_READ
            }
        }
        m.xWrite = { pointer, buffer, count, offset in
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_IOERR_WRITE) { f in
                do {
                    try f.file.write(UnsafeRawBufferPointer(start: buffer, count: Int(count)), at: Int(offset))
                    return SQLITE_OK
                } catch {
                    return code(error, SQLITE_IOERR_WRITE)
                }
            }
        }
        m.xTruncate = { pointer, size in
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_IOERR_TRUNCATE) { f in
                do {
                    try f.file.truncate(to: Int(size))
                    return SQLITE_OK
                } catch {
                    return code(error, SQLITE_IOERR_TRUNCATE)
                }
            }
        }
        m.xSync = { pointer, flags in
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_IOERR_FSYNC) { f in
                do {
                    try f.file.sync(dataOnly: flags & SQLITE_SYNC_DATAONLY != 0)
                } catch {
                    return SQLITE_IOERR_FSYNC
                }
                guard f.syncDirectory else { return SQLITE_OK }
                do {
                    try f.vfs.disk.syncDirectory(f.directory)
                } catch {
                    return SQLITE_IOERR_DIR_FSYNC
                }
                f.syncDirectory = false
                return SQLITE_OK
            }
        }
        m.xFileSize = { pointer, size in
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_IOERR_FSTAT) { f in
                do {
                    size!.pointee = sqlite3_int64(try f.file.size)
                    return SQLITE_OK
                } catch {
                    return SQLITE_IOERR_FSTAT
                }
            }
        }
        m.xLock = { pointer, level in
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_IOERR_LOCK) { DiskVFSCallbacks.lock($0, to: level) }
        }
        m.xUnlock = { pointer, level in
            // A file from before a restart holds nothing in the new table: unlocking it changes nothing.
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_OK) { f in
                DiskVFSCallbacks.unlock(f, to: level)
                return SQLITE_OK
            }
        }
        m.xCheckReservedLock = { pointer, result in
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_IOERR_CHECKRESERVEDLOCK) { f in
                result!.pointee = (f.vfs.fileLocks[f.path]?.level ?? SQLITE_LOCK_NONE) > SQLITE_LOCK_SHARED ? 1 : 0
                return SQLITE_OK
            }
        }
        m.xFileControl = { _, _, _ in SQLITE_NOTFOUND }
        m.xSectorSize = { _ in 4096 }
        m.xDeviceCharacteristics = { _ in SQLITE_IOCAP_POWERSAFE_OVERWRITE }
        m.xShmMap = { pointer, region, size, extend, out in
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_IOERR_SHMMAP) { f in
                DiskVFSCallbacks.map(f, region: Int(region), size: Int(size), extend: extend != 0, out: out!)
            }
        }
        m.xShmLock = { pointer, offset, count, flags in
            DiskVFSCallbacks.withFile(pointer, stale: SQLITE_IOERR_SHMLOCK) { f in
                DiskVFSCallbacks.shmLock(f, offset: Int(offset), count: Int(count), flags: flags)
            }
        }
        m.xShmBarrier = { pointer in
            // Taking and releasing the lock is a full memory barrier between the connections' threads.
            let f = DiskVFSCallbacks.file(pointer)
            f.vfs.lock.withLock {}
        }
        m.xShmUnmap = { pointer, _ in
            let f = DiskVFSCallbacks.file(pointer)
            f.vfs.lock.withLock {
                if f.isCurrent { DiskVFSCallbacks.unmap(f) } else { f.shm = nil }
            }
            return SQLITE_OK
        }
        m.xFetch = { _, _, _, out in
            out!.pointee = nil
            return SQLITE_OK
        }
        m.xUnfetch = { _, _, _ in SQLITE_OK }
        return m
    }

    // MARK: Locks (under the VFS's lock)

    /// The unix VFS's in-process rules (`unixLock`): a connection waiting for EXCLUSIVE holds PENDING, which keeps new
    /// readers out; EXCLUSIVE needs every other connection's SHARED gone.
    static func lock(_ f: DiskVFSFile, to level: Int32) -> Int32 {
        if f.lockLevel >= level { return SQLITE_OK }
        let locks = f.vfs.fileLocks[f.path] ?? FileLocks()
        f.vfs.fileLocks[f.path] = locks
        if f.lockLevel != locks.level && (locks.level >= SQLITE_LOCK_PENDING || level > SQLITE_LOCK_SHARED) {
            return SQLITE_BUSY
        }
        if level == SQLITE_LOCK_SHARED {
            locks.shared += 1
            if locks.level == SQLITE_LOCK_NONE { locks.level = SQLITE_LOCK_SHARED }
            f.lockLevel = SQLITE_LOCK_SHARED
            return SQLITE_OK
        }
        if level == SQLITE_LOCK_EXCLUSIVE && locks.shared > 1 {
            f.lockLevel = SQLITE_LOCK_PENDING
            locks.level = SQLITE_LOCK_PENDING
            return SQLITE_BUSY
        }
        f.lockLevel = level
        locks.level = level
        return SQLITE_OK
    }

    static func unlock(_ f: DiskVFSFile, to level: Int32) {
        guard f.lockLevel > level, let locks = f.vfs.fileLocks[f.path] else { return }
        if f.lockLevel > SQLITE_LOCK_SHARED { locks.level = SQLITE_LOCK_SHARED }
        if level == SQLITE_LOCK_NONE {
            locks.shared -= 1
            if locks.shared == 0 { locks.level = SQLITE_LOCK_NONE }
        }
        f.lockLevel = level
    }

    // MARK: Shared memory (under the VFS's lock)

    static func map(
        _ f: DiskVFSFile, region: Int, size: Int, extend: Bool, out: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    ) -> Int32 {
        let shm: SharedMemory
        if let mapped = f.shm {
            shm = mapped
        } else {
            shm = f.vfs.sharedMemory[f.path] ?? SharedMemory()
            f.vfs.sharedMemory[f.path] = shm
            shm.holders[ObjectIdentifier(f)] = (0, 0)
            f.shm = shm
        }
        if shm.regionSize == 0 { shm.regionSize = size }
        guard shm.regionSize == size else { return SQLITE_IOERR_SHMSIZE }
        if region >= shm.regions.count {
            guard extend else {
                out.pointee = nil
                return SQLITE_OK
            }
            while shm.regions.count <= region {
                let memory = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
                memory.initializeMemory(as: UInt8.self, repeating: 0, count: size)
                shm.regions.append(memory)
            }
        }
        out.pointee = shm.regions[region]
        return SQLITE_OK
    }

    /// Releases the connection's slots; the regions go with the last connection (the next one rebuilds the index).
    static func unmap(_ f: DiskVFSFile) {
        guard let shm = f.shm else { return }
        shm.holders[ObjectIdentifier(f)] = nil
        f.shm = nil
        if shm.holders.isEmpty && f.vfs.sharedMemory[f.path] === shm { f.vfs.sharedMemory[f.path] = nil }
    }

    /// `unixShmLock`'s rules: a shared slot conflicts with another's exclusive one, an exclusive slot with any other
    /// holder.
    static func shmLock(_ f: DiskVFSFile, offset: Int, count: Int, flags: Int32) -> Int32 {
        guard let shm = f.shm, offset >= 0, count > 0, offset + count <= Int(SQLITE_SHM_NLOCK) else {
            return SQLITE_IOERR_SHMLOCK
        }
        let me = ObjectIdentifier(f)
        let mask = UInt16((1 << (offset + count)) - (1 << offset))
        var mine = shm.holders[me] ?? (0, 0)
        if flags & SQLITE_SHM_UNLOCK != 0 {
            mine.shared &= ~mask
            mine.exclusive &= ~mask
        } else if flags & SQLITE_SHM_SHARED != 0 {
            if mine.shared & mask == 0 {
                for (holder, slots) in shm.holders where holder != me && slots.exclusive & mask != 0 {
                    return SQLITE_BUSY
                }
                mine.shared |= mask
            }
        } else {
            for (holder, slots) in shm.holders where holder != me && (slots.exclusive | slots.shared) & mask != 0 {
                return SQLITE_BUSY
            }
            mine.exclusive |= mask
        }
        shm.holders[me] = mine
        return SQLITE_OK
    }
}
