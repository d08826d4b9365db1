#!/usr/bin/env bash
# Start-up when the database does not fit in memory: one member of each server on loopback, loaded with SIZE GiB of
# VAL-byte values under unique keys, stopped cleanly, then started again three times, each until a linearizable get
# succeeds: with the page cache warm (what scripts/bench-scale.sh measures), with the page cache dropped (a machine
# that rebooted, or a database larger than its memory: every page the start-up needs comes from the disk), and after
# a kill -9 with the page cache dropped (recovery). For each: seconds to ready, and the bytes the process read from
# the disk (/proc/PID/io read_bytes, taken when it was ready) and through system calls (rchar).
#
#   sudo scripts/bench-startup.sh                             # SIZE=8 GiB, VAL=4096, quorum and etcd 3.5.1
#   SIZE=2 SERVERS=quorum QUORUM=/tmp/quorum-abc scripts/bench-startup.sh
#
# Dropping the page cache needs root (`echo 3 > /proc/sys/vm/drop_caches`, after `sync`). Each run's data is removed
# before the next. Results: one line per server, appended to $OUT (default docs/bench/startup.tsv), Quorum's with
# QUORUM_COMMIT (default: this checkout's HEAD; set it when QUORUM is another build).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${SIZE:-8}"
VAL="${VAL:-4096}"
CLIENTS="${CLIENTS:-64}"
SERVERS="${SERVERS:-quorum etcd35}"
QUORUM="${QUORUM:-$PWD/.build-bench/release/quorum}"
OUT="${OUT:-docs/bench/startup.tsv}"
QUORUM_COMMIT="${QUORUM_COMMIT:-$(git rev-parse --short HEAD)}"
. scripts/bench-common.sh
bench_work bench-startup

BIN="$WORK/scalebench"
bench_go_build scripts/bench-scale "$BIN"
[ -w /proc/sys/vm/drop_caches ] || { echo "dropping the page cache needs root" >&2; exit 2; }

io() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/io"; }
start() { bench_start_member "$2" "$3" "$4" "$WORK/$1.log" --quota-backend-bytes "$5"; }
ready() { bench_field "$("$BIN" ready --endpoint "127.0.0.1:$1" --timeout 60m)" ready_s; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# measure SERVER EXE DATA PORT QUOTA: starts the member (PID); once it is ready, sets M to "seconds read_mb rchar_mb".
measure() {
    start "$@"
    local s
    s=$(ready "$4")
    M="$s $(($(io "$PID" read_bytes) >> 20)) $(($(io "$PID" rchar) >> 20))"
}

[ -f "$OUT" ] || printf '%s\n' "date	commit	server	size_gib	val	keys	db_mb	warm_s	warm_read_mb	warm_rchar_mb	cold_s	cold_read_mb	cold_rchar_mb	recovery_cold_s	recovery_read_mb	recovery_rchar_mb	rss_mb" >"$OUT"
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) size=${SIZE}GiB val=$VAL $(nproc) cores," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
keys=$(python3 -c "print(max(1000, int($SIZE * 2**30 // $VAL)))")
quota=$(python3 -c "print(int(2 * $SIZE * 2**30 + 2 * 2**30))")
for server in $SERVERS; do
    exe="$(bench_binary "$server")"
    data="$WORK/$server.data"
    port=$((23000 + RANDOM % 2000))
    echo "# $server keys=$keys: $exe ($("$exe" --version 2>/dev/null | head -1))"
    start "$server" "$exe" "$data" "$port" "$quota"
    ready "$port" >/dev/null
    echo "#   load: $("$BIN" load --endpoint "127.0.0.1:$port" --keys "$keys" --val-size "$VAL" --clients "$CLIENTS")"
    bench_stop -TERM
    db=$(du -sm "$data" | cut -f1)
    measure "$server" "$exe" "$data" "$port" "$quota"
    read -r warm_s warm_read warm_rchar <<<"$M"
    echo "#   warm start-up: $warm_s s, read $warm_read MB from the disk, $warm_rchar MB through read calls"
    bench_stop -TERM
    drop_caches
    measure "$server" "$exe" "$data" "$port" "$quota"
    read -r cold_s cold_read cold_rchar <<<"$M"
    echo "#   cold start-up: $cold_s s, read $cold_read MB from the disk, $cold_rchar MB through read calls"
    rss=$(($(awk '$1 == "VmRSS:" { print $2 }' "/proc/$PID/status") >> 10))
    bench_stop -KILL
    drop_caches
    measure "$server" "$exe" "$data" "$port" "$quota"
    read -r rec_s rec_read rec_rchar <<<"$M"
    echo "#   cold recovery after kill -9: $rec_s s, read $rec_read MB from the disk, $rec_rchar MB through read calls"
    bench_stop -TERM
    rm -rf "$data"
    commit=-
    [ "$server" != quorum ] || commit="$QUORUM_COMMIT"
    line="$(date -u +%FT%TZ)	$commit	$server	$SIZE	$VAL	$keys	$db	$warm_s	$warm_read"
    line+="	$warm_rchar	$cold_s	$cold_read	$cold_rchar	$rec_s	$rec_read	$rec_rchar	$rss"
    echo "$line" >>"$OUT"
    echo "$line"
done
