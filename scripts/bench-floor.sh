#!/usr/bin/env bash
# The physical floor of a single-client put on one member: the WAL's own fdatasync time (from /metrics) plus a
# loopback gRPC round trip (a serializable range), beside the put's latency. Prints one JSON line.
#
#   BENCH_BIN=/tmp/benchbin scripts/bench-floor.sh .build-bench/release/quorum
#   BENCH_BIN=/tmp/benchbin scripts/bench-floor.sh /usr/bin/etcd
#
# Each load run is bounded (8 s); the member is started and stopped by ../shared/bench/cluster.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
ETCDLOAD="${ETCDLOAD:-${BENCH_BIN:-${TMPDIR:-/tmp}/etcdbench-bin}/etcdload}"
BIN="$1"
EP="$("$SHARED_BENCH/cluster.sh" "$BIN" 1 2>/dev/null)"
trap '"$SHARED_BENCH/cluster.sh" stop >/dev/null 2>&1 || true' EXIT
E="${EP%%,*}"; case "$E" in http*) ;; *) E="http://$E" ;; esac
fsyncs() { curl -s "$E/metrics" | awk '/^etcd_disk_wal_fsync_duration_seconds_(sum|count)/{printf "%s ", $2}'; }
read -r s0 c0 <<< "$(fsyncs)"
put="$("$ETCDLOAD" --endpoints "$EP" --workload put --clients 1 --conns 1 --total 1000000 --duration 8s)"
read -r s1 c1 <<< "$(fsyncs)"
rng="$("$ETCDLOAD" --endpoints "$EP" --workload range-serializable --clients 1 --conns 1 --total 1000000 --duration 8s)"
python3 - "$put" "$rng" "$s0" "$c0" "$s1" "$c1" "$BIN" <<'PY'
import json, sys
put, rng = json.loads(sys.argv[1]), json.loads(sys.argv[2])
s, c = float(sys.argv[5]) - float(sys.argv[3]), float(sys.argv[6]) - float(sys.argv[4])
fsync = 1000 * s / c if c else None
floor = fsync + rng["p50_ms"] if fsync is not None else None
print(json.dumps({"server": sys.argv[7], "put_p50_ms": put["p50_ms"], "put_qps": put["qps"],
                  "round_trip_p50_ms": rng["p50_ms"], "wal_fsync_mean_ms": fsync and round(fsync, 3),
                  "floor_ms": floor and round(floor, 3), "put_over_floor": floor and round(put["p50_ms"] / floor, 2)}))
PY
