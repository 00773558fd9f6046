# mpi_prune_lib.sh — the shared setup of mpi_prune.sh and mpi_prune_recover.sh (sourced, not a
# test): lib.sh, one small configuration in `common`, and `run` for prune under mpirun.
# shellcheck shell=bash disable=SC2034 # (variables set for the scripts that source this)
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/stories260K/stories260K.bin"
need_command mpirun
mpi_env
cd "$src"
# A short evaluation: layouts are compared by their tensors, and their perplexities over these
# ~1,500 tokens must agree as well (two evaluations of 30 kB took three quarters of a run).
head -c 3000 "$fx/tinystories/eval.txt" >"$work/eval.txt"
common=(--config configs/stories260k-50.ini --set "model.path=$fx/stories260K/stories260K.bin"
        --set "model.tokenizer=$fx/stories260K/tok512.bin" --set "data.calib=$fx/tinystories/calib.txt"
        --set "data.eval=$work/eval.txt" --set data.seq_len=32 --set data.max_sequences=64
        --set schedule.steps=12 --set schedule.batch_size=4 --set schedule.log_interval=4
        --set parallel.micro_batches=2 --set method.variant=full --set schedule.finetune_steps=4
        --set reconstruct.sequences=48 --set reconstruct.batch=5)

# run NAME RANKS STAGES [settings...]: prune into $work/NAME (log $work/NAME.err), or fail.
run() {
  local name=$1 n=$2 s=$3
  shift 3
  timeout 300 mpirun ${VT_BTL:+--mca btl "$VT_BTL"} -n "$n" ${VT_TRACE:+-x VT_TRACE} "$VT_BIN" prune "${common[@]}" --set "parallel.stages=$s" "$@" \
    --set "output.dir=$work/$name" >"$work/$name.out" 2>"$work/$name.err" || {
    tail -20 "$work/$name.err"; fail "$name (-n $n, $s stages) exited non-zero"; }
}

# same [--tol T] REF NAME...: the checkpoints of the runs NAME have REF's tensors (to T of each
# tensor's largest value; 1e-4 without it) and perplexity (compare_checkpoints.py).
same() {
  local tol=() d dirs=()
  [ "$1" != --tol ] || { tol=(--tol "$2"); shift 2; }
  local ref=$1
  shift
  for d in "$@"; do dirs+=("$work/$d"); done
  "$py" "$src/tests/reference/compare_checkpoints.py" "${tol[@]}" "$work/$ref" "${dirs[@]}"
}
