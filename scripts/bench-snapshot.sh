#!/usr/bin/env bash
# Snapshot save and restore of a ~1 GiB database: Quorum beside etcd 3.4.23 and 3.5.1, same data, same client.
#
# For each server: one member (../shared/bench/cluster.sh), loaded with etcdload (values of VALUE_BYTES, TOTAL puts),
# then `etcdctl snapshot save` (3.4's etcdctl for every server) while the server's RSS is sampled every 50 ms, then
# the file is restored by the server's own tool (quorumctl snapshot restore, etcdctl 3.4 snapshot restore,
# etcdutl 3.5 snapshot restore), timed, with the tool's peak RSS (/usr/bin/time). Prints one JSON line per server.
#
#   BENCH_BIN=/tmp/benchbin ../shared/bench/build.sh                       # builds etcdload
#   swift build -c release --static-swift-stdlib -Xlinker -no-pie --product quorum --product quorumctl \
#       --scratch-path .build-bench
#   BENCH_BIN=/tmp/benchbin QUORUM_BIN=.build-bench/release/quorum QUORUMCTL=.build-bench/release/quorumctl \
#       scripts/bench-snapshot.sh
#
# SERVERS="quorum etcd34 etcd35" picks and orders the servers; etcd34 is ETCD34_BIN (default: etcd on PATH, Debian's
# 3.4.23), etcd35 is ETCD35_BIN (default: fetched by scripts/etcd35.sh, which also gives etcdutl); a server that is not
# available is skipped with a note on stderr.
#
# Every load is bounded (TOTAL puts); the data directories and snapshot files are removed after each server.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
ETCDLOAD="${ETCDLOAD:-${BENCH_BIN:-${TMPDIR:-/tmp}/etcdbench-bin}/etcdload}"
QUORUM_BIN="$(readlink -f "${QUORUM_BIN:-$ROOT/.build-bench/release/quorum}")"
QUORUMCTL="$(readlink -f "${QUORUMCTL:-$ROOT/.build-bench/release/quorumctl}")"
VALUE_BYTES="${VALUE_BYTES:-10240}"
TOTAL="${TOTAL:-105000}"
SERVERS="${SERVERS:-quorum etcd34 etcd35}"
ETCD34_BIN="$(command -v "${ETCD34_BIN:-etcd}" || true)"
ETCD35_BIN="${ETCD35_BIN:-}"
if [[ " $SERVERS " == *" etcd35 "* ]] && [ -z "$ETCD35_BIN" ]; then
    ETCD35_BIN="$("$ROOT/scripts/etcd35.sh" 2>/dev/null)/etcd" || ETCD35_BIN=""
fi
ETCD35_UTL="$(dirname "${ETCD35_BIN:-/nonexistent/etcd}")/etcdutl"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-snapshot.XXXXXX")"
trap '"$SHARED_BENCH/cluster.sh" stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
export STATE_DIR="$WORK/state" DATA_ROOT="$WORK"

rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

for server in $SERVERS; do
    case "$server" in
        quorum) bin="$QUORUM_BIN"; tool="$QUORUMCTL" ;;
        etcd34) bin="$ETCD34_BIN"; tool="$(command -v etcdctl || true)" ;;
        etcd35) bin="$ETCD35_BIN"; tool="$ETCD35_UTL" ;;
        *) echo "bench-snapshot: unknown server $server (quorum, etcd34, etcd35)" >&2; exit 1 ;;
    esac
    if [ -z "$bin" ] || [ ! -x "$bin" ] || [ -z "$tool" ] || [ ! -x "$tool" ]; then
        echo "bench-snapshot: skipping $server: server '${bin:-etcd 3.5.1: scripts/etcd35.sh failed, give ETCD35_BIN}' or restore tool '${tool}' not executable" >&2
        continue
    fi
    SERVER_EXTRA_FLAGS="--quota-backend-bytes=8589934592" "$SHARED_BENCH/cluster.sh" "$bin" 1 >/dev/null
    # shellcheck disable=SC1091
    . "$STATE_DIR/env"
    pid="${PIDS%% *}"
    ep="${ENDPOINTS%%,*}"; case "$ep" in http*) ;; *) ep="http://$ep" ;; esac
    "$ETCDLOAD" --endpoints "$ENDPOINTS" --workload put --clients 16 --conns 4 --val-size "$VALUE_BYTES" \
        --key-space 100000000 --total "$TOTAL" --duration 600s >/dev/null
    db_bytes="$(ETCDCTL_API=3 etcdctl --endpoints "$ep" endpoint status -w json | python3 -c \
        'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])')"
    base="$(rss_kb "$pid")"
    peak="$base"
    file="$WORK/$server.db"
    ( while kill -0 "$pid" 2>/dev/null; do r="$(rss_kb "$pid")"; echo "$r"; sleep 0.05; done ) > "$WORK/rss" &
    sampler=$!
    start=$(date +%s.%N)
    ETCDCTL_API=3 etcdctl --endpoints "$ep" --command-timeout=600s snapshot save "$file" >/dev/null 2>&1
    save_s=$(echo "$(date +%s.%N) - $start" | bc)
    kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
    peak="$(sort -n "$WORK/rss" | tail -1)"
    "$SHARED_BENCH/cluster.sh" stop >/dev/null 2>&1
    file_bytes="$(stat -c %s "$file")"
    case "$server" in
        quorum) restore=("$QUORUMCTL" snapshot restore "$file" --data-dir "$WORK/restored") ;;
        etcd34) restore=(env ETCDCTL_API=3 etcdctl snapshot restore "$file" --data-dir "$WORK/restored") ;;
        etcd35) restore=("$ETCD35_UTL" snapshot restore "$file" --data-dir "$WORK/restored") ;;
    esac
    /usr/bin/time -f '%e %M' -o "$WORK/restore.time" "${restore[@]}" >/dev/null 2>&1
    read -r restore_wall restore_peak_kb < "$WORK/restore.time"
    rm -rf "$WORK/restored" "$file"
    python3 - <<PY
import json
print(json.dumps({"server": "$server", "db_bytes": $db_bytes, "snapshot_bytes": $file_bytes,
    "save_s": round($save_s, 2), "save_mb_per_s": round($file_bytes / 1e6 / $save_s, 1),
    "server_rss_before_mb": round($base / 1024, 1), "server_rss_peak_during_save_mb": round($peak / 1024, 1),
    "server_rss_increase_mb": round(($peak - $base) / 1024, 1),
    "restore_s": float("$restore_wall"), "restore_tool_peak_rss_mb": round($restore_peak_kb / 1024, 1)}))
PY
done
