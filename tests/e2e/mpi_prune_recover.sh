#!/usr/bin/env bash
# The re-fit and the recovery under MPI give the layout-independent result (the configuration of
# mpi_prune.sh, Faster-VTrans masks). The least-squares re-fit ([reconstruct], on by default;
# Faster-VTrans: it never runs after weight training): replicas share the sequences and solve with
# ScaLAPACK on their grid, stages pass both residual streams on; -n 1, 2 stages, 2 replicas and
# 2 x 2 write the same tensors (names, shapes; values to 1e-4) and perplexity, a report with both
# perplexities and each projection's errors; without it the same run writes others; with output
# biases (reconstruct.bias) the same on 2 x 2 as in one process. The recovery ([recover]) likewise,
# and a recovery stopped on one layout resumes on another.
# shellcheck source=mpi_prune_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/mpi_prune_lib.sh"
faster=(--set method.variant=faster)
run n1r 1 1 "${faster[@]}"
run s2d2r 4 2 "${faster[@]}"
refits=(n1r s2d2r)
if full_pass "the re-fit on 2 stages and on 2 replicas: the code of -n 1 and 2 x 2"; then
  run s2r 2 2 "${faster[@]}"
  run d2r 2 1 "${faster[@]}"
  refits+=(s2r d2r)
fi
same n1r "${refits[@]:1}"
run n1none 1 1 "${faster[@]}" --set reconstruct.method=none
"$py" - "$work" "${refits[@]}" <<'PY'
import json, sys
w = sys.argv[1]
for name in sys.argv[2:]:
    r = json.load(open(f"{w}/{name}/vtrans_report.json"))
    rec = r["reconstruct"]
    assert rec["method"] == "lsq" and r["ppl_masks"] and r["ppl_after"], (name, r["ppl_masks"], r["ppl_after"])
    fits = [v for l in rec["layers"] for k, v in l.items() if k != "layer"]
    assert fits and all(v["error_after"] <= v["error_before"] * 1.001 + 1e-9 for v in fits), (name, rec)
none = json.load(open(f"{w}/n1none/vtrans_report.json"))
assert "reconstruct" not in none and none["ppl_masks"] is None, none.get("ppl_masks")
PY
if same n1r n1none >/dev/null 2>&1; then
  fail "reconstruct.method = lsq wrote the same tensors as none"
fi
# With the output biases (reconstruct.bias, Faster-VTrans): the same tensors, biases included, on
# 2 stages x 2 replicas as in one process.
run n1b 1 1 "${faster[@]}" --set reconstruct.bias=true
run s2d2b 4 2 "${faster[@]}" --set reconstruct.bias=true
grep -q '"attention_bias": true' "$work/s2d2b/config.json" || fail "reconstruct.bias on 2 x 2: no attention_bias"
same n1b s2d2b

# The recovery ([recover], after the re-fit) over every layout: each stage trains its layers'
# adapters (lora, with the norm gains) or weights (full), the loss on the last stage, gradients
# summed over a stage's replicas: the same re-fitted and recovered tensors. A recovery stopped on 2
# stages resumes on -n 1 (and one stopped on -n 1 on 2 x 2) to the uninterrupted run's tensors:
# its checkpoint holds the whole state whatever the layout.
# Adam's trained tensors are compared to 1e-3 of their largest values, not 1e-4: its first step
# turns rounding-level gradient components into full steps (compare_checkpoints.py, --tol); the
# perplexities must still agree to 1e-4.
adam=(--tol 1e-3)
lora=("${faster[@]}" --set recover.method=lora --set recover.norms=true --set recover.steps=6 --set recover.batch_size=4
      --set run.checkpoint_steps=2)
run n1l 1 1 "${lora[@]}"
run s2d2l 4 2 "${lora[@]}"
loras=(s2d2l)
if full_pass "lora on 2 stages and on 2 replicas: the code of -n 1 and 2 x 2"; then
  run s2l 2 2 "${lora[@]}"
  run d2l 2 1 "${lora[@]}"
  loras+=(s2l d2l)
fi
same "${adam[@]}" n1l "${loras[@]}"
! cmp -s "$work/n1r/model.safetensors" "$work/n1l/model.safetensors" || fail "the lora recovery wrote the re-fitted model's tensors"
grep -q "recover (lora): 6 steps, 768 tokens" "$work/s2d2l.err" || { grep recover "$work/s2d2l.err"; fail "2 x 2: no recovery"; }
full=("${faster[@]}" --set recover.method=full --set recover.steps=4 --set recover.batch_size=4 --set run.checkpoint_steps=2)
run n1f 1 1 "${full[@]}"
run s2d2f 4 2 "${full[@]}"
same "${adam[@]}" n1f s2d2f
resume_other() { # name ranks stages ranks2 stages2 [settings...]: stopped after recovery step 3, resumed on the other layout
  local name=$1 n=$2 s=$3 n2=$4 s2=$5 rc
  shift 5
  set +e
  VT_STOP_AFTER=recover:3 timeout 300 mpirun -n "$n" -x VT_STOP_AFTER "$VT_BIN" prune "${common[@]}" --set "parallel.stages=$s" \
    "$@" --set "output.dir=$work/$name" >"$work/$name.out" 2>"$work/$name.err"
  rc=$?
  set -e
  [ $rc -eq 75 ] || { tail "$work/$name.err"; fail "$name: the stop exited $rc, expected 75"; }
  grep -q "stopping on request after recovery step 3" "$work/$name.err" || { tail "$work/$name.err"; fail "$name did not stop"; }
  run "$name" "$n2" "$s2" "$@" --resume "$work/$name.run"
  grep -q "resume: .*recover/ckpt-00000003 at recovery step 3" "$work/$name.err" || { grep resume "$work/$name.err"; fail "$name did not resume at 3"; }
}
resume_other s2l_n1 2 2 1 1 "${lora[@]}"
resume_other n1f_s2d2 1 1 4 2 "${full[@]}"
same "${adam[@]}" n1l s2l_n1
same "${adam[@]}" n1f n1f_s2d2
# ... but a mask phase whose stage files hold weights (VTrans full fine-tunes the sliced student)
# resumes on its own layout only, and says which
set +e
VT_STOP_AFTER=recover:1 timeout 300 mpirun -n 2 -x VT_STOP_AFTER "$VT_BIN" prune "${common[@]}" --set parallel.stages=2 \
  --set recover.method=lora --set recover.steps=2 --set recover.batch_size=4 --set "output.dir=$work/fv" >/dev/null 2>&1
rc1=$?
timeout 300 "$VT_BIN" prune "${common[@]}" --set recover.method=lora --set recover.steps=2 --set recover.batch_size=4 \
  --set "output.dir=$work/fv" --resume "$work/fv.run" >/dev/null 2>"$work/fv.err"
rc2=$?
set -e
[ $rc1 -eq 75 ] && [ $rc2 -ne 0 ] && [ $rc2 -ne 124 ] || fail "full variant: stop exited $rc1 (75 expected), resume $rc2"
grep -q "rank-00000.bin: made by 2 stages, .* resume with parallel.stages = 2" "$work/fv.err" ||
  { cat "$work/fv.err"; fail "resuming fine-tuned stages on -n 1: no message naming the layout"; }
echo "mpi_prune_recover: ok"
