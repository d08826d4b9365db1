#!/usr/bin/env python3
"""How long SQLite's incremental vacuum takes per page and per commit, outside the member.

Builds a database of the member's history schema (rows of 256-byte values under ~100,000 keys, ROUNDS versions each,
auto_vacuum=INCREMENTAL, WAL), deletes all but the newest version of each key, then returns the free pages the way a
Defragment step does: `PRAGMA incremental_vacuum(1)` repeatedly inside one transaction for STEP_MS, then COMMIT, with
the journal checkpointed at 4,096 frames as the member's writer does. Prints the longest page move and the longest
commit, and every one over 20 ms.

    python3 scripts/vacuum-steps.py [DIR]      # ROUNDS=30 (about 1 GB), STEP_MS=4
"""
import os
import sqlite3
import sys
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
path = os.path.join(directory, "vacuum-steps.db")
rounds = int(os.environ.get("ROUNDS", "30"))
step = float(os.environ.get("STEP_MS", "4")) / 1000
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(path + suffix):
        os.remove(path + suffix)

db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA page_size=4096")
db.execute("PRAGMA auto_vacuum=INCREMENTAL")
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute("PRAGMA wal_autocheckpoint=4096")
db.execute("""CREATE TABLE revs(rev INTEGER, sub INTEGER, key BLOB, create_rev INTEGER, version INTEGER,
    lease INTEGER, value BLOB, vlen INTEGER, PRIMARY KEY(rev, sub)) WITHOUT ROWID""")
db.execute("CREATE INDEX revs_meta ON revs(rev, sub, key, create_rev, version, lease, vlen)")
value = os.urandom(256)
rev = 1
for r in range(rounds):
    db.execute("BEGIN")
    for i in range(100000):
        if i % 128 == 0:
            rev += 1
        db.execute("INSERT INTO revs VALUES(?,?,?,?,?,?,?,?)", (rev, i % 128, b"key-%08d" % i, 1, r + 1, 0, value, 256))
    db.execute("COMMIT")
db.execute("DELETE FROM revs WHERE version < ?", (rounds,))
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
free = db.execute("PRAGMA freelist_count").fetchone()[0]
print(f"{os.path.getsize(path) / 1e9:.2f} GB, {free} free pages")

steps = pages = 0
longest_page = longest_commit = 0.0
slow_pages, slow_commits = [], []
started = time.time()
while free > 0:
    db.execute("BEGIN IMMEDIATE")
    begun = time.perf_counter()
    while True:
        a = time.perf_counter()
        db.execute("PRAGMA incremental_vacuum(1)")
        b = time.perf_counter()
        pages += 1
        longest_page = max(longest_page, b - a)
        if b - a > 0.02:
            slow_pages.append(round((b - a) * 1000))
        if b - begun >= step:
            break
    a = time.perf_counter()
    db.execute("COMMIT")
    took = time.perf_counter() - a
    steps += 1
    longest_commit = max(longest_commit, took)
    if took > 0.02:
        slow_commits.append(round(took * 1000))
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
print(f"{steps} steps, {pages} pages in {time.time() - started:.1f} s; longest page move {longest_page * 1000:.1f} ms, "
      f"longest commit {longest_commit * 1000:.1f} ms")
print(f"page moves over 20 ms (ms): {slow_pages}")
print(f"commits over 20 ms (ms): {slow_commits}")
db.close()
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(path + suffix):
        os.remove(path + suffix)
