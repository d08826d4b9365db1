import Dispatch

#if os(Linux)
    import CMalloc
#endif

/// glibc's allocator, fitted to a member: what it keeps of memory the member freed.
public enum Allocator {
    /// Arenas the allocator may create. glibc's default is eight per core, and a thread takes an arena of its own when
    /// the one it used is busy; every arena keeps its freed chunks. Ten seconds of puts and ten of gets from 64 clients
    /// (each miss of the value cache a 4 KiB value allocated on one thread and freed on another) grew the heap by
    /// 374 MB with the default (sixteen on two cores), 195 MB with four arenas and 19 MB with one; the CPU per put and
    /// per get with four was the default's within the noise, and one arena cost a third of the puts
    /// (docs/BENCHMARKS.md).
    public static let arenas: Int32 = 4

    /// Limits the arenas to `arenas` unless the operator set `MALLOC_ARENA_MAX`; called first thing at start, before
    /// any thread allocates.
    public static func limitArenas(environment: [String: String]) {
        #if os(Linux)
            if environment["MALLOC_ARENA_MAX"] == nil { _ = mallopt(M_ARENA_MAX, arenas) }
        #endif
    }

    /// Hands freed heap pages back to the kernel.
    ///
    /// glibc returns memory to the kernel only from the top of its heap. Memory freed amid live allocations stays
    /// resident until it is reused: the log entries a member replays at start-up (up to `--snapshot-count` of them,
    /// 400 MB of 4 KiB values) were dropped from memory right after start-up, yet the member's RSS stayed 360 MB above
    /// what it held. `malloc_trim` releases the free pages wherever they are. It walks the allocator's free lists
    /// while holding each arena's lock, so it runs on a thread of its own and only after large drops (`RaftDriver`).
    static func releaseFreedPagesInBackground() {
        #if os(Linux)
            DispatchQueue.global(qos: .utility).async { _ = malloc_trim(0) }
        #endif
    }
}
