#!/usr/bin/env bash
# Runs etcd 3.4.23's own e2e suite with every member behind `quorum grpc-proxy start`: the suite's `cluster_proxy`
# build tag (tests/e2e/cluster_proxy_test.go) starts a gRPC proxy per member and points etcdctl at the proxies.
#
#   scripts/e2e-grpc-proxy.sh BIN_DIR [GO_TEST_RUN_REGEX]     (BIN_DIR/etcd: quorum, or real etcd as the reference)
#   E2E_CATEGORIES=kv,txn,watch,lease,election-lock,auth,tls-client scripts/e2e-grpc-proxy.sh BIN_DIR
#
# ../shared/e2e/e2e.sh builds the suite without the tag, so this prepares its work folder once (E2E_WORK, default
# $TMPDIR/etcd-e2e-3.4.23-proxy): the patched copy from a plain e2e.sh run, with the v2 proxy the tag also starts
# (`etcd --proxy on`, which Quorum does not have) left out, compiled with `-tags cluster_proxy`; then runs e2e.sh
# on it. Everything else (time limits, results, logs) is e2e.sh's.
set -euo pipefail
BIN_DIR=${1:?usage: e2e-grpc-proxy.sh BIN_DIR [GO_TEST_RUN_REGEX]}
SHARED="$(cd "$(dirname "$0")/../.." && pwd)/shared/e2e/e2e.sh"
WORK=${E2E_WORK:-${TMPDIR:-/tmp}/etcd-e2e-3.4.23-proxy}
PLAIN="$WORK.plain"
if [ ! -x "$WORK/e2e.test.proxy" ]; then
  # A plain run prepares the patched copy (and checks the toolchain); one quick test is enough.
  E2E_WORK="$PLAIN" E2E_OUT="$PLAIN/out" "$SHARED" "$BIN_DIR" '^TestCtlV3Version$' >/dev/null || true
  rm -rf "$WORK" && cp -a "$PLAIN" "$WORK"
  E2E_DIR="$WORK/gopath/src/go.etcd.io/etcd/tests/e2e"
  python3 - "$E2E_DIR/cluster_proxy_test.go" <<'PY'
import sys
path = sys.argv[1]
s = open(path).read()
for old, new in [
    ("\tif err := p.proxyV2.Start(); err != nil {\n\t\treturn err\n\t}\n\treturn p.proxyV3.Start()", "\treturn p.proxyV3.Start()"),
    ("\tif err := p.proxyV2.Restart(); err != nil {\n\t\treturn err\n\t}\n\treturn p.proxyV3.Restart()", "\treturn p.proxyV3.Restart()"),
    ("\terr := p.proxyV2.Stop()\n\tif v3err := p.proxyV3.Stop(); err == nil {", "\tvar err error\n\tif v3err := p.proxyV3.Stop(); err == nil {"),
    ("\terr := p.proxyV2.Close()\n\tif v3err := p.proxyV3.Close(); err == nil {", "\tvar err error\n\tif v3err := p.proxyV3.Close(); err == nil {"),
]:
    if old not in s:
        sys.exit("cluster_proxy_test.go: patch did not apply")
    s = s.replace(old, new)
open(path, "w").write(s)
PY
  ( cd "$E2E_DIR" && env GOPATH="$WORK/gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOCACHE="$WORK/gocache" \
      go test -tags cluster_proxy -c -o "$WORK/e2e.test" . ) > "$WORK/build-proxy.log" 2>&1 \
    || { tail -30 "$WORK/build-proxy.log" >&2; exit 1; }
  cp "$WORK/e2e.test" "$WORK/e2e.test.proxy"
fi
E2E_WORK="$WORK" exec "$SHARED" "$@"
