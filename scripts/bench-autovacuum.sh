#!/usr/bin/env bash
# What auto_vacuum=INCREMENTAL (SQLite's pointer-map pages, needed for defragmenting in steps) costs on puts: the
# same Quorum binary on a fresh data dir (INCREMENTAL, as a new member creates it) and on one whose database was
# rebuilt with auto_vacuum=NONE (as members created before it are), alternated REPS times. One member on loopback;
# etcd's Go client (../shared/bench's etcdload), CLIENTS clients over 8 connections, DURATION per run, VAL-byte values.
#
#   scripts/bench-autovacuum.sh
#   QUORUM=path/to/quorum REPS=3 CLIENTS=64 VAL=256 DURATION=15s scripts/bench-autovacuum.sh
#
# Quorum: swift build -c release --product quorum --scratch-path .build-bench
set -euo pipefail
cd "$(dirname "$0")/.."
QUORUM="${QUORUM:-$PWD/.build-bench/release/quorum}"
REPS="${REPS:-3}"
CLIENTS="${CLIENTS:-64}"
VAL="${VAL:-256}"
DURATION="${DURATION:-15s}"
. scripts/bench-common.sh
bench_work bench-autovacuum
LOAD="$(BENCH_BIN="$WORK/bin" ../shared/bench/build.sh 2>/dev/null | tail -1)"

port=$((25000 + RANDOM % 2000))
start() {
    bench_start_member "$QUORUM" "$WORK/data" "$port" "$WORK/quorum.log"
    bench_wait_member "$port" "$WORK/quorum.log"
}
stop() {
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
}

echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) clients=$CLIENTS val=$VAL duration=$DURATION;" \
    "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq 1 "$REPS"); do
    for mode in NONE INCREMENTAL; do
        rm -rf "$WORK/data"
        start
        if [ "$mode" = NONE ]; then
            stop
            python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.executescript("PRAGMA auto_vacuum=NONE; VACUUM;")
assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0' "$WORK/data/member/snap/db"
            start
        fi
        echo "$mode rep=$rep $("$LOAD" --endpoints "127.0.0.1:$port" --workload put --clients "$CLIENTS" --conns 8 \
            --total 100000000 --duration "$DURATION" --val-size "$VAL" --key-space 100000)"
        stop
    done
done
