#!/usr/bin/env bash
# Tails of large-value puts, two Quorum binaries alternated REPS times (A, B, A, B, ...): one member on loopback, a
# fresh data dir per run, etcd's Go client (../shared/bench's etcdload) putting VAL-byte values with CLIENTS clients
# over 8 connections for DURATION. Per run: qps, p50/p99/max; the apply loop's backend commits over 64 ms (from
# etcd_disk_backend_commit_duration_seconds) and the member's "took too long" warnings. Written for the checkpoint
# moving off the apply loop (BackgroundCheckpointer): with 64 KiB values a checkpoint inside a COMMIT held it 100 ms.
#
#   A=/tmp/quorum-before B=.build-bench/release/quorum scripts/bench-commit-tail.sh
#   REPS=3 VAL=65536 CLIENTS=64 DURATION=20s A=... B=... scripts/bench-commit-tail.sh
set -euo pipefail
cd "$(dirname "$0")/.."
A="${A:?A=path to the first quorum binary}"
B="${B:?B=path to the second quorum binary}"
REPS="${REPS:-3}"
CLIENTS="${CLIENTS:-64}"
VAL="${VAL:-65536}"
DURATION="${DURATION:-20s}"
. scripts/bench-common.sh
bench_work bench-commit-tail
LOAD="$(BENCH_BIN="$WORK/bin" ../shared/bench/build.sh 2>/dev/null | tail -1)"

port=$((25000 + RANDOM % 2000))
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) val=$VAL clients=$CLIENTS duration=$DURATION" \
    "reps=$REPS; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# A: $A (built $(date -u -r "$A" +%FT%TZ)); B: $B (built $(date -u -r "$B" +%FT%TZ))"
printf '%-3s %3s %8s %8s %8s %8s %14s %9s\n' bin rep qps p50_ms p99_ms max_ms commits_64ms+ warnings
for rep in $(seq 1 "$REPS"); do
    for which in A B; do
        exe="${!which}"
        rm -rf "$WORK/data"
        : >"$WORK/quorum.log"
        bench_start_member "$exe" "$WORK/data" "$port" "$WORK/quorum.log" --quota-backend-bytes $((8 << 30))
        bench_wait_member "$port" "$WORK/quorum.log"
        out=$("$LOAD" --endpoints "127.0.0.1:$port" --workload put --clients "$CLIENTS" --conns 8 \
            --val-size "$VAL" --key-space 100000 --total 10000000 --duration "$DURATION")
        slow=$(curl -s "http://127.0.0.1:$port/metrics" | awk -F'[{}" ]' '
            /^etcd_disk_backend_commit_duration_seconds_bucket/ { if ($3 == "0.064") le64 = $NF; if ($3 == "+Inf") all = $NF }
            END { print all - le64 }')
        warnings=$(grep -c "took too long" "$WORK/quorum.log" || true)
        kill "$PID"
        wait "$PID" 2>/dev/null || true
        PID=""
        echo "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
w, rep, slow, warnings = sys.argv[1:5]
print("%-3s %3s %8.0f %8.2f %8.2f %8.1f %14s %9s" % (w, rep, r["qps"], r["p50_ms"], r["p99_ms"], r["max_ms"], slow, warnings))
' "$which" "$rep" "$slow" "$warnings"
    done
done
