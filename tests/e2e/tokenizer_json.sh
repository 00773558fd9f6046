#!/usr/bin/env bash
# tokenizer_json.sh — a model directory with only config.json, weights and LLaMA-2's tokenizer.json
# (no tokenizer.bin) evaluates and generates: the tokenizer is found by default (issue E1).
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tokjson="$fx/tokenizers/llama2/tokenizer.json"
eval_txt="$fx/tinystories/eval.txt"
need_files "$tokjson" "$eval_txt"
cd "$work"

"$py" "$src/scripts/make-random-model" --out model --hidden 32 --ffn 64 --heads 4 --kv-heads 2 --layers 1 \
    --vocab 32000 --seq-len 64 > make.log
rm -f model/tokenizer.bin model/tokenizer.model
cp "$tokjson" model/tokenizer.json
head -c 3000 "$eval_txt" > sample.txt
printf 'caf\xc3\xa9 \xf0\x93\x80\x80\n' >> sample.txt

"$VT_BIN" eval --model model --data sample.txt --window 32 > eval.log 2>&1 || fail "eval on tokenizer.json: $(tail -3 eval.log)"
grep -q "^ppl [0-9.]* over" eval.log || fail "eval printed no perplexity: $(tail -3 eval.log)"
"$VT_BIN" generate --model model --prompt "Once upon a time" --steps 8 --temperature 0 > gen.log 2>&1 ||
    fail "generate on tokenizer.json: $(tail -3 gen.log)"
# The same ids as the tokenizer the tests check against the HF golden file.
"$VT_BIN" tokenize --tokenizer model/tokenizer.json --data sample.txt --out ids.bin > tok.log 2>&1 ||
    fail "tokenize with tokenizer.json: $(tail -3 tok.log)"

# GGUF export embeds this tokenizer (scores from its merge ranks): the same tokens and perplexity,
# the same greedy text.
"$VT_BIN" convert --model model --to gguf --out model.gguf > conv.log 2>&1 || fail "convert --to gguf: $(tail -3 conv.log)"
"$VT_BIN" eval --model model.gguf --data sample.txt --window 32 > eval_gguf.log 2>&1 ||
    fail "eval on the GGUF: $(tail -3 eval_gguf.log)"
want=$(sed -n 's/^ppl \([0-9.]*\) over \([0-9]*\) scored.*/\1 \2/p' eval.log)
got=$(sed -n 's/^ppl \([0-9.]*\) over \([0-9]*\) scored.*/\1 \2/p' eval_gguf.log)
awk -v a="$want" -v b="$got" 'BEGIN { split(a, x, " "); split(b, y, " ");
    exit !(x[2] == y[2] && (x[1] - y[1]) ^ 2 < (1e-5 * x[1]) ^ 2) }' ||
    fail "the GGUF's embedded tokenizer or weights differ: dir '$want', GGUF '$got' (ppl, tokens)"
"$VT_BIN" generate --model model.gguf --prompt "Once upon a time" --steps 8 --temperature 0 > gen_gguf.log 2>&1 ||
    fail "generate on the GGUF: $(tail -3 gen_gguf.log)"
[ "$(head -1 gen.log)" = "$(head -1 gen_gguf.log)" ] || fail "greedy text differs: '$(head -1 gen.log)' vs '$(head -1 gen_gguf.log)'"

# An HF result is a drop-in: the tokenizer and generation files come along.
for f in tokenizer_config.json special_tokens_map.json generation_config.json; do echo "{\"$f\": 1}" > "model/$f"; done
"$VT_BIN" convert --model model --out copy > conv_hf.log 2>&1 || fail "convert: $(tail -3 conv_hf.log)"
for f in tokenizer.json tokenizer_config.json special_tokens_map.json generation_config.json; do
    cmp -s "model/$f" "copy/$f" || fail "convert did not carry $f over"
done
finish
