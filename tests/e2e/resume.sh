#!/usr/bin/env bash
# Overnight runs survive interruption: SIGTERM makes a run save and exit 75, --resume finishes it
# with the uninterrupted result; kill -9 of one rank of an MPI run, then --resume, too; resuming
# with another rank count or a changed setting is refused with a message, unless --accept-changed
# names it (a model staged elsewhere); 2 stages x 2 replicas
# keep one file per stage and resume from it. Under ASan the uninterrupted runs and the comparisons
# with them are left to the release pass (full_pass): the resumed runs are the code under test.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/stories260K/stories260K.bin"
mpi_env
kill_runs() { pkill -KILL -f "$work" 2>/dev/null; }  # runs of this test still alive
on_exit kill_runs
cd "$src"
head -c 3000 "$fx/tinystories/eval.txt" >"$work/eval.txt"  # the tensors are compared; a short evaluation
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

whole=; full_pass "the uninterrupted runs and the comparisons with them" && whole=1
[ -z "$whole" ] || "$VT_BIN" prune "${common[@]}" --set "output.dir=$work/whole" >/dev/null 2>"$work/whole.err"

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
# a setting the checkpoints were made with, changed: refused with a message naming it
set +e
"$VT_BIN" prune "${common[@]}" --set "output.dir=$work/a" --set schedule.batch_size=8 --resume "$work/a.run" \
  >/dev/null 2>"$work/a1.err"
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "manifest.json: 1 setting differs .*schedule.batch_size is 8 now, 4 then" "$work/a1.err" ||
  { cat "$work/a1.err"; fail "a changed batch size was not refused by name (exit $rc)"; }
[ ! -e "$work/a" ] || fail "an output directory exists after the refused resume"
# the model staged to another directory: refused unless --accept-changed names model.path (and
# an unknown key there is refused); the same file's content gives the uninterrupted result below
mkdir "$work/staged"
cp "$fx/stories260K/stories260K.bin" "$work/staged/"
moved=(--set "output.dir=$work/a" --set "model.path=$work/staged/stories260K.bin" --resume "$work/a.run")
set +e
"$VT_BIN" prune "${common[@]}" "${moved[@]}" >/dev/null 2>"$work/a1.err"; rc=$?
"$VT_BIN" prune "${common[@]}" "${moved[@]}" --accept-changed model.pth >/dev/null 2>"$work/a1b.err"; rc2=$?
set -e
[ $rc -ne 0 ] && grep -q "model.path is .*staged/stories260K.bin now, .* then.*--accept-changed" "$work/a1.err" ||
  { cat "$work/a1.err"; fail "a moved model was not refused by name (exit $rc)"; }
[ $rc2 -ne 0 ] && grep -q "accept-changed: unknown key 'model.pth'" "$work/a1b.err" ||
  { cat "$work/a1b.err"; fail "an unknown --accept-changed key was not refused (exit $rc2)"; }
"$VT_BIN" prune "${common[@]}" "${moved[@]}" --accept-changed model.path >/dev/null 2>"$work/a2.err" || {
  tail "$work/a2.err"; fail "resume after SIGTERM"; }
grep -q "resume: " "$work/a2.err" || fail "the second run did not resume"
grep -q "resume: model.path is .* (accepted by --accept-changed)" "$work/a2.err" ||
  { cat "$work/a2.err"; fail "the accepted change was not reported"; }
# the machine-readable log in the run directory covers both runs, one JSON object per line
"$py" -c "
import json, sys
steps = [json.loads(l)['step'] for l in open('$work/a.run/progress.jsonl')]
assert steps and steps[-1] == 300 and all(isinstance(s, int) for s in steps), steps[-5:]
"
[ -z "$whole" ] || "$py" "$src/tests/reference/compare_checkpoints.py" "$work/whole" "$work/a"

if command -v mpirun >/dev/null; then
  # kill -9 of one rank of a 2-stage run, then resume with the same layout; compared with an
  # uninterrupted run of that layout (layouts differ by float summation order, which 300 steps amplify)
  [ -z "$whole" ] || timeout 300 mpirun -n 2 "$VT_BIN" prune "${common[@]}" --set parallel.stages=2 --set "output.dir=$work/mwhole" >/dev/null 2>"$work/mw.err"
  mpirun -n 2 "$VT_BIN" prune "${common[@]}" --set parallel.stages=2 --set "output.dir=$work/m" >/dev/null 2>"$work/m.err" &
  mpid=$!
  wait_for_step "$work/m.err"
  pkill -KILL -f "output.dir=$work/m" -n || true
  set +e; timeout 60 tail --pid=$mpid -f /dev/null; wait $mpid; set -e
  [ ! -e "$work/m" ] || fail "output exists after kill -9"
  # another rank count reads a Faster-VTrans checkpoint (its stage files hold nothing bound to the
  # stages: the gates are the whole model's); a copy resumes on -n 1 to a complete output
  cp -r "$work/m.run" "$work/m1.run"
  "$VT_BIN" prune "${common[@]}" --set "output.dir=$work/m1" --set "run.dir=$work/m1.run" --resume "$work/m1.run" \
    >/dev/null 2>"$work/m1.err" || { tail "$work/m1.err"; fail "a 2-stage checkpoint did not resume on -n 1"; }
  grep -q "^resume: " "$work/m1.err" && [ -f "$work/m1/config.json" ] ||
    { cat "$work/m1.err"; fail "the -n 1 resume of a 2-stage checkpoint wrote no output"; }
  timeout 300 mpirun -n 2 "$VT_BIN" prune "${common[@]}" --set parallel.stages=2 --set "output.dir=$work/m" \
    --resume "$work/m.run" >/dev/null 2>"$work/m2.err" || { tail "$work/m2.err"; fail "MPI resume"; }
  [ -z "$whole" ] || "$py" "$src/tests/reference/compare_checkpoints.py" "$work/mwhole" "$work/m"

  # 2 stages x 2 replicas: one file per stage (replica 0 writes it), read by every replica of the
  # stage. Checkpoints at steps 5, 10 (masks), 15, 20 (fine-tuning); the newest is damaged, so the
  # resume starts from step 15 (fine-tuned weights and their moments in the stage files) and
  # ends bit for bit where the uninterrupted run ended.
  rep=(--config configs/stories260k-50.ini --set "model.path=$fx/stories260K/stories260K.bin"
       --set "model.tokenizer=$fx/stories260K/tok512.bin" --set "data.calib=$fx/tinystories/calib.txt"
       --set data.seq_len=32 --set data.max_sequences=64 --set schedule.steps=12 --set schedule.batch_size=4
       --set method.variant=full --set schedule.finetune_steps=8 --set parallel.stages=2
       --set run.checkpoint_steps=5 --set "run.dir=$work/r.run" --set data.eval=)
  timeout 300 mpirun -n 4 "$VT_BIN" prune "${rep[@]}" --set "output.dir=$work/rwhole" >/dev/null 2>"$work/rw.err" ||
    { tail "$work/rw.err"; fail "2 x 2 run"; }
  for ck in "$work"/r.run/ckpt-*; do
    files=$(cd "$ck" && ls | tr '\n' ' ')
    [ "$files" = "rank-00000.bin rank-00001.bin state.bin " ] ||
      fail "$ck holds '$files', expected one file per stage and state.bin"
  done
  "$py" -c "
import json
m = json.load(open('$work/r.run/manifest.json'))
for c in m['checkpoints']:
    assert sorted(c['files']) == ['rank-00000.bin', 'rank-00001.bin', 'state.bin'], c['files']
assert [c['step'] for c in m['checkpoints']] == [15, 20], m['checkpoints']
"
  # fine-tuned weights and their moments are bound to the stages: another layout is refused by name
  set +e
  "$VT_BIN" prune "${rep[@]}" --set "output.dir=$work/r1" --resume "$work/r.run" >/dev/null 2>"$work/r1.err"
  rc=$?
  set -e
  [ $rc -ne 0 ] && grep -q "only that layout reads: resume with parallel.stages = 2" "$work/r1.err" ||
    { cat "$work/r1.err"; fail "a fine-tuned 2-stage checkpoint was not refused on -n 1"; }
  truncate -s 100 "$work/r.run/ckpt-00000020/rank-00001.bin"
  timeout 300 mpirun -n 4 "$VT_BIN" prune "${rep[@]}" --set "output.dir=$work/r" --resume "$work/r.run" \
    >/dev/null 2>"$work/r.err" || { tail "$work/r.err"; fail "2 x 2 resume"; }
  grep -q "resume: .*ckpt-00000015 at step 15" "$work/r.err" || { cat "$work/r.err"; fail "did not resume from step 15"; }
  for f in "$work"/rwhole/*.safetensors; do
    cmp "$f" "$work/r/$(basename "$f")" || fail "2 x 2 resume differs from the uninterrupted run"
  done
fi
echo "resume: ok"
