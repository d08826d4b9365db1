#!/usr/bin/env bash
# Runs Quorum's whole test suite. Installs what the tests need first (Debian packages), so it works on a
# fresh machine: etcdctl 3.4 (etcd-client) drives the server end to end, real etcd 3.4 (etcd-server) is the
# reference some tests compare against, openssl checks certificates, iproute2 builds network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v etcd >/dev/null || need+=(etcd-server)
command -v openssl >/dev/null || need+=(openssl)
command -v ip >/dev/null || need+=(iproute2)
[ -f /usr/include/sqlite3.h ] || need+=(libsqlite3-dev)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "installing test dependencies: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

swift build --build-tests "$@"
swift test --skip-build "$@"
