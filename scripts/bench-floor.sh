#!/usr/bin/env bash
# The physical floor of a single-client put on one member: the WAL's own fdatasync time (from /metrics) plus a
# loopback gRPC round trip (a serializable range), beside the put's latency. Prints one JSON line per server and
# round.
#
#   BENCH_BIN=/tmp/benchbin scripts/bench-floor.sh                      # etcd34, etcd35 and quorum, one round
#   BENCH_BIN=/tmp/benchbin ROUNDS=2 scripts/bench-floor.sh etcd34 etcd35 quorum   # interleaved, order rotating
#   BENCH_BIN=/tmp/benchbin scripts/bench-floor.sh .build-bench/release/quorum     # any binary, as before
#   BENCH_BIN=/tmp/benchbin scripts/bench-floor.sh /usr/bin/etcd
#
# A server is a binary path or a name: etcd34 (ETCD34_BIN, default /usr/bin/etcd), etcd35 (ETCD35_BIN, default
# etcd 3.5.1 fetched by scripts/etcd35.sh) or quorum (QUORUM_BIN, default .build-bench/release/quorum). A name
# whose binary is not available is skipped with a note. ROUNDS=N repeats the list N times, rotated by one server
# per round, so each server is measured first equally often.
#
# Each load run is bounded (8 s); the member is started and stopped by ../shared/bench/cluster.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
ETCDLOAD="${ETCDLOAD:-${BENCH_BIN:-${TMPDIR:-/tmp}/etcdbench-bin}/etcdload}"
ROUNDS="${ROUNDS:-1}"
[ "$#" -gt 0 ] || set -- etcd34 etcd35 quorum
trap '"$SHARED_BENCH/cluster.sh" stop >/dev/null 2>&1 || true' EXIT

NAMES=() BINS=()
for arg in "$@"; do
    bin=""
    case "$arg" in
        etcd34) bin="${ETCD34_BIN:-/usr/bin/etcd}" ;;
        etcd35)
            if [ -n "${ETCD35_BIN:-}" ]; then bin="$ETCD35_BIN"
            elif dir="$("$ROOT/scripts/etcd35.sh" 2>/dev/null)"; then bin="$dir/etcd"
            else echo "bench-floor: skipping etcd35: scripts/etcd35.sh could not fetch it (give ETCD35_BIN)" >&2; continue
            fi ;;
        quorum) bin="${QUORUM_BIN:-$ROOT/.build-bench/release/quorum}" ;;
        *) bin="$arg" ;;
    esac
    if [ ! -x "$bin" ]; then echo "bench-floor: skipping $arg: no executable $bin" >&2; continue; fi
    NAMES+=("$arg"); BINS+=("$bin")
done
[ "${#NAMES[@]}" -gt 0 ] || { echo "bench-floor: no server to measure" >&2; exit 1; }

measure() {  # measure NAME BIN ROUND
    local name="$1" BIN="$2" round="$3" EP E s0 c0 s1 c1 put rng
    EP="$("$SHARED_BENCH/cluster.sh" "$BIN" 1 2>/dev/null)"
    E="${EP%%,*}"; case "$E" in http*) ;; *) E="http://$E" ;; esac
    fsyncs() { curl -s "$E/metrics" | awk '/^etcd_disk_wal_fsync_duration_seconds_(sum|count)/{printf "%s ", $2}'; }
    read -r s0 c0 <<< "$(fsyncs)"
    put="$("$ETCDLOAD" --endpoints "$EP" --workload put --clients 1 --conns 1 --total 1000000 --duration 8s)"
    read -r s1 c1 <<< "$(fsyncs)"
    rng="$("$ETCDLOAD" --endpoints "$EP" --workload range-serializable --clients 1 --conns 1 --total 1000000 --duration 8s)"
    "$SHARED_BENCH/cluster.sh" stop >/dev/null 2>&1 || true
    python3 - "$put" "$rng" "$s0" "$c0" "$s1" "$c1" "$BIN" "$name" "$round" <<'PY'
import json, sys
put, rng = json.loads(sys.argv[1]), json.loads(sys.argv[2])
s, c = float(sys.argv[5]) - float(sys.argv[3]), float(sys.argv[6]) - float(sys.argv[4])
fsync = 1000 * s / c if c else None
floor = fsync + rng["p50_ms"] if fsync is not None else None
print(json.dumps({"server": sys.argv[7], "name": sys.argv[8], "round": int(sys.argv[9]),
                  "put_p50_ms": put["p50_ms"], "put_qps": put["qps"],
                  "round_trip_p50_ms": rng["p50_ms"], "wal_fsync_mean_ms": fsync and round(fsync, 3),
                  "floor_ms": floor and round(floor, 3), "put_over_floor": floor and round(put["p50_ms"] / floor, 2)}))
PY
}

n="${#NAMES[@]}"
for round in $(seq 1 "$ROUNDS"); do
    for ((i = 0; i < n; i++)); do
        j=$(((i + round - 1) % n))
        measure "${NAMES[$j]}" "${BINS[$j]}" "$round"
    done
done
