#!/usr/bin/env bash
# The stages after the mask phase survive interruption too (docs/TRAINING.md, "Resuming"): a
# stories260K prune with a re-fit and [recover] lora stopped after recovery step 7 (VT_STOP_AFTER,
# the same save-and-exit-75 path as SIGTERM) resumes with --resume to model files byte-identical to
# the uninterrupted run's (the mask phase's last checkpoint is loaded, the re-fit recomputed, the
# adapters and their Adam moments restored); a damaged newest recovery checkpoint is refused with a
# message naming its file and the older one is used. Plugin training the same: `plug` stopped after
# step 3 and resumed writes the uninterrupted run's plugin file, byte for byte.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/stories260K/stories260K.bin" "$fx/tinystories/calib.txt" "$fx/tinystories/eval.txt"
mpi_env
cd "$src"
head -c 8000 "$fx/tinystories/eval.txt" >"$work/eval.txt"
common=(--config configs/stories260k-50.ini --set "model.path=$fx/stories260K/stories260K.bin"
        --set "model.tokenizer=$fx/stories260K/tok512.bin" --set "data.calib=$fx/tinystories/calib.txt"
        --set "data.eval=$work/eval.txt" --set data.seq_len=32 --set data.max_sequences=32 --set data.eval_window=64
        --set schedule.steps=20 --set schedule.batch_size=4 --set schedule.log_interval=5
        --set reconstruct.method=lsq --set recover.method=lora --set recover.norms=true --set recover.steps=12 --set recover.batch_size=4
        --set run.checkpoint_steps=5)

"$VT_BIN" prune "${common[@]}" --set "output.dir=$work/whole" >/dev/null 2>"$work/whole.err" ||
  { tail "$work/whole.err"; fail "uninterrupted run"; }

# 1. stopped after recovery step 7: exit 75, no output, recovery checkpoints at steps 5 and 7
set +e
VT_STOP_AFTER=recover:7 "$VT_BIN" prune "${common[@]}" --set "output.dir=$work/a" >"$work/a.out" 2>"$work/a.err"
rc=$?
set -e
[ $rc -eq 75 ] || { tail "$work/a.err"; fail "stop in the recovery: exit $rc, expected 75"; }
[ ! -e "$work/a" ] || fail "an output directory exists after the stop"
grep -q "stopping on request after recovery step 7" "$work/a.err" || { cat "$work/a.err"; fail "no stop message"; }
"$py" -c "
import json
m = json.load(open('$work/a.run/recover/manifest.json'))
assert m['kind'] == 'recovery' and [c['step'] for c in m['checkpoints']] == [5, 7], m
assert 'recover.method' in m['settings'], sorted(m['settings'])
m = json.load(open('$work/a.run/manifest.json'))
assert m['checkpoints'][-1]['step'] == 20, m['checkpoints']  # the mask phase's last step, saved for the resume
"
cp -r "$work/a.run" "$work/b.run"  # for the damaged-checkpoint case

"$VT_BIN" prune "${common[@]}" --set "output.dir=$work/a" --resume "$work/a.run" >/dev/null 2>"$work/a2.err" ||
  { tail "$work/a2.err"; fail "resume in the recovery"; }
grep -q "resume: .*recover/ckpt-00000007 at recovery step 7" "$work/a2.err" || { cat "$work/a2.err"; fail "did not resume at 7"; }
for f in "$work"/whole/*.safetensors; do
  cmp "$f" "$work/a/$(basename "$f")" || fail "resumed recovery: $(basename "$f") differs from the uninterrupted run"
done
"$py" - "$work/a/vtrans_report.json" <<'PY' || fail "report after the resume"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["recover"]["steps"] == 12 and r["recover"]["tokens"] == 12 * 4 * 32, r["recover"]
assert r["train_tokens"] == 20 * 4 * 32 + 12 * 4 * 32, r["train_tokens"]
assert [s["stage"] for s in r["stages"]] == ["masks", "refit", "recover"], r["stages"]
assert all(s["ppl"] and s["ppl"] > 1 for s in r["stages"]), r["stages"]
PY

# 2. the newest recovery checkpoint damaged: refused by name, the one before (step 5) used
printf 'XXXX' | dd of="$work/b.run/recover/ckpt-00000007/state.bin" bs=1 seek=100 conv=notrunc status=none
"$VT_BIN" prune "${common[@]}" --set "output.dir=$work/b" --resume "$work/b.run" >/dev/null 2>"$work/b2.err" ||
  { tail "$work/b2.err"; fail "resume with a damaged checkpoint"; }
grep -q "ckpt-00000007/state.bin: checksum .* does not match" "$work/b2.err" ||
  { cat "$work/b2.err"; fail "the damaged checkpoint was not named"; }
grep -q "resume: .*recover/ckpt-00000005 at recovery step 5" "$work/b2.err" || { cat "$work/b2.err"; fail "not from step 5"; }
for f in "$work"/whole/*.safetensors; do
  cmp "$f" "$work/b/$(basename "$f")" || fail "resumed from step 5: $(basename "$f") differs"
done

# 3. plugin training stopped after step 3 of 6 and resumed: the same plugin file
head -c 40000 "$fx/tinystories/calib.txt" >"$work/calib.txt"
plug=(--config configs/stories260k-plug.ini --set "model.path=$fx/stories260K/stories260K.bin"
      --set "model.tokenizer=$fx/stories260K/tok512.bin" --set "data.calib=$work/calib.txt" --set "data.eval=$work/eval.txt"
      --set data.eval_window=64 --set plugin.steps=6 --set plugin.batch_size=4 --set plugin.k=4 --set plugin.r=8
      --set run.checkpoint_steps=2)
"$VT_BIN" plug "${plug[@]}" --set "output.dir=$work/pw" >/dev/null 2>"$work/pw.err" || { tail "$work/pw.err"; fail "plug"; }
set +e
VT_STOP_AFTER=plug:3 "$VT_BIN" plug "${plug[@]}" --set "output.dir=$work/p" >/dev/null 2>"$work/p.err"
rc=$?
set -e
[ $rc -eq 75 ] || { tail "$work/p.err"; fail "plug stop: exit $rc, expected 75"; }
[ ! -e "$work/p/plugin-k4.safetensors" ] || fail "a plugin file exists after the stop"
"$VT_BIN" plug "${plug[@]}" --set "output.dir=$work/p" --resume "$work/p.run" >/dev/null 2>"$work/p2.err" ||
  { tail "$work/p2.err"; fail "plug --resume"; }
grep -q "resume: .*plug-k4/ckpt-00000003 at plug step 3" "$work/p2.err" || { cat "$work/p2.err"; fail "plug did not resume at 3"; }
cmp "$work/pw/plugin-k4.safetensors" "$work/p/plugin-k4.safetensors" || fail "resumed plugin differs from the uninterrupted one"
finish
