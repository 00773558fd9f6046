#!/usr/bin/env bash
# generate at temperature 0 for 256 steps on stories260K prints exactly llama2.c's greedy sample,
# from the .bin and from its HF conversion; a prompt is continued; bad options are refused.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
model="$fx/stories260K/stories260K.bin"
tok="$fx/stories260K/tok512.bin"
need_files "$model"

"$VT_BIN" generate --model "$model" --tokenizer "$tok" --steps 256 --temperature 0 >"$work/out.txt"
{ cat "$fx/stories260K/greedy_t0.txt"; echo; } >"$work/expected.txt"
cmp "$work/out.txt" "$work/expected.txt" || { diff "$work/out.txt" "$work/expected.txt" | head; fail "greedy output differs"; }

# The tokenizer is found beside the model when not given (tok512.bin next to stories260K.bin).
"$VT_BIN" generate --model "$model" --steps 40 --temperature 0 >"$work/auto.txt"
head -c 100 "$work/expected.txt" | cmp -s - <(head -c 100 "$work/auto.txt") || fail "default tokenizer"

# HF conversion (rotate-half q/k) generates the same text.
"$VT_BIN" convert --model "$model" --out "$work/hf" >/dev/null
"$VT_BIN" generate --model "$work/hf" --steps 256 --temperature 0 >"$work/hf.txt"
cmp "$work/hf.txt" "$work/expected.txt" || fail "HF conversion generates differently"

# A prompt is printed and continued; sampling with a seed is reproducible and differs from greedy.
"$VT_BIN" generate --model "$model" --prompt "Once upon a time, there was a dog" --steps 60 --temperature 0 >"$work/p.txt"
grep -q "^Once upon a time, there was a dog" "$work/p.txt" || { cat "$work/p.txt"; fail "prompt not continued"; }
"$VT_BIN" generate --model "$model" --steps 80 --temperature 1.0 --seed 7 >"$work/s1.txt"
"$VT_BIN" generate --model "$model" --steps 80 --temperature 1.0 --seed 7 >"$work/s2.txt"
"$VT_BIN" generate --model "$model" --steps 80 --temperature 1.0 --seed 8 >"$work/s3.txt"
cmp -s "$work/s1.txt" "$work/s2.txt" || fail "same seed, different text"
! cmp -s "$work/s1.txt" "$work/s3.txt" || fail "different seeds gave the same text"

# Bad options: exit code 1 with a message, never a crash.
for args in "--model $model --steps abc" "--model $model --temperature -1" "--model $model --bogus 1" \
            "--steps 10" "--model $work/missing.bin --steps 5"; do
  # shellcheck disable=SC2086
  expect_error "generate $args" "error" -- generate $args
done
finish
