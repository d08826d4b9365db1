#!/usr/bin/env bash
# TLS benchmark: handshakes/s (openssl s_time, new session each time) and put throughput (grpc.aio client,
# put_bench.py) for Quorum and etcd 3.4 with the same certificates, TLS (mTLS) and plaintext.
# usage: scripts/bench-tls.sh QUORUM_BINARY [SECONDS]
set -euo pipefail
QUORUM=${1:?quorum binary}; SECS=${2:-10}
W=$(mktemp -d /tmp/tlsbench.XXXX); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf $W' EXIT
free() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
# One CA and one set of certificates for both servers: Quorum's own PKI makes them.
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
# Quorum: the same member, one https and one http client URL.
P=$(free); H=$(free); PP=$(free)
"$QUORUM" --name m1 --data-dir $W/q --listen-client-urls https://127.0.0.1:$P,http://127.0.0.1:$H \
  --advertise-client-urls https://127.0.0.1:$P --listen-peer-urls http://127.0.0.1:$PP \
  --initial-advertise-peer-urls http://127.0.0.1:$PP --initial-cluster m1=http://127.0.0.1:$PP \
  --cert-file $S/server.crt --key-file $S/server.key --trusted-ca-file $CA --client-cert-auth >$W/q.log 2>&1 & QPID=$!
sleep 4
bench quorum https://127.0.0.1:$P http://127.0.0.1:$H
kill $QPID; wait $QPID 2>/dev/null || true
# etcd 3.4 with the same files.
P=$(free); H=$(free); PP=$(free)
etcd --name e1 --data-dir $W/e --listen-client-urls https://127.0.0.1:$P,http://127.0.0.1:$H \
  --advertise-client-urls https://127.0.0.1:$P --listen-peer-urls http://127.0.0.1:$PP \
  --initial-advertise-peer-urls http://127.0.0.1:$PP --initial-cluster e1=http://127.0.0.1:$PP \
  --cert-file $S/server.crt --key-file $S/server.key --trusted-ca-file $CA --client-cert-auth >$W/e.log 2>&1 & EPID=$!
sleep 4
bench etcd https://127.0.0.1:$P http://127.0.0.1:$H
kill $EPID; wait $EPID 2>/dev/null || true
