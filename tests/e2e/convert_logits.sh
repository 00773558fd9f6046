#!/usr/bin/env bash
# Issue F1, acceptance 4: `vtrans-dist convert` writes the stories260K .bin as HF directories in
# f32, f16 and bf16, single-file and sharded. Every variant
#   1. loads: `vtrans-dist inspect` succeeds on it;
#   2. evaluates like the .bin through our own binary: perplexity on a ~20 KB text within the
#      variant's precision, same scored-token count;
#   3. (when torch is available) gives the same logits as the .bin in the independent PyTorch
#      reference, which reads the directory by Hugging Face rules only (rotate-half RoPE). This is
#      what proves the q/k permutation is the genuine HF layout: our own binary could read a wrongly
#      permuted directory consistently with itself, the reference cannot.
#
# Tolerances. Weights are rounded once to the stored dtype; everything is then computed in fp32
# (ours) or fp64 (reference).
#   f32:  nothing is rounded, so only fp32 summation order differs: 1e-5 relative.
#   f16:  11-bit significand, relative rounding <= 2^-11 = 4.9e-4 per weight. The errors are
#         independent and largely average out: measured ppl shift 3e-5, logit shift 7.6e-4 of the
#         largest logit. Tolerances 2e-3 (ppl) and 5e-3 (logits).
#   bf16: 8-bit significand, relative rounding <= 2^-8 = 3.9e-3 per weight. Measured ppl shift 3.7e-4
#         with round-to-nearest-even (4.4e-3 if a converter truncated instead), logit shift 6.2e-3.
#         Tolerances 1e-2 (ppl) and 3e-2 (logits).
# A missing or wrong q/k permutation multiplies this model's ppl by 18 to 33 (7.0 -> 127 or 234 on
# this text) and changes the logits by about their own size, far outside every tolerance.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
refdir=$src/tests/reference

model=$fx/stories260K/stories260K.bin
tok=$fx/stories260K/tok512.bin
text=$fx/tinystories/eval.txt
ids=$fx/stories260K/greedy_t0_ids.txt
need_files "$model" "$tok" "$text" "$ids"
[[ -x $py ]] || skip "$py not found (needed to compare results)"
have_torch=1
"$py" -c 'import torch, numpy' 2>/dev/null || have_torch=0

# A small evaluation text: whole documents from the start of eval.txt, about 20 KB.
awk 'BEGIN { RS = ""; ORS = "\n\n" } { n += length($0) + 2; if (n > 20000) exit; print }' \
    "$text" > "$work/small.txt"

# Fixed token sequence for the logits check: BOS and the 256 greedy tokens (positions 0..256).
tokens="1,$(tr -s ' \n' ',,' < "$ids" | sed 's/^,//; s/,$//')"

"$VT_BIN" eval --model "$model" --tokenizer "$tok" --data "$work/small.txt" --json > "$work/bin.json"

# name  convert-options                       ppl-tolerance  logits-tolerance
variants=(
    "f32         --dtype f32                  1e-5  1e-5"
    "f16         --dtype f16                  2e-3  5e-3"
    "bf16        --dtype bf16                 1e-2  3e-2"
    "f32-sharded --dtype f32 --shard-size 300000  1e-5  1e-5"
)
for v in "${variants[@]}"; do
    read -r -a w <<< "$v"
    name=${w[0]}
    ppl_tol=${w[-2]}
    logit_tol=${w[-1]}
    opts=("${w[@]:1:${#w[@]}-3}")
    out=$work/$name

    "$VT_BIN" convert --model "$model" --out "$out" "${opts[@]}"
    [[ -r $out/config.json ]] || fail "$name: no config.json in $out"
    if [[ $name == *sharded ]]; then
        [[ -r $out/model.safetensors.index.json ]] || fail "$name: no index"
        shards=$(find "$out" -name '*.safetensors' | wc -l)
        (( shards >= 2 )) || fail "$name: $shards shard(s), expected several"
    else
        [[ -r $out/model.safetensors ]] || fail "$name: no model.safetensors"
    fi

    "$VT_BIN" inspect --model "$out" > "$work/$name.inspect"
    "$VT_BIN" eval --model "$out" --tokenizer "$tok" --data "$work/small.txt" --json > "$work/$name.json"
    "$py" "$refdir/compare_eval.py" "$work/bin.json" "$work/$name.json" --rtol "$ppl_tol" \
        --label "$name ppl (ours) vs .bin"

    if (( have_torch )); then
        "$py" "$refdir/compare_logits.py" --reference "$model" --model "$out" --tokens "$tokens" \
            --tol "$logit_tol" --label "$name logits (reference) vs .bin"
    fi
done
if (( ! have_torch )); then
    echo "note: no torch for $py; the reference logits check (HF layout) was skipped"
fi
echo "all converted variants load and agree with the .bin"
