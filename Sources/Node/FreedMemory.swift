import Dispatch

#if os(Linux)
    import CMalloc
#endif

/// Hands freed heap pages back to the kernel.
///
/// glibc's allocator returns memory to the kernel only from the top of its heap. Memory freed amid live allocations
/// stays resident until it is reused: the log entries a member replays at start-up (up to `--snapshot-count` of them,
/// 400 MB of 4 KiB values) were dropped from memory right after start-up, yet the member's RSS stayed 360 MB above
/// what it held. `malloc_trim` releases the free pages wherever they are. It walks the allocator's free lists while
/// holding each arena's lock, so it runs on a thread of its own and only after large drops (`RaftDriver`).
enum FreedMemory {
    static func releaseInBackground() {
        #if os(Linux)
            DispatchQueue.global(qos: .utility).async { _ = malloc_trim(0) }
        #endif
    }
}
