#include <sqlite3.h>

/// An open file of Quorum's `DiskVFS` (Storage/SQLite/DiskVFS.swift): SQLite's base struct first, as every VFS's
/// file subclass must begin, then the Swift object that serves it (an Unmanaged pointer: C callbacks cannot
/// capture Swift context).
typedef struct QuorumVFSFile {
    sqlite3_file base;
    void *owner;
} QuorumVFSFile;

/// Seeds SQLite's process-wide PRNG (WAL salts, temporary names) with `seed`, or back from the default VFS with 0.
/// A variadic call Swift cannot make itself.
static inline int quorum_sqlite3_seed_randomness(int seed) {
    return sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, seed, (sqlite3 *)0);
}
