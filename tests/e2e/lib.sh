# lib.sh — the shared preamble of the end-to-end scripts (sourced, not a test): strict mode, the
# binary, source and fixture paths, a work directory removed on exit, and skip/fail/expect helpers.
#
# Sets: VT_BIN (required), src (VT_SOURCE_DIR, default the repository), fx (VT_FIXTURES, default
# ../shared/fixtures beside it), py (/usr/bin/python3), work (a fresh temporary directory; kept
# when VT_KEEP is set), failures (0). CTest passes VT_BIN, VT_SOURCE_DIR and VT_FIXTURES, and
# VT_SANITIZED=1 in a -DVT_SANITIZE=ON build (see full_pass).
# shellcheck shell=bash disable=SC2034 # (variables set for the scripts that source this)
set -euo pipefail

: "${VT_BIN:?VT_BIN must name the vtrans-dist binary}"
src=${VT_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
fx=${VT_FIXTURES:-$src/../shared/fixtures}
py=/usr/bin/python3
test_name=$(basename "$0" .sh)
failures=0

# skip REASON: ends the test as skipped (CTest's SKIP_RETURN_CODE 77), saying why.
skip() {
    echo "SKIPPED: $test_name: $*" >&2
    echo "skipped: $*"
    exit 77
}

# need_files FILE...: skips unless every file is readable (fixtures).
need_files() {
    local f
    for f in "$@"; do
        [[ -r $f ]] || skip "fixture $f not found (set VT_FIXTURES)"
    done
}

# need_command NAME [WHY]: skips unless NAME is on PATH.
need_command() {
    command -v "$1" >/dev/null || skip "$1 not found${2:+ ($2)}"
}

# mpi_env: the environment of scripts that run mpirun: Open MPI may run as root and oversubscribe
# the cores, one BLIS thread per rank (each unless already set), and under ASan the slow unwinder:
# Open MPI's leaks are allocated in plugins it unloads at MPI_Finalize, and only the slow unwinder
# records the deeper frames in libmpi/libopen-pal that tests/lsan.supp names.
mpi_env() {
    export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
    export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
    export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
    export BLIS_NUM_THREADS=${BLIS_NUM_THREADS:-1}
    [[ -z ${ASAN_OPTIONS:-} ]] || export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
}

# full_pass WHY: true in the release pass. Under the sanitizers (VT_SANITIZED=1) false, saying WHY
# the part is left to the release pass: the ASan pass exists to run every code path under the
# sanitizers once, the release pass makes every comparison (each layout, each reference). Guards
# repeats only: whatever a skipped part runs, another part of the same script runs sanitized.
# VT_FULL=1 runs everything under the sanitizers too.
full_pass() {
    [[ -z ${VT_SANITIZED:-} || -n ${VT_FULL:-} ]] && return 0
    echo "$test_name: release pass only: $*"
    return 1
}

# fail MESSAGE: ends the test as failed at once.
fail() {
    echo "FAIL: $*"
    exit 1
}

# record_failure TITLE MESSAGE: counts a failed case and goes on; `finish` reports the count.
record_failure() {
    echo "FAIL [$1]: $2"
    failures=$((failures + 1))
}

# finish: exits 1 when a case failed, else prints "<test>: ok".
finish() {
    if [[ $failures -ne 0 ]]; then
        echo "$test_name: $failures failure(s)"
        exit 1
    fi
    echo "$test_name: ok"
}

# expect_error TITLE PATTERN... -- ARGS...: `vtrans-dist ARGS` exits 1 (an error, not a crash) and
# its stderr matches every PATTERN (extended regular expressions). stdout and stderr are left in
# $work/out.txt and $work/err.txt. A mismatch is a recorded failure (see record_failure).
expect_error() {
    local title=$1 patterns=() rc=0 p
    shift
    while [[ $1 != "--" ]]; do
        patterns+=("$1")
        shift
    done
    shift
    "$VT_BIN" "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
    if [[ $rc -ne 1 ]]; then
        record_failure "$title" "exit code $rc, expected 1 (>= 128 is a crash)"
        cat "$work/err.txt"
        return
    fi
    for p in ${patterns[@]+"${patterns[@]}"}; do
        if ! grep -qE -- "$p" "$work/err.txt"; then
            record_failure "$title" "stderr does not match '$p':"
            cat "$work/err.txt"
            return
        fi
    done
    echo "ok [$title]: $(head -c 300 "$work/err.txt")"
}

# on_exit FUNCTION: FUNCTION runs at exit with the exit code as its argument, before the work
# directory is removed.
exit_hooks=()
on_exit() { exit_hooks+=("$1"); }

cleanup_work() {
    local rc=$? hook
    for hook in ${exit_hooks[@]+"${exit_hooks[@]}"}; do
        "$hook" "$rc" || true
    done
    if [[ -n ${VT_KEEP:-} ]]; then
        echo "$test_name: kept $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}

work=$(mktemp -d)
trap cleanup_work EXIT

# Every script gets that environment: even one-process `prune` starts MPI (as a singleton) for the
# re-fit's ScaLAPACK solve, and under ASan its leak reports need the slow unwinder too.
mpi_env
