#!/usr/bin/env bash
# model.hold: a bf16 checkpoint pruned with its frozen weights' packs held in bf16 (auto) writes the
# same model files, byte for byte, as with them held in fp32 (widening bf16 is exact), through the
# mask phase, the re-fit and LoRA recovery (the teacher's packs in bf16, the re-fitted student's in
# fp32: not exact in bf16); and the bf16 packs hold about a quarter of the bytes (half the width, and
# the backward reads the forward pack: matmul.h). Then, untied and unpacked, the raw weights
# themselves held in bf16 (the layers' matrices and the embedding) write the same files too.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/tinystories/calib.txt"
cd "$src"
"$py" scripts/make-random-model --out "$work/m" --hidden 64 --ffn 172 --heads 8 --kv-heads 4 --layers 5 \
  --vocab 512 --seq-len 512 --dtype bf16 --tied >/dev/null
sets=(--set "model.path=$work/m" --set "model.tokenizer=$work/m/tokenizer.bin"
      --set "data.calib=$fx/tinystories/calib.txt" --set data.eval= --set data.seq_len=64
      --set data.max_sequences=32 --set schedule.batch_size=4 --set schedule.steps=6 --set schedule.log_interval=2
      --set reconstruct.sequences=16 --set recover.method=lora --set recover.steps=2 --set recover.batch_size=4
      --set parallel.pack_weights=true
      --set output.dtype=bf16)
for hold in fp32 auto; do
  BLIS_NUM_THREADS=1 "$VT_BIN" prune --config configs/stories260k-50.ini "${sets[@]}" --set "model.hold=$hold" \
    --set "output.dir=$work/out-$hold" >"$work/stdout-$hold.txt" 2>"$work/log-$hold.txt" || {
    tail -20 "$work/log-$hold.txt"; fail "prune with model.hold=$hold exited non-zero"; }
done
for f in model.safetensors config.json; do
  cmp "$work/out-fp32/$f" "$work/out-auto/$f" || fail "$f differs between model.hold = fp32 and auto"
done
packed() { sed -n "s/^weights: packed once .*, held in $1 (\([0-9]*\) bytes)$/\1/p" "$2"; }
f32=$(packed F32 "$work/log-fp32.txt") bf16=$(packed BF16 "$work/log-auto.txt")
[ -n "$f32" ] || fail "model.hold = fp32 did not hold the packs in fp32"
[ -n "$bf16" ] || fail "a bf16 checkpoint's packs are not held in bf16"
# a quarter, up to the padding of the slivers
"$py" -c "import sys; r = $bf16 / $f32; print(f'packs: {$bf16} bytes in bf16, {$f32} in fp32 ({r:.3f})'); sys.exit(not 0.24 < r < 0.26)" ||
  fail "the bf16 packs are not a quarter of the fp32 ones"

"$py" scripts/make-random-model --out "$work/u" --hidden 64 --ffn 172 --heads 8 --kv-heads 4 --layers 3 \
  --vocab 512 --seq-len 512 --dtype bf16 >/dev/null
sets=("${sets[@]/model.path=$work\/m/model.path=$work/u}")
sets=("${sets[@]/model.tokenizer=$work\/m\/tokenizer.bin/model.tokenizer=$work/u/tokenizer.bin}")
sets=("${sets[@]/parallel.pack_weights=true/parallel.pack_weights=false}")
for hold in fp32 auto; do
  BLIS_NUM_THREADS=1 "$VT_BIN" prune --config configs/stories260k-50.ini "${sets[@]}" --set "model.hold=$hold" \
    --set "output.dir=$work/raw-$hold" >/dev/null 2>"$work/raw-log-$hold.txt" || {
    tail -20 "$work/raw-log-$hold.txt"; fail "unpacked prune with model.hold=$hold exited non-zero"; }
done
for f in model.safetensors config.json; do
  cmp "$work/raw-fp32/$f" "$work/raw-auto/$f" || fail "$f differs between model.hold = fp32 and auto (unpacked)"
done
grep -q "^model: frozen matrices held in BF16" "$work/raw-log-auto.txt" || fail "model.hold = auto: the weights are not held in bf16"
! grep -q "^model: frozen matrices held in" "$work/raw-log-fp32.txt" || fail "model.hold = fp32 held 16-bit weights"
exit "$failures"
