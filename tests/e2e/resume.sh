#!/usr/bin/env bash
# Overnight runs survive interruption: SIGTERM makes a run save and exit 75, --resume finishes it
# with the uninterrupted result; kill -9 of one rank of an MPI run, then --resume, too; resuming
# with another rank count is refused with a message.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/stories260K/stories260K.bin"
mpi_env
kill_runs() { pkill -KILL -f "$work" 2>/dev/null; }  # runs of this test still alive
on_exit kill_runs
cd "$src"
head -c 20000 "$fx/tinystories/eval.txt" >"$work/eval.txt"
common=(--config configs/stories260k-50.ini --set "model.path=$fx/stories260K/stories260K.bin"
        --set "model.tokenizer=$fx/stories260K/tok512.bin" --set "data.calib=$fx/tinystories/calib.txt"
        --set "data.eval=$work/eval.txt" --set data.seq_len=32 --set data.max_sequences=64
        --set schedule.steps=300 --set schedule.batch_size=4 --set schedule.log_interval=2
        --set run.checkpoint_steps=10)  # long enough that the signal arrives mid-run

# waits until the log shows mask step 30 or later, at most 120 s
wait_for_step() {
  for _ in $(seq 1200); do
    grep -qE "masks step ([3-9][0-9]|[1-9][0-9][0-9])/" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$1"; fail "$1 never reached step 30"
}

"$VT_BIN" prune "${common[@]}" --set "output.dir=$work/whole" >/dev/null 2>"$work/whole.err"

# SIGTERM, one process
"$VT_BIN" prune "${common[@]}" --set "output.dir=$work/a" >/dev/null 2>"$work/a.err" &
pid=$!
wait_for_step "$work/a.err"
kill -TERM $pid
t0=$(date +%s)
set +e; wait $pid; rc=$?; set -e
[ $rc -eq 75 ] || { tail "$work/a.err"; fail "SIGTERM: exit $rc, expected 75"; }
[ $(( $(date +%s) - t0 )) -le 60 ] || fail "took more than 60 s to stop"
[ -f "$work/a.run/manifest.json" ] || fail "no manifest after SIGTERM"
[ ! -e "$work/a" ] || fail "an output directory exists after the stop"
"$VT_BIN" prune "${common[@]}" --set "output.dir=$work/a" --resume "$work/a.run" >/dev/null 2>"$work/a2.err" || {
  tail "$work/a2.err"; fail "resume after SIGTERM"; }
grep -q "resume: " "$work/a2.err" || fail "the second run did not resume"
# the machine-readable log in the run directory covers both runs, one JSON object per line
"$py" -c "
import json, sys
steps = [json.loads(l)['step'] for l in open('$work/a.run/progress.jsonl')]
assert steps and steps[-1] == 300 and all(isinstance(s, int) for s in steps), steps[-5:]
"
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/whole" "$work/a"

if command -v mpirun >/dev/null; then
  # kill -9 of one rank of a 2-stage run, then resume with the same layout; compared with an
  # uninterrupted run of that layout (layouts differ by float summation order, which 300 steps amplify)
  timeout 300 mpirun -n 2 "$VT_BIN" prune "${common[@]}" --set parallel.stages=2 --set "output.dir=$work/mwhole" >/dev/null 2>"$work/mw.err"
  mpirun -n 2 "$VT_BIN" prune "${common[@]}" --set parallel.stages=2 --set "output.dir=$work/m" >/dev/null 2>"$work/m.err" &
  mpid=$!
  wait_for_step "$work/m.err"
  pkill -KILL -f "output.dir=$work/m" -n || true
  set +e; timeout 60 tail --pid=$mpid -f /dev/null; wait $mpid; set -e
  [ ! -e "$work/m" ] || fail "output exists after kill -9"
  # another rank count is refused
  set +e
  "$VT_BIN" prune "${common[@]}" --set "output.dir=$work/m" --resume "$work/m.run" >/dev/null 2>"$work/m1.err"
  rc=$?
  set -e
  [ $rc -ne 0 ] && grep -q "ranks" "$work/m1.err" || { cat "$work/m1.err"; fail "resuming with -n 1 was not refused"; }
  timeout 300 mpirun -n 2 "$VT_BIN" prune "${common[@]}" --set parallel.stages=2 --set "output.dir=$work/m" \
    --resume "$work/m.run" >/dev/null 2>"$work/m2.err" || { tail "$work/m2.err"; fail "MPI resume"; }
  "$py" "$src/tests/reference/compare_checkpoints.py" "$work/mwhole" "$work/m"
fi
echo "resume: ok"
