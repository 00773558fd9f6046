#!/usr/bin/env bash
# Distributed pruning gives the layout-independent result: the same configuration (VTrans full:
# masks, then fine-tuning of the sliced student, so a stage's share of the classifier is sliced
# too) with -n 1, -n 2 as two stages, -n 2 as two replicas and -n 4 as 2 x 2, with sequences cut
# into chunks as micro-batches (2 stages; 2 x 2), with weights packed for the micro-kernel (-n 1;
# 2 stages), and 2 x 2 over TCP only (--mca btl self,tcp), keeps the same units, writes checkpoints
# with the same tensors (names, shapes; values to 1e-3 after Adam's fine-tuning, 1e-4 without) and
# the same perplexity, and reports every
# rank's memory; so do a baseline (magnitude, which re-fits: replicas share the sequences) and an
# MSE term (the teacher cache sharded over replicas). A bad configuration and a corrupt shard end
# every rank with the message and leave no output. The re-fit and the recovery on every layout:
# mpi_prune_recover.sh.
# shellcheck source=mpi_prune_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/mpi_prune_lib.sh"
run n1 1 1
run s2d2 4 2
VT_TRACE=1 run s2c4 2 2 --set parallel.micro_batches=4 --set parallel.seq_chunks=4   # 16 micro-batches of 8 tokens
for r in 0 1; do # the step trace: each rank's phases with their time in communication
  grep -qE "^trace: rank $r step 12: forward [0-9.]+ s \(comm [0-9.]+\) classifier .* backward .* sums " "$work/s2c4.err" ||
    { grep trace "$work/s2c4.err" | tail -4; fail "no step trace of rank $r"; }
done
grep -q "16 micro-batches" "$work/s2c4.err" || { grep -i micro "$work/s2c4.err"; fail "s2c4 does not report its 16 micro-batches"; }
run n1p 1 1 --set parallel.pack_weights=true # weights packed once for the micro-kernel (masks), then not (fine-tuning)
masks=(s2d2 s2c4 n1p) packed=(n1p)
if full_pass "2 stages, 2 replicas, 2 x 2 over TCP and in chunks, packed on 2 stages: the code of -n 1, 2 x 2, s2c4, n1p"; then
  run s2 2 2
  run d2 2 1
  # transport independence: shared memory off, ranks talk over TCP as on nodes linked by a network
  VT_BTL=self,tcp run s2d2tcp 4 2
  for f in "$work"/s2d2/*.safetensors; do # the same layout: the same sums in the same order, to the bit
    cmp "$f" "$work/s2d2tcp/${f##*/}" || fail "2 x 2 over TCP differs from 2 x 2 over shared memory: ${f##*/}"
  done
  run s2d2c2 4 2 --set parallel.micro_batches=0 --set parallel.seq_chunks=2
  run s2p 2 2 --set parallel.pack_weights=true
  ls "$work/s2" | grep -q "model-00001-of-00002.safetensors" || { ls "$work/s2"; fail "two stages wrote no per-stage shards"; }
  masks+=(s2 d2 s2d2tcp s2d2c2 s2p) packed+=(s2p)
fi
if grep -q "^weights: not packed: BLIS's micro-kernel on this CPU does not store by rows" "$work/n1p.err"; then
  echo "mpi_prune: this CPU's BLIS kernel stores by columns: packed weights not tested here"
else
  for name in "${packed[@]}"; do
    grep -q "^weights: packed once for BLIS's micro-kernel, [0-9]* MiB on rank 0" "$work/$name.err" ||
      { grep -i weights "$work/$name.err"; fail "$name does not report its packed weights"; }
  done
  # the same micro-kernel over the same blocks: packing changes nothing but speed, to the bit
  cmp "$work/n1/model.safetensors" "$work/n1p/model.safetensors" || fail "packed weights changed the -n 1 result"
fi
ls "$work/s2d2" | grep -q "model-00001-of-00002.safetensors" || { ls "$work/s2d2"; fail "2 x 2 wrote no per-stage shards"; }
same --tol 1e-3 n1 "${masks[@]}" # fine-tuned by Adam, as the recovery (mpi_prune_recover.sh: adam)
grep -q "re-fit skipped: VTrans full trained the kept weights" "$work/n1.err" ||
  fail "the full variant did not say why it skips the re-fit"
# A baseline re-fits too, its replicas sharing the sequences.
run m1 1 1 --set method.name=magnitude
run md2 2 1 --set method.name=magnitude
same m1 md2
# The teacher cache is sharded over the replicas: with an MSE term the hidden states come from the
# replica that holds them too (masks only: Adam's fine-tuning steps magnify summation-order noise).
mse=(--set method.mse_weight=0.5 --set schedule.finetune_steps=0)
run n1m 1 1 "${mse[@]}"
run s2d2m 4 2 "${mse[@]}"
same n1m s2d2m
# training splits the layers as `plan` does (the classifier shared by the stages), which differs
# here from the inference split (classifier on the last stage) that mpi_eval.sh checks
want=$("$VT_BIN" plan "${common[@]}" --ranks 4 --stages 2 | awk '$1 ~ /^[0-9]+$/ && $2 ~ /-/ {printf "%s%s", (n++ ? ", " : ""), $2}')
grep -qF "prune: 4 ranks = 2 stages x 2 replicas; layers $want" "$work/s2d2.err" ||
  { grep "prune:" "$work/s2d2.err"; fail "prune's layer split is not plan's ($want)"; }
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
