#!/usr/bin/env bash
# Stalls that hold every client at once: one member on loopback with 1,000 keys (the "empty" database of
# bench-scale.sh), CLIENTS clients putting VAL-byte values for DURATION, every request's start and latency recorded
# (`scalebench run --timeline`); then the requests over SLOW ms merged into episodes (overlapping in time), with the
# gap between one episode and the next. A periodic episode that holds all the clients is a stall on the server's
# path (a checkpoint, a log rotation); scattered slow requests are not. The server's backend-commit and WAL-fsync
# histograms for the run are printed beside it, as are its warnings.
#
#   SERVER=quorum scripts/bench-stalls.sh            # QUORUM, as for the other scripts
#   SERVER=etcd35 DURATION=20s scripts/bench-stalls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER="${SERVER:-quorum}"
VAL="${VAL:-4096}"
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-10s}"
SLOW="${SLOW:-20}"
QUORUM="${QUORUM:-$PWD/.build-bench/release/quorum}"
. scripts/bench-common.sh
bench_work bench-stalls
BIN="$WORK/scalebench"
bench_go_build scripts/bench-scale "$BIN"
exe="$(bench_binary "$SERVER")"
port=$((23000 + RANDOM % 2000))
bench_start_member "$exe" "$WORK/data" "$port" "$WORK/server.log" --quota-backend-bytes $((8 << 30))
bench_wait_member "$port" "$WORK/server.log"
"$BIN" load --endpoint "127.0.0.1:$port" --keys 1000 --val-size "$VAL" --clients "$CLIENTS" >/dev/null
curl -s "http://127.0.0.1:$port/metrics" >"$WORK/before"
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) $SERVER: $exe; val=$VAL clients=$CLIENTS" \
    "duration=$DURATION, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" run --endpoint "127.0.0.1:$port" --keys 1000 --val-size "$VAL" --op put --clients "$CLIENTS" \
    --duration "$DURATION" --timeline "$WORK/timeline"
curl -s "http://127.0.0.1:$port/metrics" >"$WORK/after"
python3 - "$WORK/timeline" "$SLOW" "$WORK/before" "$WORK/after" <<'PY'
import sys
rows = sorted(tuple(map(float, line.split())) for line in open(sys.argv[1]))
slow = float(sys.argv[2])
latencies = sorted(r[1] for r in rows)
q = lambda p: latencies[int(p * (len(latencies) - 1))]
print("%d requests: p50 %.2f ms, p99 %.2f ms, max %.1f ms; %d over %.0f ms"
      % (len(latencies), q(0.5), q(0.99), latencies[-1], sum(1 for l in latencies if l > slow), slow))
episodes = []
for start, end in sorted((s, s + l) for s, l in rows if l > slow):
    if episodes and start <= episodes[-1][1]:
        episodes[-1][1] = max(episodes[-1][1], end)
        episodes[-1][2] += 1
    else:
        episodes.append([start, end, 1])
print("%d episodes of requests over %.0f ms (start ms, length ms, requests, gap from the previous ms):"
      % (len(episodes), slow))
previous = None
for start, end, n in episodes:
    gap = "-" if previous is None else "%.0f" % (start - previous)
    print("  %9.1f  %6.1f  %4d  %s" % (start, end - start, n, gap))
    previous = start

def histogram(path, name):
    buckets = {}
    for line in open(path):
        if line.startswith(name + "_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            buckets[le] = float(line.rsplit(" ", 1)[1])
    return buckets
for name in ("etcd_disk_backend_commit_duration_seconds", "etcd_disk_wal_fsync_duration_seconds"):
    before, after = histogram(sys.argv[3], name), histogram(sys.argv[4], name)
    previous, parts = 0.0, []
    for le, count in after.items():
        n = count - before.get(le, 0.0)
        if n - previous > 0:
            parts.append("<=%s s: %d" % (le, n - previous))
        previous = n
    print("%s during the run: %s" % (name, ", ".join(parts) or "none"))
PY
grep -E '"level":"(warn|error)"' "$WORK/server.log" | tail -5 || true
