#!/usr/bin/env bash
# How long a member takes to stop (SIGTERM) in the middle of a Defragment: one member on loopback, ROUNDS x 100,000
# puts of 256-byte values over the same 100,000 keys (transactions of 128), a physical compaction of all but the newest
# versions, then `etcdctl defrag` in the background and a SIGTERM AFTER seconds later. Prints the stop's duration and
# the member's `finished defragmenting` line ("how":"stopped" when the stop cut it short).
#
#   scripts/bench-stop-during-defrag.sh                 # ROUNDS=20 (about 770 MB of history), AFTER=1
#   QUORUM=/tmp/quorum-old ROUNDS=20 AFTER=1 scripts/bench-stop-during-defrag.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-20}"
AFTER="${AFTER:-1}"
QUORUM="${QUORUM:-$PWD/.build-bench/release/quorum}"
. scripts/bench-common.sh
bench_work bench-stop-during-defrag
BIN="$WORK/scalebench"
bench_go_build scripts/bench-scale "$BIN"
ETCDCTL="$(dirname "$(bench_binary etcd35)")/etcdctl"
port=$((26000 + RANDOM % 2000))
bench_start_member "$QUORUM" "$WORK/data" "$port" "$WORK/member.log" --quota-backend-bytes $((8 << 30))
"$BIN" ready --endpoint "127.0.0.1:$port" --timeout 1m >/dev/null
for _ in $(seq 1 "$ROUNDS"); do
    "$BIN" load --endpoint "127.0.0.1:$port" --keys 100000 --val-size 256 --clients 64 --batch 128 >/dev/null
done
E=("$ETCDCTL" --endpoints "127.0.0.1:$port" --command-timeout 10m)
rev=$("${E[@]}" endpoint status -w json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
"${E[@]}" compact "$rev" --physical
"${E[@]}" endpoint status -w table
"${E[@]}" defrag >"$WORK/defrag.out" 2>&1 &
sleep "$AFTER"
t0=$(date +%s.%N)
bench_stop -TERM
t1=$(date +%s.%N)
echo "stop took $(python3 -c "print(round($t1 - $t0, 2))") s"
grep -o '"msg":"finished defragmenting"[^}]*' "$WORK/member.log" || echo "no defragment finished"
wait || true
