#!/usr/bin/env bash
# Quorum beside real etcd 3.4: the same workload matrix, the same load generator, the same flags, on the same
# machine, interleaved run by run (etcd, Quorum, Quorum, etcd, ...), and one table of medians and ratios.
#
#   scripts/bench-matrix.sh                          # everything: 1 and 3 members, 3 reps, start-up, recovery
#   REPS=1 SIZES=1 DURATION=5 ONLY="put-c1 put-c64" RECOVERY_KEYS=0 scripts/bench-matrix.sh   # a quick look
#   CLIENTS="etcdload quorum-bench" scripts/bench-matrix.sh   # also drive every row with Quorum's Swift client
#   scripts/bench-matrix.sh --summarize DIR          # reprint the table of an earlier run
#
# Environment (all optional):
#   QUORUM_BIN=       the server to measure; default: a release build made here in .build-bench, with the Swift
#                     runtime linked in (--static-swift-stdlib) at a fixed address (-no-pie), as Quorum is deployed
#                     and as etcd ships one binary
#   ETCD_BIN=/usr/bin/etcd  the reference (Debian's etcd-server 3.4)
#   REPS=3            interleaved repetitions (a fresh cluster of each server per repetition and size)
#   SIZES="1 3"       cluster sizes; a server that cannot start a size gets "n/a" there, the rest goes on
#   DURATION=10       seconds per run (each run is also capped at TOTAL requests)
#   TOTAL=2000000     request cap per run
#   ONLY=             subset of row labels (put-c1 put-c64 put-c256 range-lin-c64 range-ser-c64 txn-put-c64
#                     watch-w100 lease-ka-c64)
#   CLIENTS=etcdload  load generators: etcdload (etcd's Go clientv3, neutral) and/or quorum-bench (Swift)
#   RECOVERY_KEYS=1000000  keys written before the kill -9 / restart measurement (0: skip it)
#   RECOVERY_REPS=3   kill -9 / restart cycles per server on the same data
#   QUIET_WAIT=0      before each pair of runs wait up to this many seconds for the machine's CPU busy
#                     <= QUIET_PCT (15) percent (the machine is shared: say so in the results)
#   DATA_ROOT=$TMPDIR where data directories go (the disk under measurement; fsync_probe.py measures it)
#   OUT_DIR=          results folder (default: $TMPDIR/quorum-bench-matrix/YYYYmmdd-HHMMSS)
#   SHARED_BENCH=     ../shared/bench beside the checkout
#   ETCD_PORT_BASE=26379 QUORUM_PORT_BASE=27379   client ports (member i: +100*i; peers +1; recovery member +500);
#                     below Linux's ephemeral range (32768+), so no client socket of the run can hold one
#
# Output: OUT_DIR/runs.jsonl (one JSON line per run: the load generator's result plus server, members, rep,
# WAL fsyncs, committed proposals, peak RSS, CPU shares), OUT_DIR/fsync.jsonl, OUT_DIR/summary.md (printed).
# Every load run is bounded by count and time; only processes started here are stopped, by pid.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
TMPROOT="${TMPDIR:-/tmp}"

summarize() {
    python3 - "$1" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl")) if l.strip()]
meta = json.load(open(os.path.join(d, "meta.json"))) if os.path.exists(os.path.join(d, "meta.json")) else {}
ORDER = ["put-c1", "put-c64", "put-c256", "range-lin-c64", "range-ser-c64", "txn-put-c64", "watch-w100", "lease-ka-c64"]
def med(v):
    v = [x for x in v if isinstance(x, (int, float))]
    return statistics.median(v) if v else None
def f(v, nd=1):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))
def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None

out = []
out.append(f"Machine: {meta.get('machine', '?')}; load average at start {meta.get('loadavg_start', '?')}, "
           f"at end {meta.get('loadavg_end', '?')}")
out.append(f"Servers: etcd `{meta.get('etcd_version', '?')}`, Quorum `{meta.get('quorum_bin', '?')}`; "
           f"{meta.get('reps', '?')} interleaved reps, {meta.get('duration_s', '?')} s per run")
fp = os.path.join(d, "fsync.jsonl")
if os.path.exists(fp):
    for l in open(fp):
        if l.strip():
            p = json.loads(l)
            out.append(f"fdatasync probe ({p['mode']}, {p['block']} B x {p['iterations']}): p50 {p['p50_ms']:.3f} ms, "
                       f"p99 {p['p99_ms']:.3f} ms -> <= {p['implied_max_seq_commits_per_s']:.0f} sequential commits/s")
out.append("")
groups = {}
for r in runs:
    if r.get("kind") != "load":
        continue
    groups.setdefault((r["members"], r["label"], r["client"]), {}).setdefault(r["server"], {})[r["rep"]] = r
out.append("Ratios are medians of the per-repetition ratios Quorum/etcd (paired runs); absolute numbers are medians.")
out.append("Goal columns: how far Quorum is from the 1.5x throughput / 0.5x RSS goal (>= 1.00 means reached).")
out.append("")
out.append("| members | run | client | etcd qps | Quorum qps | **qps Q/E** | etcd p99 ms | Quorum p99 ms | p99 Q/E "
           "| etcd RSS MB | Quorum RSS MB | RSS Q/E | etcd fsync/s | Quorum fsync/s | etcd writes/fsync "
           "| Quorum writes/fsync | etcd CPU us/op | Quorum CPU us/op | errors E/Q | to 1.5x qps | to 0.5x RSS | equal? |")
out.append("|" + "---|" * 22)
summary = []
def key(k):
    return (k[0], ORDER.index(k[1]) if k[1] in ORDER else 99, k[2])
for k in sorted(groups, key=key):
    g = groups[k]
    e, q = g.get("etcd", {}), g.get("quorum", {})
    def m(side, field):
        return med([r.get(field) for r in side.values()])
    reps = sorted(set(e) & set(q))
    qr = med([ratio(q[i].get("qps"), e[i].get("qps")) for i in reps])
    pr = med([ratio(q[i].get("p99_ms"), e[i].get("p99_ms")) for i in reps])
    rr = med([ratio(q[i].get("vmhwm_max_kb"), e[i].get("vmhwm_max_kb")) for i in reps])
    ok = None
    if qr is not None and pr is not None and rr is not None:
        ok = qr >= 1.0 and pr <= 1.0 and rr <= 1.0
    rss_e, rss_q = m(e, "vmhwm_max_kb"), m(q, "vmhwm_max_kb")
    row = dict(members=k[0], label=k[1], client=k[2], reps=len(reps), etcd_qps=m(e, "qps"), quorum_qps=m(q, "qps"),
               qps_ratio=qr, etcd_p99_ms=m(e, "p99_ms"), quorum_p99_ms=m(q, "p99_ms"), p99_ratio=pr,
               etcd_rss_mb=rss_e and rss_e / 1024, quorum_rss_mb=rss_q and rss_q / 1024, rss_ratio=rr,
               etcd_fsyncs_per_s=m(e, "wal_fsyncs_per_s"), quorum_fsyncs_per_s=m(q, "wal_fsyncs_per_s"),
               etcd_writes_per_fsync=m(e, "writes_per_fsync"), quorum_writes_per_fsync=m(q, "writes_per_fsync"),
               etcd_cpu_us_per_op=m(e, "server_cpu_us_per_op"), quorum_cpu_us_per_op=m(q, "server_cpu_us_per_op"),
               etcd_errors=sum(r.get("errors") or 0 for r in e.values()),
               quorum_errors=sum(r.get("errors") or 0 for r in q.values()),
               to_goal_qps=qr and qr / 1.5, to_goal_rss=rr and 0.5 / rr, at_least_equal=ok)
    summary.append(row)
    if not q:
        verdict = "n/a (no Quorum runs)"
    else:
        verdict = "-" if ok is None else ("yes" if ok else "**no**")
    out.append(f"| {k[0]} | {k[1]} | {k[2]} | {f(row['etcd_qps'], 0)} | {f(row['quorum_qps'], 0)} | **{f(qr, 2)}** "
               f"| {f(row['etcd_p99_ms'], 2)} | {f(row['quorum_p99_ms'], 2)} | {f(pr, 2)} "
               f"| {f(row['etcd_rss_mb'], 0)} | {f(row['quorum_rss_mb'], 0)} | {f(rr, 2)} "
               f"| {f(row['etcd_fsyncs_per_s'], 0)} | {f(row['quorum_fsyncs_per_s'], 0)} "
               f"| {f(row['etcd_writes_per_fsync'], 1)} | {f(row['quorum_writes_per_fsync'], 1)} "
               f"| {f(row['etcd_cpu_us_per_op'], 0)} | {f(row['quorum_cpu_us_per_op'], 0)} "
               f"| {row['etcd_errors']}/{row['quorum_errors']} | {f(row['to_goal_qps'], 2)} | {f(row['to_goal_rss'], 2)} | {verdict} |")
out.append("")
for kind, field, title in (("startup", "startup_s", "start-up to healthy"), ("recovery", "recovery_s", "recovery after kill -9")):
    by = {}
    for r in runs:
        if r.get("kind") == kind:
            by.setdefault((r["members"], r.get("keys", 0)), {}).setdefault(r["server"], []).append(r)
    for (n, keys), g in sorted(by.items()):
        e = [r[field] for r in g.get("etcd", []) if r.get(field) is not None]
        q = [r[field] for r in g.get("quorum", []) if r.get(field) is not None]
        extra = f" with {keys} keys" if keys else ""
        me, mq = med(e), med(q)
        rss = ""
        if kind == "recovery":
            re_, rq = med([r.get("vmhwm_kb") for r in g.get("etcd", [])]), med([r.get("vmhwm_kb") for r in g.get("quorum", [])])
            if re_ and rq:
                rss = f"; peak RSS after recovery etcd {re_/1024:.0f} MB, Quorum {rq/1024:.0f} MB (Q/E {rq/re_:.2f})"
        out.append(f"- {title}, {n} member(s){extra}: etcd median {f(me, 3)} s ({', '.join(f(x, 3) for x in e)}), "
                   f"Quorum median {f(mq, 3)} s ({', '.join(f(x, 3) for x in q)}), Q/E {f(ratio(mq, me), 2)}{rss}")
        summary.append(dict(kind=kind, members=n, keys=keys, etcd_s=me, quorum_s=mq, ratio=ratio(mq, me)))
json.dump(summary, open(os.path.join(d, "summary.json"), "w"), indent=1)
print("\n".join(out))
PY
}

if [ "${1:-}" = "--summarize" ]; then
    summarize "$2" | tee "$2/summary.md"
    exit 0
fi

ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"
REPS="${REPS:-3}"
SIZES="${SIZES:-1 3}"
DURATION="${DURATION:-10}"
TOTAL="${TOTAL:-2000000}"
ONLY="${ONLY:-}"
CLIENTS="${CLIENTS:-etcdload}"
RECOVERY_KEYS="${RECOVERY_KEYS:-1000000}"
RECOVERY_REPS="${RECOVERY_REPS:-3}"
DATA_ROOT="${DATA_ROOT:-$TMPROOT}"
OUT_DIR="${OUT_DIR:-$TMPROOT/quorum-bench-matrix/$(date +%Y%m%d-%H%M%S)}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-120}"
mkdir -p "$OUT_DIR"
RUNS="$OUT_DIR/runs.jsonl"
: > "$RUNS"
log() { echo "bench-matrix: $*" >&2; }

# --- binaries ----------------------------------------------------------------------------------------------------
if [ -z "${QUORUM_BIN:-}" ]; then
    log "building quorum (release) in .build-bench"
    (cd "$ROOT" && swift build -c release --static-swift-stdlib -Xlinker -no-pie --product quorum --scratch-path .build-bench >&2)
    QUORUM_BIN="$ROOT/.build-bench/release/quorum"
fi
BENCH_BIN_DIR="${BENCH_BIN:-$TMPROOT/etcdbench-bin}"
ETCDLOAD="${ETCDLOAD:-$BENCH_BIN_DIR/etcdload}"
if [ ! -x "$ETCDLOAD" ]; then
    log "building etcdload"
    ETCDLOAD="$(BENCH_BIN="$BENCH_BIN_DIR" "$SHARED_BENCH/build.sh" | tail -1)"
fi
SWIFT_CLIENT=""
if [[ " $CLIENTS " == *" quorum-bench "* ]]; then
    SWIFT_CLIENT="${QUORUM_BENCH_BIN:-$ROOT/.build-bench/release/quorum-bench}"
    if [ ! -x "$SWIFT_CLIENT" ]; then
        (cd "$ROOT" && swift build -c release --static-swift-stdlib -Xlinker -no-pie --product quorum-bench --scratch-path .build-bench >&2)
    fi
fi
for b in "$ETCD_BIN" "$QUORUM_BIN" "$ETCDLOAD"; do [ -x "$b" ] || { log "missing binary $b"; exit 1; }; done
CLUSTER="$SHARED_BENCH/cluster.sh"
HZ="$(getconf CLK_TCK)"

declare -A BIN=([etcd]="$ETCD_BIN" [quorum]="$QUORUM_BIN")
declare -A PORTS=([etcd]="${ETCD_PORT_BASE:-26379}" [quorum]="${QUORUM_PORT_BASE:-27379}")
state_dir() { echo "$TMPROOT/quorum-bench-matrix-state-$1"; }

python3 - "$OUT_DIR/meta.json" <<PY
import json, sys, os
json.dump({"machine": "$(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ *//')",
           "loadavg_start": "$(cut -d' ' -f1-3 /proc/loadavg)", "etcd_version": "$("$ETCD_BIN" --version 2>/dev/null | head -1)",
           "quorum_bin": "$QUORUM_BIN", "reps": $REPS, "duration_s": $DURATION, "sizes": "$SIZES", "clients": "$CLIENTS",
           "data_root": "$DATA_ROOT"}, open(sys.argv[1], "w"))
PY

# --- helpers -----------------------------------------------------------------------------------------------------
cleanup() {
    for s in etcd quorum; do
        STATE_DIR="$(state_dir "$s")" "$CLUSTER" stop >/dev/null 2>&1 || true
    done
    stop_recovery_members
}
RECOVERY_PIDS=()
stop_recovery_members() {
    local p
    for p in "${RECOVERY_PIDS[@]}"; do
        [ -n "$p" ] && [ -d "/proc/$p" ] && kill -TERM "$p" 2>/dev/null || true
    done
    RECOVERY_PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

metric() {  # metric NAME URLS -> "sum max" over the members ("" if absent)
    local name="$1" u v vals=""
    for u in $2; do
        v="$(curl -s --max-time 5 "$u" 2>/dev/null | awk -v n="$name" '$1==n {printf "%.0f", $2}')" || true
        [ -n "$v" ] && vals+="$v "
    done
    [ -n "$vals" ] && echo "$vals" | awk '{s=0; m=0; for(i=1;i<=NF;i++){s+=$i; if($i>m)m=$i} print s, m}'
    return 0
}
pids_cpu() { local p s=0 v; for p in $1; do v="$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)"; s=$((s + v)); done; echo "$s"; }
pids_kb() {  # "max_hwm sum_rss" in kB
    local p mx=0 sr=0 h r
    for p in $1; do
        h="$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)"; h=${h:-0}
        r="$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)"; r=${r:-0}
        [ "$h" -gt "$mx" ] && mx=$h
        sr=$((sr + r))
    done
    echo "$mx $sr"
}
cpu_busy_total() { awk '/^cpu /{t=0; for(i=2;i<=9;i++) t+=$i; print t-$5-$6, t}' /proc/stat; }
wait_quiet() {
    local max="${QUIET_WAIT:-0}" thr="${QUIET_PCT:-15}" waited=0 b0 t0 b1 t1 pct=0
    [ "$max" -gt 0 ] || return 0
    while [ "$waited" -lt "$max" ]; do
        read -r b0 t0 <<< "$(cpu_busy_total)"; sleep 3; read -r b1 t1 <<< "$(cpu_busy_total)"
        pct=$(( 100 * (b1 - b0) / ((t1 - t0) > 0 ? (t1 - t0) : 1) ))
        [ "$pct" -le "$thr" ] && return 0
        waited=$((waited + 3))
    done
    log "machine still ${pct}% busy after ${max}s; going on"
}

# label|etcdload args|quorum-bench args. "_" labels prepare (the range rows read these 10000 keys).
MATRIX=(
  "put-c1|--workload put --clients 1 --conns 1|put --clients 1 --conns 1"
  "put-c64|--workload put --clients 64 --conns 8|put --clients 64 --conns 8"
  "put-c256|--workload put --clients 256 --conns 16|put --clients 256 --conns 16"
  "_preload|--workload put --clients 64 --conns 8 --key-space 10000 --sequential-keys --total 10000|"
  "range-lin-c64|--workload range-linearizable --clients 64 --conns 8 --key-space 10000 --preload 0|range --consistency l --clients 64 --conns 8 --key-space 10000 --preload 0"
  "range-ser-c64|--workload range-serializable --clients 64 --conns 8 --key-space 10000 --preload 0|range --consistency s --clients 64 --conns 8 --key-space 10000 --preload 0"
  "txn-put-c64|--workload txn-put --clients 64 --conns 8|txn-put --clients 64 --conns 8"
  "watch-w100|--workload watch-latency --clients 100 --conns 10 --put-rate 100|watch-latency --watchers 100 --conns 10 --put-rate 100"
  "lease-ka-c64|--workload lease-keepalive --clients 64 --conns 8|lease-keepalive --clients 64 --conns 8"
)

# run_one SERVER REP MEMBERS LABEL CLIENT ARGS: one measured run against the running cluster of SERVER.
run_one() {
    local server="$1" rep="$2" n="$3" label="$4" client="$5" args="$6"
    local sd; sd="$(state_dir "$server")"
    # shellcheck disable=SC1091
    . "$sd/env"
    local total="$TOTAL"
    [[ "$label" == watch-* ]] && total=$((DURATION * 100))
    local f0 c0 p0 f1 c1 p1 b0 t0 b1 t1 s0 s1 hwm rss line ts0 ts1
    f0="$(metric etcd_disk_wal_fsync_duration_seconds_count "$METRICS_URLS")"
    c0="$(metric etcd_server_proposals_committed_total "$METRICS_URLS")"
    p0="$(metric etcd_mvcc_put_total "$METRICS_URLS")"
    read -r b0 t0 <<< "$(cpu_busy_total)"
    s0="$(pids_cpu "$PIDS")"
    ts0="$(date +%s.%N)"
    # shellcheck disable=SC2086
    if [ "$client" = etcdload ]; then
        line="$(timeout --kill-after=10 $((DURATION + 120)) "$ETCDLOAD" --endpoints "$ENDPOINTS" $args \
            --total "$total" --duration "${DURATION}s" 2>>"$OUT_DIR/load.stderr" | tail -1)" || true
    else
        line="$(timeout --kill-after=10 $((DURATION + 120)) "$SWIFT_CLIENT" $args --endpoints "$ENDPOINTS" \
            --total "$total" --duration "$DURATION" --json --no-progress 2>>"$OUT_DIR/load.stderr" | tail -1)" || true
    fi
    ts1="$(date +%s.%N)"
    read -r b1 t1 <<< "$(cpu_busy_total)"
    s1="$(pids_cpu "$PIDS")"
    f1="$(metric etcd_disk_wal_fsync_duration_seconds_count "$METRICS_URLS")"
    c1="$(metric etcd_server_proposals_committed_total "$METRICS_URLS")"
    p1="$(metric etcd_mvcc_put_total "$METRICS_URLS")"
    read -r hwm rss <<< "$(pids_kb "$PIDS")"
    [[ "$line" == \{* ]] || line='{"error":"load generator produced no result","qps":0}'
    python3 - "$line" <<PY >> "$RUNS"
import json, sys
r = json.loads(sys.argv[1])
def pair(s):
    p = s.split()
    return (float(p[0]), float(p[1])) if len(p) == 2 else (None, None)
f0, f1, c0, c1, p0, p1 = pair("$f0"), pair("$f1"), pair("$c0"), pair("$c1"), pair("$p0"), pair("$p1")
n = $n
el = r.get("elapsed_s") or ($ts1 - $ts0)
fs = None if f0[0] is None or f1[0] is None else f1[0] - f0[0]          # fsyncs, all members
commits = None if c0[1] is None or c1[1] is None else c1[1] - c0[1]     # entries committed (leader's count)
puts = None if p0[1] is None or p1[1] is None else p1[1] - p0[1]
ops = (r.get("total") or 0) if r.get("workload") != "watch-latency" else (r.get("puts") or 0)
busy, tot, srv = $b1 - $b0, max(1, $t1 - $t0), $s1 - $s0
r.update({"kind": "load", "server": "$server", "rep": $rep, "members": n, "label": "$label", "client": "$client",
          "wall_s": round($ts1 - $ts0, 3),
          "wal_fsyncs": fs, "wal_fsyncs_per_s": None if fs is None else round(fs / n / el, 1),
          "committed": commits, "mvcc_puts": puts,
          "writes_per_fsync": None if not fs or commits is None else round(commits / (fs / n), 2),
          "vmhwm_max_kb": $hwm, "vmrss_sum_kb": $rss,
          "server_cpu_s": round(srv / $HZ, 3),
          "server_cpu_us_per_op": round(1e6 * srv / $HZ / ops, 1) if ops else None,
          "cpu_busy_pct": round(100.0 * busy / tot, 1), "cpu_server_pct": round(100.0 * srv / tot, 1)})
print(json.dumps(r))
PY
    tail -1 "$RUNS" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("rep %s n=%s %-6s %-13s %-12s qps=%-9s p99=%-8s err=%s fsync/s=%s w/fsync=%s hwm=%sMB cpu=%sus/op" % (r["rep"], r["members"], r["server"], r["label"], r["client"], r.get("qps"), r.get("p99_ms"), r.get("errors"), r.get("wal_fsyncs_per_s"), r.get("writes_per_fsync"), r["vmhwm_max_kb"]//1024, r.get("server_cpu_us_per_op")))' >&2
}

start_server() {  # start_server SERVER MEMBERS REP -> 0 if healthy
    local server="$1" n="$2" rep="$3" sd
    sd="$(state_dir "$server")"
    if ! STATE_DIR="$sd" PORT_BASE="${PORTS[$server]}" DATA_ROOT="$DATA_ROOT" HEALTH_TIMEOUT="$HEALTH_TIMEOUT" \
        "$CLUSTER" start "${BIN[$server]}" "$n" >/dev/null 2>>"$OUT_DIR/cluster.stderr"; then
        log "$server could not start $n member(s) (see $OUT_DIR/cluster.stderr)"
        return 1
    fi
    # shellcheck disable=SC1091
    . "$sd/env"
    local idle
    read -r _ idle <<< "$(pids_kb "$PIDS")"
    echo "{\"kind\":\"startup\",\"server\":\"$server\",\"rep\":$rep,\"members\":$n,\"startup_s\":$STARTUP_S,\"rss_idle_kb_sum\":$idle}" >> "$RUNS"
}

# --- the disk ------------------------------------------------------------------------------------------------------
log "fdatasync probe in $DATA_ROOT; results in $OUT_DIR"
python3 "$SHARED_BENCH/fsync_probe.py" "$DATA_ROOT" 2000 4096 > "$OUT_DIR/fsync.jsonl"
cat "$OUT_DIR/fsync.jsonl" >&2

# --- the matrix: for each rep and size, both clusters up, every row on both, order alternating by rep -----------
for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then ORDER=(etcd quorum); else ORDER=(quorum etcd); fi
    for n in $SIZES; do
        [ -n "$ONLY" ] && [ "$ONLY" = "none" ] && break
        up=()
        for s in "${ORDER[@]}"; do
            wait_quiet
            if start_server "$s" "$n" "$rep"; then up+=("$s"); fi
        done
        for spec in "${MATRIX[@]}"; do
            label="${spec%%|*}"; rest="${spec#*|}"; eargs="${rest%%|*}"; qargs="${rest#*|}"
            if [[ "$label" == _* ]]; then
                if [ -z "$ONLY" ] || [[ " $ONLY " == *" range-"* ]]; then
                    for s in "${up[@]}"; do
                        # shellcheck disable=SC1091
                        . "$(state_dir "$s")/env"
                        # shellcheck disable=SC2086
                        timeout --kill-after=10 400 "$ETCDLOAD" --endpoints "$ENDPOINTS" $eargs --duration 300s \
                            >/dev/null 2>>"$OUT_DIR/load.stderr" || log "$label on $s failed"
                    done
                fi
                continue
            fi
            if [ -n "$ONLY" ] && [[ " $ONLY " != *" $label "* ]]; then continue; fi
            for client in $CLIENTS; do
                args="$eargs"; [ "$client" = quorum-bench ] && args="$qargs"
                wait_quiet
                for s in "${up[@]}"; do run_one "$s" "$rep" "$n" "$label" "$client" "$args"; done
            done
        done
        for s in "${up[@]}"; do STATE_DIR="$(state_dir "$s")" "$CLUSTER" stop >/dev/null 2>&1 || true; done
    done
done

# --- recovery after kill -9 with RECOVERY_KEYS keys (one member each, the same data restarted RECOVERY_REPS times) --
member_cmd() {  # member_cmd SERVER DATADIR PORT
    echo "${BIN[$1]} --name m0 --data-dir $2 --listen-client-urls http://127.0.0.1:$3 --advertise-client-urls http://127.0.0.1:$3 --listen-peer-urls http://127.0.0.1:$(($3 + 1)) --initial-advertise-peer-urls http://127.0.0.1:$(($3 + 1)) --initial-cluster m0=http://127.0.0.1:$(($3 + 1)) --initial-cluster-state new --initial-cluster-token recovery"
}
wait_healthy() {  # wait_healthy PORT PID -> prints seconds waited, fails on timeout or exit
    local port="$1" pid="$2" start end
    start="$(date +%s.%N)"
    local deadline=$(( $(date +%s) + HEALTH_TIMEOUT * 5 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        [ -d "/proc/$pid" ] || return 1
        if etcdctl --endpoints="http://127.0.0.1:$port" --dial-timeout=1s --command-timeout=2s endpoint health \
            >/dev/null 2>&1; then
            end="$(date +%s.%N)"
            awk -v a="$start" -v b="$end" 'BEGIN{printf "%.3f", b-a}'
            return 0
        fi
        sleep 0.05
    done
    return 1
}
if [ "$RECOVERY_KEYS" -gt 0 ]; then
    declare -A RDIR RPID
    for s in etcd quorum; do
        RDIR[$s]="$(mktemp -d "$DATA_ROOT/etcdbench-data.recovery-$s.XXXXXX")"
        port=$((PORTS[$s] + 500))
        # shellcheck disable=SC2046
        nohup $(member_cmd "$s" "${RDIR[$s]}/m0" "$port") > "$OUT_DIR/recovery-$s.log" 2>&1 < /dev/null &
        RPID[$s]=$!; RECOVERY_PIDS+=("$!"); disown "$!"
        wait_healthy "$port" "${RPID[$s]}" >/dev/null || { log "$s did not start for the recovery test"; exit 1; }
        log "writing $RECOVERY_KEYS keys to $s"
        ks=8; [ "$RECOVERY_KEYS" -gt 36028797018963968 ] && ks=10
        timeout --kill-after=10 1800 "$ETCDLOAD" --endpoints "http://127.0.0.1:$port" --workload put --clients 256 \
            --conns 16 --key-space "$RECOVERY_KEYS" --key-size "$ks" --sequential-keys --total "$RECOVERY_KEYS" \
            --duration 1500s > "$OUT_DIR/recovery-load-$s.json" 2>>"$OUT_DIR/load.stderr" || log "loading $s failed"
        cat "$OUT_DIR/recovery-load-$s.json" >&2
    done
    for r in $(seq 1 "$RECOVERY_REPS"); do
        if [ $((r % 2)) = 1 ]; then ORDER=(etcd quorum); else ORDER=(quorum etcd); fi
        for s in "${ORDER[@]}"; do
            port=$((PORTS[$s] + 500))
            kill -KILL "${RPID[$s]}" 2>/dev/null || true
            while [ -d "/proc/${RPID[$s]}" ]; do sleep 0.05; done
            wait_quiet
            # shellcheck disable=SC2046
            nohup $(member_cmd "$s" "${RDIR[$s]}/m0" "$port") >> "$OUT_DIR/recovery-$s.log" 2>&1 < /dev/null &
            RPID[$s]=$!; RECOVERY_PIDS+=("$!"); disown "$!"
            if secs="$(wait_healthy "$port" "${RPID[$s]}")"; then
                hwm="$(awk '/^VmHWM:/{print $2}' "/proc/${RPID[$s]}/status")"
                echo "{\"kind\":\"recovery\",\"server\":\"$s\",\"rep\":$r,\"members\":1,\"keys\":$RECOVERY_KEYS,\"recovery_s\":$secs,\"vmhwm_kb\":$hwm}" >> "$RUNS"
                log "recovery $s rep $r: ${secs}s, peak RSS $((hwm / 1024)) MB"
            else
                log "$s did not recover (see $OUT_DIR/recovery-$s.log)"
            fi
        done
    done
    stop_recovery_members
    sleep 1
    for s in etcd quorum; do case "${RDIR[$s]}" in */etcdbench-data.recovery-*) rm -rf -- "${RDIR[$s]}" ;; esac; done
fi

python3 - "$OUT_DIR/meta.json" <<PY
import json, sys
m = json.load(open(sys.argv[1])); m["loadavg_end"] = "$(cut -d' ' -f1-3 /proc/loadavg)"; json.dump(m, open(sys.argv[1], "w"))
PY
summarize "$OUT_DIR" | tee "$OUT_DIR/summary.md"
