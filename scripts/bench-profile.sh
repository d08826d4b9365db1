#!/usr/bin/env bash
# Where Quorum's CPU goes on the hot paths, per operation: server CPU time (/proc), heap allocations (an
# LD_PRELOAD malloc counter built here) and a sampled profile (perf record -e cpu-clock: this VM has no
# hardware counters) of the real-speed release binary; MODE=callgrind adds instruction counts where valgrind
# can run the server (valgrind 3.19 crashes inside the Swift runtime's libdispatch signal thread here, even
# with --tool=none, so perf is the default).
#
#   scripts/bench-profile.sh                      # put, range-ser, range-lin, txn-put, watch, lease
#   OPS=20000 WORKLOADS="put range-ser" scripts/bench-profile.sh
#
# Environment (optional):
#   QUORUM_BIN=   server to profile (default: release build in .build-bench, built if missing)
#   OPS=20000     operations per workload (watch: puts at 100/s, each fanned out to 100 watchers)
#   WORKLOADS="put range-ser range-lin txn-put watch lease"
#   MODE=perf | callgrind
#   OUT_DIR=      default $TMPDIR/quorum-bench-profile/YYYYmmdd-HHMMSS
#   PORT=48379    client port (peer port +1)
# Output: OUT_DIR/summary.md (Ir/op, allocations/op, top functions per workload), the raw profiles beside it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
TMPROOT="${TMPDIR:-/tmp}"
MODE="${MODE:-perf}"
OPS="${OPS:-20000}"
DURATION="${DURATION:-10}"
WORKLOADS="${WORKLOADS:-put range-ser range-lin txn-put watch lease}"
PORT="${PORT:-48379}"
OUT_DIR="${OUT_DIR:-$TMPROOT/quorum-bench-profile/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT_DIR"
log() { echo "bench-profile: $*" >&2; }

if [ -z "${QUORUM_BIN:-}" ]; then
    QUORUM_BIN="$ROOT/.build-bench/release/quorum"
    [ -x "$QUORUM_BIN" ] || (cd "$ROOT" && swift build -c release --static-swift-stdlib -Xlinker -no-pie --product quorum --scratch-path .build-bench >&2)
fi
ETCDLOAD="${ETCDLOAD:-${BENCH_BIN:-$TMPROOT/etcdbench-bin}/etcdload}"
[ -x "$ETCDLOAD" ] || ETCDLOAD="$(BENCH_BIN="${BENCH_BIN:-$TMPROOT/etcdbench-bin}" "$SHARED_BENCH/build.sh" | tail -1)"
DEMANGLE=(cat)
command -v swift-demangle >/dev/null && DEMANGLE=(swift-demangle --simplified)
[ -x /opt/swift/usr/bin/swift-demangle ] && DEMANGLE=(/opt/swift/usr/bin/swift-demangle --simplified)

# Heap allocation counter: glibc's own entry points underneath, totals written to a file every 50 ms.
cat > "$OUT_DIR/malloc_count.c" <<'C'
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
static atomic_ulong allocs, frees;
void *malloc(size_t n) { atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed); return __libc_realloc(p, n); }
void free(void *p) { if (p) atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed); __libc_free(p); }
int posix_memalign(void **out, size_t a, size_t n) {
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    void *p = __libc_memalign(a, n); if (!p) return 12; *out = p; return 0;
}
void *aligned_alloc(size_t a, size_t n) { atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed); return __libc_memalign(a, n); }
void *memalign(size_t a, size_t n) { atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed); return __libc_memalign(a, n); }
static void *writer(void *arg) {
    const char *path = arg; char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    for (;;) {
        FILE *f = fopen(tmp, "w");
        if (f) { fprintf(f, "%lu %lu\n", atomic_load(&allocs), atomic_load(&frees)); fclose(f); rename(tmp, path); }
        usleep(50000);
    }
    return NULL;
}
__attribute__((constructor)) static void start(void) {
    const char *path = getenv("MALLOC_COUNT_FILE");
    if (!path) return;
    pthread_t t; pthread_create(&t, NULL, writer, strdup(path)); pthread_detach(t);
}
C
gcc -O2 -shared -fPIC -o "$OUT_DIR/malloc_count.so" "$OUT_DIR/malloc_count.c" -lpthread
COUNTS="$OUT_DIR/malloc.counts"

DATA="$(mktemp -d "$TMPROOT/quorum-profile-data.XXXXXX")"
EP="http://127.0.0.1:$PORT"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && [ -d "/proc/$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 300); do [ -d "/proc/$SERVER_PID" ] || break; sleep 0.1; done
        [ -d "/proc/$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
    fi
    case "$DATA" in */quorum-profile-data.*) rm -rf -- "$DATA" ;; esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FLAGS=(--name m0 --data-dir "$DATA/m0" --listen-client-urls "$EP" --advertise-client-urls "$EP"
    --listen-peer-urls "http://127.0.0.1:$((PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 1))"
    --initial-cluster "m0=http://127.0.0.1:$((PORT + 1))")
if [ "$MODE" = callgrind ]; then
    # Valgrind 3.19 cannot read the DWARF 5 that Swift 6 emits ("unhandled dwarf2 abbrev form"); a copy without
    # debug sections still has the symbol table, which is all function-level profiles need.
    strip --strip-debug -o "$OUT_DIR/quorum.nodebug" "$QUORUM_BIN"
    # Instrumentation off until a workload starts: start-up and preloading run at (near) native speed.
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT_DIR/callgrind.out" \
        "$OUT_DIR/quorum.nodebug" "${FLAGS[@]}" > "$OUT_DIR/server.log" 2>&1 < /dev/null &
else
    MALLOC_COUNT_FILE="$COUNTS" LD_PRELOAD="$OUT_DIR/malloc_count.so" \
        "$QUORUM_BIN" "${FLAGS[@]}" > "$OUT_DIR/server.log" 2>&1 < /dev/null &
fi
SERVER_PID=$!
disown "$SERVER_PID"
for _ in $(seq 1 3000); do
    etcdctl --endpoints="$EP" --dial-timeout=2s --command-timeout=5s endpoint health >/dev/null 2>&1 && break
    [ -d "/proc/$SERVER_PID" ] || { log "server exited; see $OUT_DIR/server.log"; exit 1; }
    sleep 0.2
done
log "server up (pid $SERVER_PID, $MODE); preloading 10000 keys"
timeout 900 "$ETCDLOAD" --endpoints "$EP" --workload put --clients 16 --conns 4 --key-space 10000 --sequential-keys \
    --total 10000 --duration 800s > /dev/null

args_for() {
    case "$1" in
        put) echo "--workload put --clients 8 --conns 2 --total $OPS" ;;
        range-ser) echo "--workload range-serializable --clients 8 --conns 2 --key-space 10000 --preload 0 --total $OPS" ;;
        range-lin) echo "--workload range-linearizable --clients 8 --conns 2 --key-space 10000 --preload 0 --total $OPS" ;;
        txn-put) echo "--workload txn-put --clients 8 --conns 2 --total $OPS" ;;
        watch) echo "--workload watch-latency --clients 100 --conns 10 --put-rate 100 --total $((OPS / 20))" ;;
        lease) echo "--workload lease-keepalive --clients 8 --conns 2 --total $OPS" ;;
    esac
}

: > "$OUT_DIR/summary.md"
for w in $WORKLOADS; do
    dur=$((OPS * 2 / 10 + 600))
    [ "$MODE" = perf ] && dur=120
    if [ "$MODE" = callgrind ]; then
        callgrind_control -z "$SERVER_PID" >/dev/null
        callgrind_control -i on "$SERVER_PID" >/dev/null
    else
        perf record -e cpu-clock -F 999 -g -p "$SERVER_PID" -o "$OUT_DIR/perf-$w.data" > /dev/null 2>&1 &
        PERF_PID=$!
        sleep 0.5
        sleep 0.1; read -r a0 f0 < "$COUNTS"
        c0="$(awk '{print $14+$15}' "/proc/$SERVER_PID/stat")"
    fi
    # shellcheck disable=SC2046
    line="$(timeout $((dur + 120)) "$ETCDLOAD" --endpoints "$EP" $(args_for "$w") --duration "${dur}s" | tail -1)"
    echo "$line" > "$OUT_DIR/load-$w.json"
    if [ "$MODE" = callgrind ]; then
        callgrind_control -d "$w" "$SERVER_PID" >/dev/null
        callgrind_control -i off "$SERVER_PID" >/dev/null
        sleep 1
        file="$(ls -t "$OUT_DIR"/callgrind.out.* | head -1)"
        mv "$file" "$OUT_DIR/callgrind-$w.out"
        python3 - "$OUT_DIR/callgrind-$w.out" "$line" "$w" <<'PY' >> "$OUT_DIR/summary.md"
import json, re, sys
path, line, w = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
ops = line.get("puts") if w == "watch" else line.get("total")
names, total, allocs, frees = {}, 0, 0, 0
current = None
ALLOC = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign"}
for l in open(path, errors="replace"):
    if l.startswith("summary:") or l.startswith("totals:"):
        total = max(total, int(l.split()[1]))
    m = re.match(r"cfn=\((\d+)\)(?: (.*))?", l)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        current = names.get(m.group(1), "")
        continue
    if l.startswith("calls=") and current is not None:
        n = int(l.split("=")[1].split()[0])
        if current in ALLOC:
            allocs += n
        elif current == "free":
            frees += n
        current = None
ops = ops or 0
print(f"### {w}: {ops} ops ({line.get('workload')}, {line.get('clients')} clients), errors {line.get('errors')}")
print()
if ops:
    print(f"- instructions per op: {total / ops:,.0f} (total {total:,})")
    print(f"- heap allocations per op: {allocs / ops:,.1f} (malloc/calloc/realloc/posix_memalign calls {allocs:,}; frees {frees:,})")
print()
PY
        {
            echo '```'
            callgrind_annotate --inclusive=no "$OUT_DIR/callgrind-$w.out" 2>/dev/null | sed -n '/^Ir/,$p' | head -28 \
                | "${DEMANGLE[@]}" | cut -c1-180 || true
            echo '```'
            echo
        } >> "$OUT_DIR/summary.md"
    else
        c1="$(awk '{print $14+$15}' "/proc/$SERVER_PID/stat")"
        sleep 0.1; read -r a1 f1 < "$COUNTS"
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" || true
        python3 - "$line" "$w" "$((c1 - c0))" "$(getconf CLK_TCK)" "$((a1 - a0))" <<'PY' >> "$OUT_DIR/summary.md"
import json, sys
line, w, jiffies, hz, allocs = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ops = line.get("puts") if w == "watch" else line.get("total")
print(f"### {w}: {ops} ops ({line.get('workload')}, {line.get('clients')} clients, {line.get('qps')} qps, "
      f"p99 {line.get('p99_ms')} ms), errors {line.get('errors')}")
print()
if ops:
    per = "put (fanned out to 100 watchers)" if w == "watch" else "op"
    print(f"- server CPU per {per}: {1e6 * jiffies / hz / ops:,.1f} us ({jiffies / hz:.2f} s user+system)")
    print(f"- heap allocations per {per}: {allocs / ops:,.1f} ({allocs:,} malloc/calloc/realloc/memalign calls)")
print()
PY
        {
            echo "perf, cpu-clock samples, self time, top symbols:"
            echo '```'
            perf report -i "$OUT_DIR/perf-$w.data" --stdio --no-children --sort dso,symbol -g none 2>/dev/null \
                | grep -v '^#' | grep -v '^$' | grep '%' | head -30 | "${DEMANGLE[@]}" | cut -c1-200 || true
            echo '```'
            echo
        } >> "$OUT_DIR/summary.md"
    fi
    log "$w done: $line"
done
cat "$OUT_DIR/summary.md"
