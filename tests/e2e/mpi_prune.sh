#!/usr/bin/env bash
# Distributed pruning gives the layout-independent result: the same configuration (VTrans full:
# masks, then fine-tuning of the sliced student, so a stage's share of the classifier is sliced
# too; then the least-squares re-fit, [reconstruct], on by default: replicas share the sequences
# and solve with ScaLAPACK on their grid, stages pass both residual streams on) with -n 1, -n 2 as
# two stages, -n 2 as two replicas and -n 4 as 2 x 2 (and a baseline, magnitude, on -n 1 and 2 replicas), and with sequences
# cut into chunks as micro-batches (2 stages; 2 x 2), and with weights packed for the micro-kernel
# (-n 1; 2 stages), and 2 x 2 over TCP only (--mca btl self,tcp), keeps the same units,
# writes checkpoints with the same tensors (names, shapes; values to 1e-4) and the same perplexity,
# and reports every rank's memory.
# A bad configuration and a corrupt shard end every rank with the message and leave no output.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/stories260K/stories260K.bin"
need_command mpirun
mpi_env
cd "$src"
head -c 30000 "$fx/tinystories/eval.txt" >"$work/eval.txt"
common=(--config configs/stories260k-50.ini --set "model.path=$fx/stories260K/stories260K.bin"
        --set "model.tokenizer=$fx/stories260K/tok512.bin" --set "data.calib=$fx/tinystories/calib.txt"
        --set "data.eval=$work/eval.txt" --set data.seq_len=32 --set data.max_sequences=64
        --set schedule.steps=12 --set schedule.batch_size=4 --set schedule.log_interval=4
        --set parallel.micro_batches=2 --set method.variant=full --set schedule.finetune_steps=4
        --set reconstruct.sequences=48 --set reconstruct.batch=5)
run() { # name ranks stages [settings...]
  local name=$1 n=$2 s=$3
  shift 3
  timeout 300 mpirun ${VT_BTL:+--mca btl "$VT_BTL"} -n "$n" ${VT_TRACE:+-x VT_TRACE} "$VT_BIN" prune "${common[@]}" --set "parallel.stages=$s" "$@" \
    --set "output.dir=$work/$name" >"$work/$name.out" 2>"$work/$name.err" || {
    tail -20 "$work/$name.err"; fail "$name (-n $n, $s stages) exited non-zero"; }
}
run n1 1 1
run s2 2 2
run d2 2 1
run s2d2 4 2
# transport independence: shared memory off, ranks talk over TCP as on nodes linked by a network
VT_BTL=self,tcp run s2d2tcp 4 2
for f in "$work"/s2d2/*.safetensors; do # the same layout: the same sums in the same order, to the bit
  cmp "$f" "$work/s2d2tcp/${f##*/}" || fail "2 x 2 over TCP differs from 2 x 2 over shared memory: ${f##*/}"
done
VT_TRACE=1 run s2c4 2 2 --set parallel.micro_batches=4 --set parallel.seq_chunks=4   # 16 micro-batches of 8 tokens
for r in 0 1; do # the step trace: each rank's phases with their time in communication
  grep -qE "^trace: rank $r step 12: forward [0-9.]+ s \(comm [0-9.]+\) classifier .* backward .* sums " "$work/s2c4.err" ||
    { grep trace "$work/s2c4.err" | tail -4; fail "no step trace of rank $r"; }
done
run s2d2c2 4 2 --set parallel.micro_batches=0 --set parallel.seq_chunks=2
run n1p 1 1 --set parallel.pack_weights=true # weights packed once for the micro-kernel (masks), then not (fine-tuning)
run s2p 2 2 --set parallel.pack_weights=true
if grep -q "^weights: not packed: BLIS's micro-kernel on this CPU does not store by rows" "$work/n1p.err"; then
  echo "mpi_prune: this CPU's BLIS kernel stores by columns: packed weights not tested here"
else
  for name in n1p s2p; do
    grep -q "^weights: packed once for BLIS's micro-kernel, [0-9]* MiB on rank 0" "$work/$name.err" ||
      { grep -i weights "$work/$name.err"; fail "$name does not report its packed weights"; }
  done
  # the same micro-kernel over the same blocks: packing changes nothing but speed, to the bit
  cmp "$work/n1/model.safetensors" "$work/n1p/model.safetensors" || fail "packed weights changed the -n 1 result"
fi
grep -q "16 micro-batches" "$work/s2c4.err" || { grep -i micro "$work/s2c4.err"; fail "s2c4 does not report its 16 micro-batches"; }
ls "$work/s2" | grep -q "model-00001-of-00002.safetensors" || { ls "$work/s2"; fail "two stages wrote no per-stage shards"; }
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/n1" "$work/s2" "$work/d2" "$work/s2d2" "$work/s2d2tcp" "$work/s2c4" "$work/s2d2c2" \
  "$work/n1p" "$work/s2p"
# The re-fit (Faster-VTrans: it never runs after weight training) on every layout: the same
# tensors, a report with both perplexities and each projection's errors; without it the same run
# writes others.
faster=(--set method.variant=faster)
run n1r 1 1 "${faster[@]}"
run s2r 2 2 "${faster[@]}"
run d2r 2 1 "${faster[@]}"
run s2d2r 4 2 "${faster[@]}"
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/n1r" "$work/s2r" "$work/d2r" "$work/s2d2r"
grep -q "re-fit skipped: VTrans full trained the kept weights" "$work/n1.err" ||
  fail "the full variant did not say why it skips the re-fit"
run n1none 1 1 "${faster[@]}" --set reconstruct.method=none
"$py" - "$work" <<'PY'
import json, sys
w = sys.argv[1]
for name in ("n1r", "s2r", "d2r", "s2d2r"):
    r = json.load(open(f"{w}/{name}/vtrans_report.json"))
    rec = r["reconstruct"]
    assert rec["method"] == "lsq" and r["ppl_masks"] and r["ppl_after"], (name, r["ppl_masks"], r["ppl_after"])
    fits = [v for l in rec["layers"] for k, v in l.items() if k != "layer"]
    assert fits and all(v["error_after"] <= v["error_before"] * 1.001 + 1e-9 for v in fits), (name, rec)
none = json.load(open(f"{w}/n1none/vtrans_report.json"))
assert "reconstruct" not in none and none["ppl_masks"] is None, none.get("ppl_masks")
PY
if "$py" "$src/tests/reference/compare_checkpoints.py" "$work/n1r" "$work/n1none" >/dev/null 2>&1; then
  fail "reconstruct.method = lsq wrote the same tensors as none"
fi
# The recovery ([recover], after the re-fit) over every layout: each stage trains its layers'
# adapters (lora, with the norm gains) or weights (full), the loss on the last stage, gradients
# summed over a stage's replicas: the same re-fitted and recovered tensors. A recovery stopped on 2
# stages resumes on -n 1 (and one stopped on -n 1 on 2 x 2) to the uninterrupted run's tensors:
# its checkpoint holds the whole state whatever the layout. (A short evaluation: the tensors say it.)
head -c 3000 "$work/eval.txt" >"$work/eval_short.txt"
lora=("${faster[@]}" --set "data.eval=$work/eval_short.txt" --set recover.method=lora --set recover.norms=true --set recover.steps=6 --set recover.batch_size=4
      --set run.checkpoint_steps=2)
run n1l 1 1 "${lora[@]}"
run s2l 2 2 "${lora[@]}"
run d2l 2 1 "${lora[@]}"
run s2d2l 4 2 "${lora[@]}"
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/n1l" "$work/s2l" "$work/d2l" "$work/s2d2l"
! cmp -s "$work/n1r/model.safetensors" "$work/n1l/model.safetensors" || fail "the lora recovery wrote the re-fitted model's tensors"
grep -q "recover (lora): 6 steps, 768 tokens" "$work/s2d2l.err" || { grep recover "$work/s2d2l.err"; fail "2 x 2: no recovery"; }
full=("${faster[@]}" --set "data.eval=$work/eval_short.txt" --set recover.method=full --set recover.steps=4 --set recover.batch_size=4 --set run.checkpoint_steps=2)
run n1f 1 1 "${full[@]}"
run s2d2f 4 2 "${full[@]}"
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/n1f" "$work/s2d2f"
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
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/n1l" "$work/s2l_n1"
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/n1f" "$work/n1f_s2d2"
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
# A baseline re-fits too, its replicas sharing the sequences.
run m1 1 1 --set method.name=magnitude
run md2 2 1 --set method.name=magnitude
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/m1" "$work/md2"
# With the output biases (reconstruct.bias, Faster-VTrans): the same tensors, biases included, on
# 2 stages x 2 replicas as in one process.
run n1b 1 1 "${faster[@]}" --set reconstruct.bias=true
run s2d2b 4 2 "${faster[@]}" --set reconstruct.bias=true
grep -q '"attention_bias": true' "$work/s2d2b/config.json" || fail "reconstruct.bias on 2 x 2: no attention_bias"
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/n1b" "$work/s2d2b"
# The teacher cache is sharded over the replicas: with an MSE term the hidden states come from the
# replica that holds them too (masks only: Adam's fine-tuning steps magnify summation-order noise).
mse=(--set method.mse_weight=0.5 --set schedule.finetune_steps=0)
run n1m 1 1 "${mse[@]}"
run s2d2m 4 2 "${mse[@]}"
"$py" "$src/tests/reference/compare_checkpoints.py" "$work/n1m" "$work/s2d2m"
# training splits the layers as `plan` does (the classifier shared by the stages), which differs
# here from the inference split (classifier on the last stage) that mpi_eval.sh checks
want=$("$VT_BIN" plan "${common[@]}" --ranks 2 --stages 2 | awk '$1 ~ /^[0-9]+$/ && $2 ~ /-/ {printf "%s%s", (n++ ? ", " : ""), $2}')
grep -qF "prune: 2 ranks = 2 stages x 1 replicas; layers $want" "$work/s2.err" ||
  { grep "prune:" "$work/s2.err"; fail "prune's layer split is not plan's ($want)"; }
# every rank's peak RSS and what it held (weights, activations and caches), all non-zero
for r in 0 1 2 3; do
  grep -qE "memory per rank \(MiB\):.* $r: peak RSS [1-9][0-9]* \(held [1-9][0-9]* weights \+ [1-9][0-9]* activations" \
    "$work/s2d2.err" || { grep memory "$work/s2d2.err"; fail "no memory report for rank $r"; }
done

# Refused before loading: more stages than layers; P not a multiple of S; a bad configuration.
check_bad() { # message pattern, ranks, then extra prune arguments
  local pat=$1 n=$2; shift 2
  set +e
  timeout 60 mpirun -n "$n" "$VT_BIN" prune "${common[@]}" "$@" --set "output.dir=$work/bad" >/dev/null 2>"$work/bad.err"
  local rc=$?
  set -e
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then fail "-n $n $* exited $rc (0 = accepted, 124 = hang)"; fi
  grep -qi -- "$pat" "$work/bad.err" || { cat "$work/bad.err"; fail "no '$pat' message for -n $n $*"; }
  [ ! -e "$work/bad" ] || fail "output directory left behind"
}
check_bad "stages" 2 --set parallel.stages=8
check_bad "stages" 3 --set parallel.stages=2
check_bad "unknown key" 2 --set schedule.stepz=3  # a bad configuration, refused by every rank
check_bad "seq_chunks = 3 does not divide" 2 --set parallel.stages=2 --set parallel.micro_batches=4 --set parallel.seq_chunks=3
check_bad "needs micro-batches of one sequence" 2 --set parallel.stages=2 --set parallel.seq_chunks=2

# A corrupt shard that only stage 1 reads: every rank ends, with the message, within the timeout.
"$VT_BIN" convert --model "$fx/stories260K/stories260K.bin" --out "$work/hf" --shard-size 300000 >/dev/null 2>&1
last=$(ls "$work/hf"/model-*.safetensors | tail -1)
truncate -s 1000 "$last"
set +e
timeout 60 mpirun -n 2 "$VT_BIN" prune "${common[@]}" --set "model.path=$work/hf" --set parallel.stages=2 \
  --set "output.dir=$work/broken" >/dev/null 2>"$work/broken.err"
rc=$?
set -e
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then fail "corrupt shard: exit $rc (124 = hang)"; fi
grep -q "$(basename "$last")" "$work/broken.err" || { cat "$work/broken.err"; fail "message does not name the shard"; }
if ls -d "$work/broken" "$work"/broken.tmp-* >/dev/null 2>&1; then ls "$work"; fail "output left behind"; fi
echo "mpi_prune: ok"
