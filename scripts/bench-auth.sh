#!/usr/bin/env bash
# Auth benchmark: put and range throughput with auth enabled, Quorum beside real etcd 3.4 with the same settings, in
# one run. Short and bounded: every measurement is capped by --duration and --total.
#
#   scripts/bench-auth.sh QUORUM_BINARY QUORUM_BENCH_BINARY ETCDLOAD_BINARY [SECONDS]
#
# Three settings per server, each on a fresh single member:
#   none    auth off, plaintext                         (quorum-bench)
#   simple  auth on, user `bench` (readwrite on every key, not root) with a simple token (quorum-bench --user)
#   cn      auth on, mutual TLS, the client certificate's CN `bench` is the user (etcdload --cert, Go clientv3)
# plus `cn-off`: the same mutual TLS with auth off, the baseline the CN row is compared with.
# Prints one line per measurement: server setting workload qps p50 p99 errors.
set -euo pipefail
QUORUM=${1:?quorum binary}
QBENCH=${2:?quorum-bench binary}
ETCDLOAD=${3:?etcdload binary (../shared/bench/build.sh)}
SECS=${4:-5}
QUORUMCTL=${QUORUMCTL:-$(dirname "$QUORUM")/quorumctl}
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
W=$(mktemp -d /tmp/authbench.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
free() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
export ETCDCTL_API=3

# One CA and certificates for both servers, made by Quorum's PKI: server (member cert), admin (CN root), bench.
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

start() { # name binary setting -> sets EP (host:port); the member runs until stop
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
  CTL=("$ETCDCTL" --endpoints "$scheme://$EP" --command-timeout 10s)
  if [ "$scheme" = https ]; then CTL+=(--cacert "$CA" --cert "$S/admin.crt" --key "$S/admin.key"); fi
  for _ in $(seq 200); do "${CTL[@]}" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
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
  local name=$1 setting=$2 workload=$3 clients=$4 out
  if [ "$setting" = cn ] || [ "$setting" = cn-off ]; then
    out=$("$ETCDLOAD" --endpoints "https://$EP" --cacert "$CA" --cert "$W/bench/bench.crt" --key "$W/bench/bench.key" \
      --workload "$workload" --clients "$clients" --conns 8 --total 200000 --duration "${SECS}s" --key-space 10000 \
      --preload 10000 2>/dev/null)
  else
    local user=()
    [ "$setting" = simple ] && user=(--user bench:benchpw)
    local sub=put extra=()
    case $workload in
      range-linearizable) sub=range; extra=(--consistency l --preload 10000) ;;
      range-serializable) sub=range; extra=(--consistency s --preload 10000) ;;
    esac
    out=$("$QBENCH" "$sub" --endpoints "$EP" --clients "$clients" --conns 8 --total 200000 --duration "$SECS" \
      --key-space 10000 --json --no-progress "${user[@]}" "${extra[@]}" 2>/dev/null)
  fi
  python3 - "$name" "$setting" "$workload" "$clients" "$out" <<'EOF'
import json, sys
name, setting, workload, clients, line = sys.argv[1:6]
try:
    r = json.loads(line.strip().splitlines()[-1])
except Exception:
    print(f"{name:7} {setting:7} {workload:19} c={clients:3} FAILED: {line[:200]}")
    sys.exit(0)
print(f"{name:7} {setting:7} {workload:19} c={clients:3} qps={r.get('qps', 0):9.0f} "
      f"p50={r.get('p50_ms', r.get('p50', 0))} p99={r.get('p99_ms', r.get('p99', 0))} errors={r.get('errors', 0)}")
EOF
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); ${SECS}s per measurement"
for setting in none simple cn-off cn; do
  for server in quorum etcd; do
    bin=$QUORUM; [ $server = etcd ] && bin=$ETCD
    start "$server" "$bin" "$setting"
    for workload in put range-linearizable; do
      measure "$server" "$setting" "$workload" 64
    done
    measure "$server" "$setting" put 1
    stop
  done
done
