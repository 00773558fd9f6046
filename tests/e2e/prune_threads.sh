#!/usr/bin/env bash
# parallel.threads: prune stories260K (Faster-VTrans masks on packed weights, the re-fit, a short
# lora recovery) with 2 threads in the one rank writes the same model files, byte for byte, as with
# 1 thread (every threaded loop splits independent rows or columns; src/nn/matmul.h), and says so.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/stories260K/stories260K.bin"
cd "$src"  # configs name their files relative to the repository root
mpi_env    # one process still starts MPI for the re-fit's solve
sets=(--set "model.tokenizer=$fx/stories260K/tok512.bin" --set "model.path=$fx/stories260K/stories260K.bin"
      --set "data.calib=$fx/tinystories/calib.txt" --set data.eval= --set data.max_sequences=96 --set schedule.steps=12
      --set schedule.log_interval=4 --set parallel.pack_weights=true --set reconstruct.sequences=32
      --set recover.method=lora --set recover.steps=3)
for t in 1 2; do
  "$VT_BIN" prune --config configs/stories260k-50.ini "${sets[@]}" --set "parallel.threads=$t" \
    --set "output.dir=$work/t$t" >"$work/t$t.out" 2>"$work/t$t.err" || { tail -20 "$work/t$t.err"; fail "prune with $t thread(s) failed"; }
  grep -q "^weights: packed once for BLIS's micro-kernel, [0-9]* MiB on rank 0 ($t thread(s) per rank)" "$work/t$t.err" ||
    { grep "^weights" "$work/t$t.err"; fail "$t thread(s): no packed weights on $t thread(s) in the log"; }
done
# every file but the report (wall times; it records the configuration, thread count included)
n=0
for f in "$work"/t1/*; do
  b=$(basename "$f")
  case $b in vtrans_report.*|run_config.*) continue ;; esac
  cmp "$f" "$work/t2/$b" || fail "$b differs between 1 and 2 threads"
  n=$((n + 1))
done
[ "$n" -ge 3 ] || fail "only $n model files compared"
echo "1 and 2 threads: $n files identical ($(cd "$work/t1" && ls | tr '\n' ' '))"
