#!/usr/bin/env bash
# Regenerates the fuzz targets' seed corpora (Tests/FuzzTests/Corpus/<target>/) from real data:
#   grpc, http  what etcdctl 3.4 and curl send to a real etcd 3.4's client port (recorded by scripts/record-proxy.py)
#   snapshot    `etcdctl snapshot save` of that etcd, and `quorumctl snapshot save` of a Quorum member
#   wal         the WAL segment of a Quorum member after etcdctl writes (its preallocated zeros cut off)
#   peer        Raft batches built by `quorum-fuzz seeds peer` from that WAL's real entries
#   pki         a CA made by `quorumctl pki init`, certificates, keys and a CRL made by openssl
#   auth        a token of every provider (simple, RS256, PS256, ES256, HS256) and --auth-token values, made by
#               `quorum-fuzz seeds-auth` with the fixed keys and clock the target resolves them with
#   raft        the messages a member of the raft target's scenarios exchanges with its peers (appends, heartbeats,
#               votes, a snapshot, a transfer, reads) and odd ones (unknown members, stale and future terms), made by
#               `quorum-fuzz seeds-raft`
#   s3          what moto's S3 server (pip moto[server]) answers a Quorum member's scheduled backups and restore
#               listing, and curl's requests for truncated listings, multipart uploads and errors; the member's own
#               manifest.json
#   config      etcd's etcd.conf.yml.sample ($ETCD_CONF_SAMPLE, or from golang-etcd-server-dev when it has it) and
#               configurations written here
# Needs etcd, etcdctl, openssl, curl, python3 with moto, and a debug build (`swift build --build-tests`). Files are
# named by content hash, so rerunning adds new inputs beside the old ones; delete a folder first to start over.
# `scripts/fuzz-seeds.sh s3` makes only the s3 seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=Tests/FuzzTests/Corpus
bin=.build/debug
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# add TARGET FILE: copies FILE into the corpus under its content hash.
add() {
    mkdir -p "$corpus/$1"
    cp "$2" "$corpus/$1/$(sha1sum "$2" | cut -c1-16)"
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# --- S3: a member's scheduled backups to moto, then what a restore and the client's other requests read ---
s3_seeds() {
    local s3 qc qp i
    s3=$(port); qc=$(port); qp=$(port)
    python3 -m moto.server -H 127.0.0.1 -p "$s3" >"$work/moto.log" 2>&1 &
    pids+=($!)
    wait_port "$s3"
    local url="http://127.0.0.1:$s3"
    curl -sf -X PUT "$url/seeds" >/dev/null
    AWS_ACCESS_KEY_ID=seeds AWS_SECRET_ACCESS_KEY=seeds AWS_REGION=us-east-1 \
        "$bin/quorum" --name b --data-dir "$work/b" --listen-client-urls "http://127.0.0.1:$qc" \
        --advertise-client-urls "http://127.0.0.1:$qc" --listen-peer-urls "http://127.0.0.1:$qp" \
        --initial-advertise-peer-urls "http://127.0.0.1:$qp" --initial-cluster "b=http://127.0.0.1:$qp" \
        --backup-dir s3://seeds/cluster --backup-s3-endpoint "$url" --backup-interval 1s >"$work/backup.log" 2>&1 &
    local bpid=$!
    pids+=($bpid)
    wait_port "$qc"
    for i in 1 2 3; do
        etcdctl --endpoints "127.0.0.1:$qc" put "backup$i" "v$i" >/dev/null
        # Each backup has a snapshot and a manifest: wait (at most 20 s) for one more listing entry per round.
        for _ in $(seq 200); do
            [ "$(curl -sf "$url/seeds?list-type=2&prefix=cluster/" | grep -o manifest.json | wc -l)" -ge "$i" ] && break
            sleep 0.1
        done
    done
    kill "$bpid"
    wait "$bpid" 2>/dev/null || true
    mkdir -p "$work/s3"
    curl -sf "$url/seeds?list-type=2&prefix=cluster/" >"$work/s3/list"
    curl -sf "$url/seeds?list-type=2&prefix=cluster/&max-keys=1" >"$work/s3/list-truncated"
    local manifest
    manifest=$(grep -o 'cluster/[^<]*/manifest.json' "$work/s3/list" | head -1)
    [ -n "$manifest" ] || { echo "fuzz-seeds.sh: the member wrote no backup to moto" >&2; cat "$work/backup.log" >&2; exit 1; }
    curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user seeds:seeds "$url/seeds/$manifest" >"$work/s3/manifest.json"
    curl -sf -X POST "$url/seeds/big?uploads" >"$work/s3/create-multipart"
    curl -s "$url/seeds/missing" >"$work/s3/no-such-key"
    curl -s "$url/nobucket?list-type=2" >"$work/s3/no-such-bucket"
    curl -s -X POST -d '<CompleteMultipartUpload/>' "$url/seeds/big?uploadId=nope" >"$work/s3/server-error-html"
    for i in "$work"/s3/*; do add s3 "$i"; done
}
if [ "${1:-}" = s3 ]; then
    s3_seeds
    echo "s3 seeds in $corpus/s3: $(ls "$corpus/s3" | wc -l) files"
    exit 0
fi

# --- Real etcd 3.4 behind the recording proxy: gRPC and HTTP/1.1 traffic, a snapshot ---
client=$(port); peer=$(port); proxy=$(port)
etcd --name s --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "s=http://127.0.0.1:$peer" \
    >"$work/etcd.log" 2>&1 &
pids+=($!)
python3 scripts/record-proxy.py "$proxy" "127.0.0.1:$client" "$work/traffic" >/dev/null &
pids+=($!)
wait_port "$client"
wait_port "$proxy"
export ETCDCTL_API=3
ctl() { etcdctl --endpoints "127.0.0.1:$proxy" --command-timeout 5s "$@" >/dev/null 2>&1 || true; }
ctl put foo bar
ctl put --prev-kv foo baz
ctl get foo
ctl get --prefix --sort-by=MODIFY --order=DESCEND --limit 10 f
ctl get --rev 2 --keys-only foo
ctl del --prev-kv foo
ctl del --prefix f
ctl txn <<'TXN'
mod("k") > "0"

put k v2

put k v1
put k2 v

TXN
lease=$(etcdctl --endpoints "127.0.0.1:$client" lease grant 60 | awk '{print $2}')
ctl put --lease "$lease" leased v
ctl lease timetolive --keys "$lease"
ctl lease keep-alive --once "$lease"
ctl lease list
ctl lease revoke "$lease"
ctl compaction 3
ctl member list
ctl member add m2 --peer-urls http://127.0.0.1:1
ctl endpoint status
ctl endpoint hashkv
ctl alarm list
ctl defrag
ctl auth status 2>/dev/null
ctl user add u1:pw
ctl role add r1
ctl role grant-permission --prefix r1 readwrite /a/
ctl user grant-role u1 r1
ctl user get u1
ctl role get r1
ctl user list
timeout 3 etcdctl --endpoints "127.0.0.1:$proxy" watch --prefix --prev-kv w >/dev/null 2>&1 &
sleep 1
ctl put w1 x
sleep 2.5
timeout 3 etcdctl --endpoints "127.0.0.1:$proxy" lock l1 echo locked >/dev/null 2>&1 || true
timeout 3 etcdctl --endpoints "127.0.0.1:$proxy" elect -l e1 v1 >/dev/null 2>&1 || true
gw() { curl -s -m 5 -o /dev/null "http://127.0.0.1:$proxy$1" "${@:2}" || true; }
gw /health
gw /version
gw "/health?serializable=true&exclude=NOSPACE"
gw /readyz?verbose
gw /v3/kv/put -X POST -d '{"key":"Zm9v","value":"YmFy","prev_kv":true}'
gw /v3/kv/range -X POST -d '{"key":"Zm9v","range_end":"Zm9w","limit":"10"}'
gw /v3/kv/txn -X POST -d '{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],"success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}],"failure":[{"request_range":{"key":"Zm9v"}}]}'
gw /v3/kv/deleterange -X POST -d '{"key":"Zm9v"}'
gw /v3/lease/grant -X POST -d '{"TTL":"30"}'
gw /v3/lease/leases -X POST -d '{}'
gw /v3/cluster/member/list -X POST -d ''
gw /v3/maintenance/status -X POST -d '{}'
gw /v3/auth/authenticate -X POST -d '{"name":"u1","password":"pw"}'
gw /v3/watch -X POST -m 2 -d '{"create_request":{"key":"Zm9v","start_revision":"1"}}'
gw /v3beta/kv/range -X POST -H 'Authorization: token' -d '{"key":"AA=="}'
gw /v3/kv/range -X GET
etcdctl --endpoints "127.0.0.1:$client" snapshot save "$work/etcd.db" >/dev/null
sleep 0.5
for f in "$work"/traffic/*.bin; do
    case "$(head -c 3 "$f")" in
        PRI) add grpc "$f" ;;
        *) add http "$f" ;;
    esac
done
add snapshot "$work/etcd.db"
# Every method, also those the commands above do not call, with its path in plain text (scripts/grpc-seeds.py).
python3 scripts/grpc-seeds.py "$corpus/grpc" \
    $(grep -o '"/[a-z0-9]*pb\.[A-Za-z]*/[A-Za-z]*"' Sources/FuzzHarness/EtcdRequests.swift | tr -d '"' | sort -u)

# --- A Quorum member: its WAL, its snapshot, its peer messages ---
qclient=$(port); qpeer=$(port)
"$bin/quorum" --name q --data-dir "$work/q" --listen-client-urls "http://127.0.0.1:$qclient" \
    --advertise-client-urls "http://127.0.0.1:$qclient" --listen-peer-urls "http://127.0.0.1:$qpeer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$qpeer" --initial-cluster "q=http://127.0.0.1:$qpeer" \
    >"$work/quorum.log" 2>&1 &
qpid=$!
pids+=($qpid)
wait_port "$qclient"
q() { etcdctl --endpoints "127.0.0.1:$qclient" --command-timeout 5s "$@" >/dev/null 2>&1 || true; }
for i in 1 2 3; do q put "key$i" "value$i"; done
q del key2
lease=$(etcdctl --endpoints "127.0.0.1:$qclient" lease grant 60 | awk '{print $2}')
q put --lease "$lease" leased v
q member add m2 --learner --peer-urls http://127.0.0.1:1
"$bin/quorumctl" snapshot save --endpoints "127.0.0.1:$qclient" "$work/quorum.db" >/dev/null 2>&1 ||
    etcdctl --endpoints "127.0.0.1:$qclient" snapshot save "$work/quorum.db" >/dev/null
kill "$qpid"
wait "$qpid" 2>/dev/null || true
add snapshot "$work/quorum.db"
segment=$(ls "$work"/q/member/wal/*.wal | head -1)
# The written records, without the segment's preallocated zeros (the WAL reads those as its end).
python3 - "$segment" "$work/wal.bin" <<'PY'
import sys
data = open(sys.argv[1], "rb").read().rstrip(b"\0")
open(sys.argv[2], "wb").write(data)
PY
printf '\0' | cat - "$work/wal.bin" >"$work/wal-raw"
printf '\1' | cat - "$work/wal.bin" >"$work/wal-fixed"
add wal "$work/wal-raw"
add wal "$work/wal-fixed"
mkdir -p "$work/peer"
"$bin/quorum-fuzz" seeds-peer "$work/q/member/wal" "$work/peer" >/dev/null
for f in "$work"/peer/*; do add peer "$f"; done
mkdir -p "$work/auth"
"$bin/quorum-fuzz" seeds-auth "$work/auth" >/dev/null
for f in "$work"/auth/*; do add auth "$f"; done
mkdir -p "$work/raft"
"$bin/quorum-fuzz" seeds-raft "$work/raft" >/dev/null
for f in "$work"/raft/*; do add raft "$f"; done

# --- Certificates, keys, trust bundles, CRLs ---
"$bin/quorumctl" pki init --out "$work/pki" >/dev/null
for f in $(find "$work/pki" -name '*.crt' -o -name '*.pem' | grep -v key); do add pki "$f"; done
cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.crt -days 365 -subj /CN=etcd-rsa \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "extendedKeyUsage=serverAuth,clientAuth" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key -out ec.crt -days 30 \
    -subj "/O=Quorum/CN=etcd-ec" 2>/dev/null
openssl ec -in ec.key -out ec-sec1.key 2>/dev/null
cat ec.crt rsa.crt >chain.crt
mkdir -p ca && touch ca/index.txt && echo 01 >ca/crlnumber
cat >ca.cnf <<'CNF'
[ca]
default_ca = ca
[ca]
database = ca/index.txt
crlnumber = ca/crlnumber
default_md = sha256
default_crl_days = 30
CNF
openssl ca -config ca.cnf -keyfile ec.key -cert ec.crt -revoke rsa.crt >/dev/null 2>&1 || true
openssl ca -config ca.cnf -keyfile ec.key -cert ec.crt -gencrl -out crl.pem >/dev/null 2>&1
openssl crl -in crl.pem -outform DER -out crl.der
cd - >/dev/null
for f in rsa.crt rsa.key ec.crt ec.key ec-sec1.key chain.crt crl.pem crl.der; do add pki "$work/$f"; done

s3_seeds

# --- Configuration files ---
sample=${ETCD_CONF_SAMPLE:-$(find /usr/share/gocode/src/go.etcd.io/etcd -maxdepth 1 -name etcd.conf.yml.sample 2>/dev/null | head -1 || true)}
[ -n "$sample" ] && add config "$sample"
cat >"$work/c1.yml" <<'YML'
name: m1
data-dir: /var/lib/quorum/m1
listen-client-urls: https://0.0.0.0:2379
advertise-client-urls: https://10.0.0.1:2379
listen-peer-urls: https://0.0.0.0:2380
initial-advertise-peer-urls: https://10.0.0.1:2380
initial-cluster: m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380
initial-cluster-state: new
initial-cluster-token: prod
heartbeat-interval: 100
election-timeout: 1000
quota-backend-bytes: 8589934592
auto-compaction-mode: revision
auto-compaction-retention: "1000"
max-request-bytes: 1572864
log-outputs: [stderr]
logger: zap
log-level: info
client-transport-security:
  cert-file: /etc/quorum/server.crt
  key-file: /etc/quorum/server.key
  client-cert-auth: true
  trusted-ca-file: /etc/quorum/ca.crt
  auto-tls: false
peer-transport-security:
  cert-file: /etc/quorum/peer.crt
  key-file: /etc/quorum/peer.key
  client-cert-auth: true
  trusted-ca-file: /etc/quorum/ca.crt
  allowed-cn: m1
cipher-suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
YML
cat >"$work/c2.yml" <<'YML'
name: m2
discovery-srv: example.com
initial-advertise-peer-urls: http://m1.example.com:2380
auth-token: simple
auth-token-ttl: 600
bcrypt-cost: 10
socket-options:
  reuse-port: true
  reuse-address: true
experimental-initial-corrupt-check: true
max-wals: 5
snapshot-count: 10000
unsafe-no-fsync: false
enable-v2: false
YML
add config "$work/c1.yml"
add config "$work/c2.yml"
echo "seed corpora in $corpus:"
for d in "$corpus"/*/; do echo "  $(basename "$d"): $(ls "$d" | wc -l) files, $(du -sh "$d" | cut -f1)"; done
