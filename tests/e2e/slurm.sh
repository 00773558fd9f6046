#!/usr/bin/env bash
# cluster/slurm/vtrans-dist.sbatch on a real one-node Slurm cluster (scripts/slurm-local: Debian's
# slurm-wlm and munge, installed when missing). Part 1: `sbatch --wait -n 2` prunes stories260K
# and the pruned checkpoint loads. Part 2 (once `prune --resume` exists): SIGUSR1 to the batch
# shell mid-run (as --signal=B:USR1@300 sends it before the time limit); the ranks save and exit
# 75, the script requeues the job, the restart resumes from the run directory and finishes with
# the same result as an uninterrupted run. The daemons are stopped at the end, also on failure.
# Skipped (77, with the reason) only when this machine cannot run a Slurm cluster at all.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/stories260K/stories260K.bin"
[ "$(id -u)" -eq 0 ] || skip "not root: slurmd and munged need root (run the suite as root)"
need_command mpirun
mpi_env

SLURM_LOCAL_DIR=$(mktemp -d /tmp/vt-slurm.XXXXXX)
export SLURM_LOCAL_DIR SLURM_CONF=$SLURM_LOCAL_DIR/slurm.conf
stop_slurm() { # exit code: on failure, the job outputs, the queue and the daemons' logs first
  local rc=$1
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    for f in "$work"/*.out; do [ -f "$f" ] && { echo "---- $f"; tail -30 "$f"; }; done
    squeue 2>/dev/null; scontrol show job 2>/dev/null | grep -E 'JobId|JobState|Reason' || true
    for f in "$SLURM_LOCAL_DIR"/log/slurmctld.log "$SLURM_LOCAL_DIR"/log/slurmd.log; do
      [ -f "$f" ] && { echo "---- $f"; tail -15 "$f"; }
    done
  fi
  "$src/scripts/slurm-local" stop || true
  rm -rf "$SLURM_LOCAL_DIR"
}
on_exit stop_slurm
trap 'exit 1' INT TERM

set +e
"$src/scripts/slurm-local" start >"$work/start.log" 2>&1
rc=$?
set -e
[ $rc -eq 77 ] && skip "$(grep 'cannot run' "$work/start.log" | head -1)"
[ $rc -eq 0 ] || { cat "$work/start.log"; fail "scripts/slurm-local start exited $rc"; }
sinfo -h -o '%P %T %D %c' | grep -q idle || fail "no idle node after slurm-local start"

cd "$src"
head -c 3000 "$fx/tinystories/eval.txt" >"$work/eval.txt"  # the tensors are compared; a short evaluation
common=(--set "model.path=$fx/stories260K/stories260K.bin" --set "model.tokenizer=$fx/stories260K/tok512.bin"
        --set "data.calib=$fx/tinystories/calib.txt" --set "data.eval=$work/eval.txt"
        --set data.seq_len=32 --set data.max_sequences=64 --set schedule.batch_size=4)
export VT_BIN  # for the batch script

# Part 1: a small run, submitted and waited for.
timeout 170 sbatch --wait -n 2 --time=10 -J vt-e2e-run -o "$work/run1.out" \
  cluster/slurm/vtrans-dist.sbatch configs/stories260k-50.ini "${common[@]}" \
  --set schedule.steps=20 --set schedule.log_interval=5 --set "output.dir=$work/out1" >"$work/sbatch1.log" 2>&1 ||
  { cat "$work/sbatch1.log"; fail "sbatch --wait of the small run exited non-zero"; }
grep -q "vtrans-dist exited with code 0" "$work/run1.out" || fail "the job did not report exit code 0"
grep -q "masks step 20/20" "$work/run1.out" || fail "no progress line for step 20 in the job output"
[ -f "$work/out1/config.json" ] || fail "no pruned checkpoint in $work/out1"
"$VT_BIN" inspect --model "$work/out1" >"$work/inspect1.log" 2>&1 || { cat "$work/inspect1.log"; fail "inspect does not load the pruned checkpoint"; }
grep -q "^format *HF safetensors" "$work/inspect1.log" || fail "inspect output unexpected"
echo "slurm: part 1 ok (sbatch -n 2 pruned stories260K; the checkpoint loads) at ${SECONDS} s"

# The same with srun as the launcher (VT_LAUNCHER=srun: srun --mpi=pmix), when Slurm has PMIx.
if srun --mpi=list 2>&1 | grep -q pmix; then
  VT_LAUNCHER=srun timeout 120 sbatch --wait -n 2 --time=10 -J vt-e2e-srun -o "$work/run1s.out" \
    cluster/slurm/vtrans-dist.sbatch configs/stories260k-50.ini "${common[@]}" \
    --set schedule.steps=4 --set schedule.log_interval=2 --set "output.dir=$work/out1s" >"$work/sbatch1s.log" 2>&1 ||
    { cat "$work/sbatch1s.log"; fail "sbatch --wait with VT_LAUNCHER=srun exited non-zero"; }
  grep -q "srun --mpi=pmix" "$work/run1s.out" || fail "VT_LAUNCHER=srun did not launch with srun"
  "$VT_BIN" inspect --model "$work/out1s" >/dev/null 2>&1 || fail "inspect does not load the srun run's checkpoint"
  echo "slurm: part 1 with srun ok at ${SECONDS} s"
else
  echo "slurm: srun launcher not tried: this Slurm has no PMIx plugin (srun --mpi=list)"
fi

# Part 2: checkpoint on SIGUSR1, requeue, resume.
if ! "$VT_BIN" prune --help 2>&1 | grep -q -- "--resume"; then
  echo "slurm: part 2 (signal, requeue, resume) not run: this vtrans-dist has no prune --resume yet"
  echo "slurm: ok (part 1)"
  exit 0
fi
long=("${common[@]}" --set schedule.steps=300 --set schedule.log_interval=10)
# The reference: the same run without interruption.
timeout 200 mpirun -n 2 "$VT_BIN" prune --config configs/stories260k-50.ini "${long[@]}" \
  --set "output.dir=$work/ref" >"$work/ref.out" 2>&1 || fail "the uninterrupted reference run failed"
echo "slurm: uninterrupted reference run done at ${SECONDS} s"
timeout 200 sbatch --wait --parsable -n 2 --time=10 -J vt-e2e-resume -o "$work/run2.out" \
  cluster/slurm/vtrans-dist.sbatch configs/stories260k-50.ini "${long[@]}" --set "output.dir=$work/out2" \
  >"$work/sbatch2.log" 2>&1 &
waiter=$!
job=""
for _ in $(seq 200); do
  job=$(grep -Eo '^[0-9]+' "$work/sbatch2.log" | head -1 || true)
  [ -n "$job" ] && grep -Eq "masks step ([4-9][0-9]|[1-2][0-9][0-9])/300" "$work/run2.out" 2>/dev/null && break
  kill -0 $waiter 2>/dev/null || { cat "$work/sbatch2.log"; fail "the job ended before it could be signalled"; }
  sleep 0.5
done
[ -n "$job" ] || fail "no job id from sbatch --parsable"
grep -q "masks step 300/300" "$work/run2.out" && fail "the run finished before the signal (make it longer)"
scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1 --batch $job failed"
echo "slurm: sent SIGUSR1 to job $job at $(grep -Eo 'masks step [0-9]+/300' "$work/run2.out" | tail -1) (${SECONDS} s)"
set +e
wait $waiter
rc=$?
set -e
[ $rc -eq 0 ] || { cat "$work/sbatch2.log"; fail "sbatch --wait of the interrupted run exited $rc"; }
grep -q "vtrans-dist exited with code 75" "$work/run2.out" || fail "the signalled run did not exit 75"
grep -q "requeueing job $job" "$work/run2.out" || fail "the job did not requeue itself"
grep -q "(restart 1)" "$work/run2.out" || fail "the job did not start a second time"
grep -q "resuming from $work/out2.run" "$work/run2.out" || fail "the restart did not pass --resume"
grep -q "vtrans-dist exited with code 0" "$work/run2.out" || fail "the resumed run did not finish"
"$VT_BIN" inspect --model "$work/out2" >/dev/null 2>&1 || fail "inspect does not load the resumed run's checkpoint"
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/ref" "$work/out2" ||
  fail "the resumed run differs from the uninterrupted one"
echo "slurm: part 2 ok (SIGUSR1 -> exit 75 -> requeue -> --resume -> same result) at ${SECONDS} s"
echo "slurm: ok"
