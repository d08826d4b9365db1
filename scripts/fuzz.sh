#!/usr/bin/env bash
# Runs Quorum's libFuzzer targets (docs/FUZZING.md).
#
#   scripts/fuzz.sh [--seconds N] [target...]      targets: grpc http peer wal snapshot pki config auth raft s3
#                                                  (default: all)
#   scripts/fuzz.sh --runs N [--seed S] [target...]  exactly N executions per target from seed S (default 1): nearly
#                                                    the same inputs on every run (what scripts/test.sh runs)
#
# Builds `quorum-fuzz` with libFuzzer and AddressSanitizer into its own scratch path (.build-fuzz, or
# $QUORUM_FUZZ_SCRATCH; the ordinary .build is untouched), then runs each target N seconds (default 60) over its
# committed seed corpus and regression inputs. Inputs that find new coverage go to a temporary folder ($QUORUM_FUZZ_OUT
# to keep them), never into the committed corpus. Any crash, sanitizer report, timeout or out-of-memory fails the
# run and prints the reproducer's path; replay it with
#   .build-fuzz/debug/quorum-fuzz TARGET REPRODUCER          (under the sanitizers), or
#   swift run quorum-fuzz TARGET REPRODUCER                  (an ordinary build)
# and add it to Tests/FuzzTests/Regressions/TARGET/ with its fix.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(grpc http peer wal snapshot pki config auth raft s3)
seconds=60
runs=""
seed=""
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --seconds=*) seconds="${1#--seconds=}"; shift ;;
        --runs) runs="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *)
            if [[ " ${all[*]} " != *" $1 "* ]]; then echo "fuzz.sh: unknown target $1 (${all[*]})" >&2; exit 2; fi
            targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

scratch="${QUORUM_FUZZ_SCRATCH:-.build-fuzz}"
start=$(date +%s)
swift build --scratch-path "$scratch" --product quorum-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DQUORUM_LIBFUZZER 2>&1 | grep -v "Cannot export local symbol" || true
bin="$scratch/debug/quorum-fuzz"
[ -x "$bin" ] || { echo "fuzz.sh: the build failed" >&2; exit 1; }
echo "fuzz.sh: built in $(( $(date +%s) - start )) s"

out="${QUORUM_FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/quorum-fuzz.XXXXXX")}"
# ASan's leak checker would report the process-wide caches (metrics registries, protobuf name maps) at exit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
# Swift's own crash handler, run inside an ASan process, trips ASan itself (a report about its memory reader
# follows every trap); libFuzzer's handler prints the trap's stack instead.
export SWIFT_BACKTRACE="${SWIFT_BACKTRACE:-enable=no}"
# With --runs the exploration is a function of the seed alone: libFuzzer's own choices come from -seed, and Swift's
# hashing (dictionary and set order, which coverage can depend on) is made deterministic. Time then only bounds it.
limits=(-max_total_time="$seconds")
if [ -n "$runs" ]; then
    export SWIFT_DETERMINISTIC_HASHING=1
    [ "$seconds" = 60 ] && seconds=600
    limits=(-runs="$runs" -seed="${seed:-1}" -max_total_time="$seconds")
elif [ -n "$seed" ]; then
    limits+=(-seed="$seed")
fi
status=0
for target in "${targets[@]}"; do
    dir="$out/$target"
    mkdir -p "$dir/new" "$dir/artifacts"
    corpora=("Tests/FuzzTests/Corpus/$target")
    [ -d "Tests/FuzzTests/Regressions/$target" ] && corpora+=("Tests/FuzzTests/Regressions/$target")
    options=()
    [ -f "Tests/FuzzTests/Dictionaries/$target.dict" ] && options+=("-dict=Tests/FuzzTests/Dictionaries/$target.dict")
    # -timeout: one input taking this long is a hang (generous: a loaded 2-core machine, a debug ASan build).
    if "$bin" "$target" "${limits[@]}" -timeout=60 -rss_limit_mb=3072 -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/" "${options[@]}" "$dir/new" "${corpora[@]}" >"$dir/log" 2>&1; then
        cov=$(grep -E '^#[0-9]+' "$dir/log" | tail -1 | grep -o 'cov: [0-9]* ft: [0-9]*' || true)
        executed=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/log" | awk '{print $2}')
        echo "fuzz.sh: $target ok: ${executed:-?} executions, $cov, $(ls "$dir/new" | wc -l) new inputs"
    else
        status=1
        echo "fuzz.sh: $target FAILED; log: $dir/log"
        grep -E 'ERROR: |Fatal error|Assertion|Precondition|SUMMARY|deadly signal|timeout|out-of-memory' "$dir/log" |
            head -10 || true
        for artifact in "$dir"/artifacts/*; do
            [ -e "$artifact" ] && echo "fuzz.sh: reproducer: $artifact"
        done
    fi
done
# A passing run's corpus and logs in a directory of our own making are of no further use (a failing one's are).
[ $status -eq 0 ] && [ -z "${QUORUM_FUZZ_OUT:-}" ] && rm -rf "$out"
exit $status
