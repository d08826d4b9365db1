#!/usr/bin/env bash
# The memory a member holds after a restart: one member on loopback loaded with KEYS puts of VAL bytes (64 clients;
# fewer than --snapshot-count, 100,000, so that start-up replays all of them from the write-ahead log), stopped with
# SIGTERM, started again; prints its RSS split into heap (RssAnon) and mapped file pages (RssFile) after the load,
# right after the restart and 3 s later. With GDB_TRIM=1 it then has gdb call glibc's malloc_trim(0) in the member
# and prints the RSS again: what the allocator held in freed pages.
#
#   QUORUM=/tmp/quorum-a scripts/bench-restart-memory.sh
#   KEYS=95000 VAL=4096 GDB_TRIM=1 QUORUM=/tmp/quorum-a scripts/bench-restart-memory.sh
#
# The client is scripts/bench-scale/main.go (scalebench) on Debian's clientv3, built here in GOPATH mode.
set -euo pipefail
cd "$(dirname "$0")/.."
QUORUM="${QUORUM:-$PWD/.build-bench/release/quorum}"
KEYS="${KEYS:-95000}"
VAL="${VAL:-4096}"
. scripts/bench-common.sh
bench_work bench-restart-memory
BIN="$WORK/scalebench"
bench_go_build scripts/bench-scale "$BIN"
port=$((25000 + RANDOM % 1000))
rss() {
    echo "$1: $(awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s %d MB  ", $1, $2 / 1024 }' "/proc/$PID/status")"
}
echo "# $(date -u +%FT%TZ) $QUORUM keys=$KEYS val=$VAL, load $(cut -d' ' -f1-3 /proc/loadavg)"
bench_start_member "$QUORUM" "$WORK/data" "$port" "$WORK/member.log"
"$BIN" ready --endpoint "127.0.0.1:$port" --timeout 1m >/dev/null
"$BIN" load --endpoint "127.0.0.1:$port" --keys "$KEYS" --val-size "$VAL" --clients 64 >/dev/null
rss "after the load"
bench_stop -TERM
bench_start_member "$QUORUM" "$WORK/data" "$port" "$WORK/member.log"
"$BIN" ready --endpoint "127.0.0.1:$port" --timeout 1m >/dev/null
rss "after the restart"
sleep 3
rss "3 s later"
if [ -n "${GDB_TRIM:-}" ]; then
    gdb -p "$PID" -batch -ex "call (int)malloc_trim(0)" >/dev/null 2>&1 || echo "# gdb could not attach"
    rss "after malloc_trim"
fi
