# Sourced by the benchmark scripts (bench-range.sh, bench-defrag.sh, bench-scale.sh, bench-stalls.sh, ...): a work
# folder removed at exit with the one server the script started (by its pid, in $PID), the Go load programs beside
# them built against Debian's etcd client sources, and where each server's binary is.
#
#   . scripts/bench-common.sh
#   bench_work NAME            # WORK=$TMPDIR/NAME.XXXXXX, PID="", cleanup at exit (KEEP_WORK=1 keeps the folder)
#   bench_go_build DIR OUT     # builds the Go program in DIR (GOPATH mode, /usr/share/gocode) into OUT
#   bench_binary SERVER        # quorum ($QUORUM), etcd34 (Debian's), etcd35 (scripts/etcd35.sh)
#   bench_start_member EXE DATA PORT LOG [FLAG...]   # one member "bench" in the background (PID), peers on PORT+1
#   bench_wait_member PORT LOG # until it answers `etcdctl endpoint health` (exits with LOG's tail if it died)
#   bench_stop SIGNAL          # sends SIGNAL (-TERM, -KILL) to the member ($PID) and waits for it to exit
#   bench_field JSON NAME      # one field of a JSON object (the load programs print one per run)

bench_work() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    PID=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID"
        wait "$PID" 2>/dev/null || true
    fi
    if [ -n "${KEEP_WORK:-}" ]; then echo "# kept $WORK (KEEP_WORK)"; else rm -rf "$WORK"; fi
}

bench_go_build() {
    mkdir -p "$WORK/gopath/src"
    (cd "$1" && GO111MODULE=off GOFLAGS= GOPATH="$WORK/gopath:/usr/share/gocode" CGO_ENABLED=0 \
        go build -trimpath -o "$2" .)
}

bench_binary() {
    case "$1" in
    quorum) echo "$QUORUM" ;;  # its build time is printed with the results (QUORUM may be another checkout's)
    etcd34) echo /usr/bin/etcd ;;
    etcd35) echo "$(scripts/etcd35.sh)/etcd" ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
    esac
}

bench_start_member() {
    local exe="$1" data="$2" port="$3" log="$4"
    shift 4
    "$exe" --name bench --data-dir "$data" \
        --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-cluster "bench=http://127.0.0.1:$((port + 1))" "$@" >>"$log" 2>&1 &
    PID=$!
}

bench_wait_member() {
    for _ in $(seq 1 300); do
        ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$1" endpoint health >/dev/null 2>&1 && return 0
        kill -0 "$PID" 2>/dev/null || { tail -20 "$2" >&2; exit 1; }
        sleep 0.2
    done
    echo "the member on port $1 did not become healthy in 60 s" >&2
    tail -20 "$2" >&2
    exit 1
}

bench_stop() {
    kill "$1" "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
}

bench_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
