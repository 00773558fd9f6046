#!/usr/bin/env bash
# spd_solve.sh — the re-fit's ScaLAPACK SPD solver against LAPACK's dposv (tests/mpi/test_spd_solve.c)
# on 1, 2 and 4 ranks, and once started without mpirun (a singleton MPI process on a 1 x 1 grid):
# relative error 1e-8, sizes below the grid and off the block size, many right-hand sides, grids
# over half the ranks, and the ridge retry with its message.
source "$(dirname "$0")/lib.sh"
need_command mpirun "Open MPI runs the solver's ranks"
mpi_env
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
test_bin=${VT_BUILD_DIR:-$src/build}/tests/test_spd_solve
[[ -x $test_bin ]] || fail "$test_bin not built (cmake --build build --target test_spd_solve)"

# run TITLE COMMAND...: the test passes and rank 0 printed the retry message.
run() {
    local title=$1 rc=0
    shift
    "$@" >"$work/out.txt" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        record_failure "$title" "exit code $rc:"
        grep -E "FAIL|rror" "$work/out.txt" | head -20
        return
    fi
    if ! grep -q "retry message: layer 0 down_proj: factorisation failed .* retrying with ridge" "$work/out.txt"; then
        record_failure "$title" "no retry message in the output"
        return
    fi
    echo "ok [$title]: $(tail -n 1 "$work/out.txt")"
}

run "singleton" "$test_bin"
for n in 1 2 4; do
    run "mpirun -n $n" mpirun -n "$n" --oversubscribe "$test_bin"
done
finish
