#!/usr/bin/env bash
# CPU per request, for A/B runs of two builds on a noisy machine (where requests per second vary by 10 % from run to
# run, the server's CPU time per request varies less): one member on loopback loaded with KEYS keys of VAL bytes
# (64 clients), `sync`, then OP (put or get) at CLIENTS clients for DURATION; prints requests per second, p99, and the
# server's user + system CPU time over the run divided by the requests.
#
#   for i in 1 2 3; do for b in /tmp/quorum-a /tmp/quorum-b; do QUORUM=$b scripts/bench-cpu.sh; done; done
#   OP=get KEYS=1000000 VAL=256 SERVER=etcd35 scripts/bench-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER="${SERVER:-quorum}"
OP="${OP:-put}"
KEYS="${KEYS:-100000}"
VAL="${VAL:-4096}"
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-10s}"
QUORUM="${QUORUM:-$PWD/.build-bench/release/quorum}"
. scripts/bench-common.sh
bench_work bench-cpu

BIN="$WORK/scalebench"
bench_go_build scripts/bench-scale "$BIN"
exe="$(bench_binary "$SERVER")"
port=$((25000 + RANDOM % 2000))
bench_start_member "$exe" "$WORK/data" "$port" "$WORK/member.log" --quota-backend-bytes $((16 << 30))
bench_wait_member "$port" "$WORK/member.log"
"$BIN" load --endpoint "127.0.0.1:$port" --keys "$KEYS" --val-size "$VAL" --clients 64 >/dev/null
sync
ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
before=$(ticks)
out=$("$BIN" run --endpoint "127.0.0.1:$port" --keys "$KEYS" --val-size "$VAL" --op "$OP" --clients "$CLIENTS" \
    --duration "$DURATION")
after=$(ticks)
python3 - "$out" "$before" "$after" "$(getconf CLK_TCK)" <<'PY'
import json, sys
run, before, after, hz = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cpu_us = (after - before) * 1e6 / hz / run["requests"]
print(f"{run['op']}: {run['qps']:.0f} req/s, p99 {run['p99_ms']:.1f} ms, {cpu_us:.1f} us of server CPU per request")
PY
