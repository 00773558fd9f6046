#!/usr/bin/env bash
# GGUF checked by the real llama.cpp (v0.5.0 libraries from npm, installed by scripts/install-deps):
# the stories260K fixture GGUF loads here (greedy = llama2.c's, eval = the .bin's); stories260K dense
# and 50%-pruned (per-layer sizes, `deci`) exported to GGUF give llama.cpp the same 256 greedy
# tokens as vtrans-dist and the same mean NLL on the same windows: 1e-3 relative for F32, looser
# for F16/BF16/Q8_0 (both sides read the same rounded weights, so the tolerance is arithmetic only);
# a 50%-pruned model re-fitted with output biases (reconstruct.bias) likewise. The ASan pass runs
# vtrans-dist on every file but leaves llama.cpp's runs (unsanitized) to the release pass.
# Skips (77) when llama.cpp is not installed.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
llama=${VT_LLAMA_CPP:-/opt/llamacpp-npm}
need_files "$fx/stories260K/stories260K.bin" "$fx/gguf/stories260K.gguf" "$fx/tokenizers/phi2/tokenizer.json"
[[ -f $llama/include/llama.h && -d $llama/bins ]] || skip "llama.cpp not installed at $llama (scripts/install-deps --llama-cpp)"
need_command gcc
gcc -O2 -o "$work/check" "$src/tests/e2e/llama_cpp_check.c" -I"$llama/include" -L"$llama/bins" \
  -l:libllama.v0.5.0.so -l:libggml.v0.5.0.so -l:libggml-base.so -lm -Wl,-rpath,"$llama/bins" ||
  skip "cannot build against llama.cpp in $llama"
check() { "$work/check" "$llama/bins" "$@"; }
bin="$fx/stories260K/stories260K.bin" tok="$fx/stories260K/tok512.bin"

# The real fixture GGUF: llama2.c's greedy text, and the .bin's eval to the last digit.
head -c 8000 "$fx/tinystories/eval.txt" >"$work/eval.txt"  # ~4,000 tokens: 31 windows of 128
"$VT_BIN" generate --model "$fx/gguf/stories260K.gguf" --steps 256 --temperature 0 >"$work/fx.txt" 2>/dev/null
{ cat "$fx/stories260K/greedy_t0.txt"; echo; } | cmp -s - "$work/fx.txt" || record_failure fixture "greedy text differs"
"$VT_BIN" eval --model "$fx/gguf/stories260K.gguf" --data "$work/eval.txt" --window 128 --json >"$work/e1.json" 2>/dev/null
"$VT_BIN" eval --model "$bin" --data "$work/eval.txt" --window 128 --json >"$work/e2.json" 2>/dev/null
cmp -s <(cut -d, -f1-3 "$work/e1.json") <(cut -d, -f1-3 "$work/e2.json") || record_failure fixture "eval differs from the .bin"
"$VT_BIN" inspect --model "$fx/gguf/stories260K.gguf" | grep -q "GGUF" || record_failure fixture "inspect"

# The same ids for both sides: eval.txt tokenized once, as raw uint32.
"$VT_BIN" tokenize --tokenizer "$tok" --data "$work/eval.txt" --out "$work/eval.bin" >/dev/null
$py - "$work/eval.bin" "$work/eval.u32" <<'PY'
import array, struct, sys
d = open(sys.argv[1], "rb").read()
magic, _, n = struct.unpack("<3i", d[:12])
a = array.array("H" if magic == 20240520 else "I"); a.frombytes(d[1024:1024 + n * a.itemsize])
open(sys.argv[2], "wb").write(array.array("I", a).tobytes())
PY

# compare NAME MODEL TOL: greedy text for 256 steps and windowed mean NLL within TOL relative.
compare() {
  local name=$1 model=$2 tol=$3
  if ! full_pass "$name: llama.cpp's greedy text and NLL"; then
    "$VT_BIN" generate --model "$model" --steps 256 --temperature 0 >/dev/null 2>&1 || record_failure "$name" "generate"
    "$VT_BIN" eval --model "$model" --data "$work/eval.u32" --window 128 --json >/dev/null 2>&1 || record_failure "$name" "eval"
    return
  fi
  check text "$model" 256 >"$work/$name.llama.txt" || { record_failure "$name" "llama.cpp could not run it"; return; }
  "$VT_BIN" generate --model "$model" --steps 256 --temperature 0 >"$work/$name.vt.txt" 2>/dev/null
  cmp -s "$work/$name.llama.txt" "$work/$name.vt.txt" || record_failure "$name" "greedy text differs from llama.cpp's"
  check ppl "$model" "$work/eval.u32" 128 >"$work/$name.llama.ppl"
  "$VT_BIN" eval --model "$model" --data "$work/eval.u32" --window 128 --json >"$work/$name.vt.json" 2>/dev/null
  $py - "$work/$name.llama.ppl" "$work/$name.vt.json" "$tol" "$name" <<'PY' || record_failure "$name" "NLL differs"
import json, sys
tokens, nll = open(sys.argv[1]).read().split()[1::2]
ours = json.load(open(sys.argv[2]))
theirs = float(nll) / int(tokens)
assert int(tokens) == ours["tokens"], (tokens, ours["tokens"])
rel = abs(theirs - ours["nll"]) / ours["nll"]
print(f"{sys.argv[4]}: mean NLL llama.cpp {theirs:.6f} vtrans-dist {ours['nll']:.6f} rel {rel:.2e}")
assert rel <= float(sys.argv[3]), rel
PY
}

for t in f32:1e-3 f16:1e-3 bf16:5e-3 q8_0:5e-3; do
  "$VT_BIN" convert --model "$bin" --to gguf --dtype "${t%%:*}" --out "$work/dense-${t%%:*}.gguf" 2>/dev/null
  compare "dense-${t%%:*}" "$work/dense-${t%%:*}.gguf" "${t##*:}"
done
# The greedy ids from BOS of the dense F32 export are llama2.c's.
if full_pass "llama.cpp's greedy ids"; then
  check gen "$work/dense-f32.gguf" 256 | cmp -s - <(tr ' ' '\n' <"$fx/stories260K/greedy_t0_ids.txt" | grep .) ||
    record_failure dense "llama.cpp greedy ids differ from greedy_t0_ids.txt"
fi

# The prunes below make models for the exports: not evaluated (compare does).
pr=(prune --config "$src/configs/stories260k-50.ini" --set "model.path=$bin" --set "model.tokenizer=$tok"
    --set "data.calib=$fx/tinystories/calib.txt" --set data.eval= --set output.format=gguf)
# A short 50% prune (per-layer FFN sizes: the `deci` architecture) written as GGUF by prune: its 10
# steps of 8 draw from 64 sequences, cached and re-fitted on (the default 1,775 and 256 took most
# of this test's time).
"$VT_BIN" "${pr[@]}" --set "output.dir=$work/p50.gguf" --set data.max_sequences=64 --set reconstruct.sequences=64 \
  --set schedule.steps=10 --set schedule.log_interval=10 >"$work/prune.txt" 2>&1 || { cat "$work/prune.txt"; fail "prune"; }
"$VT_BIN" inspect --model "$work/p50.gguf" >"$work/p50.inspect"
compare p50-f32 "$work/p50.gguf" 1e-3
"$VT_BIN" convert --model "$work/p50.gguf" --to gguf --dtype q8_0 --out "$work/p50-q8.gguf" 2>/dev/null
compare p50-q8_0 "$work/p50-q8.gguf" 5e-3

# Magnitude prunes to 40% (no training, a few seconds): per-layer head and KV-head counts and
# removed MLPs (`deci`), and the same budget with budget.uniform (`llama`, equal sizes everywhere).
# Re-fitted on the default 256 sequences: on 64, the per-layer model's greedy text parted from
# llama.cpp's at a near tie (mean NLLs 4e-7 apart).
for u in false true; do
  "$VT_BIN" "${pr[@]}" --set "output.dir=$work/m-$u.gguf" \
    --set method.name=magnitude --set budget.params=0.4 --set "budget.uniform=$u" \
    >"$work/prune-$u.txt" 2>&1 || { cat "$work/prune-$u.txt"; fail "magnitude prune (uniform $u)"; }
  "$VT_BIN" inspect --model "$work/m-$u.gguf" >"$work/m-$u.inspect"
  # distinct (heads, kv heads) and FFN sizes over the layer table
  shapes=$(awk '/^layer /{t=1;next} t&&$1~/^[0-9]+$/{print $2"/"$3}' "$work/m-$u.inspect" | sort -u | wc -l)
  ffns=$(awk '/^layer /{t=1;next} t&&$1~/^[0-9]+$/{print $4}' "$work/m-$u.inspect" | sort -u | wc -l)
  arch=$(check meta "$work/m-$u.gguf" general.architecture)
  if [[ $u == true ]]; then
    [[ $arch == llama && $shapes == 1 && $ffns == 1 ]] || record_failure uniform "arch $arch, $shapes head shapes, $ffns FFN sizes"
  else
    [[ $arch == deci && $shapes -gt 1 ]] || record_failure per-layer "arch $arch, $shapes head shapes (want per-layer head counts)"
  fi
  compare "magnitude-uniform-$u" "$work/m-$u.gguf" 1e-3
done
# reconstruct.bias: the re-fit's o_proj/down_proj biases as blk.N.attn_output.bias and ffn_down.bias,
# which llama.cpp's llama (budget.uniform) and deci architectures load when present (without them
# the perplexity of this model is 4x higher: tests/e2e/refit_bias.sh). Random pruning: no training.
for u in false true; do
  "$VT_BIN" "${pr[@]}" --set "output.dir=$work/bias-$u.gguf" \
    --set method.name=random --set reconstruct.bias=true --set reconstruct.sequences=64 --set "budget.uniform=$u" >"$work/prune-bias.txt" 2>&1 || { cat "$work/prune-bias.txt"; fail "prune with reconstruct.bias"; }
  compare "random-bias-uniform-$u" "$work/bias-$u.gguf" 1e-3
done

# budget.uniform is refused, before any work, with intermediate pruning and on a model whose
# layers differ (the per-layer prune above).
uni=(prune --config "$src/configs/stories260k-50.ini" --set "model.tokenizer=$tok" --set "data.calib=$fx/tinystories/calib.txt"
  --set "data.eval=$work/eval.txt" --set "output.dir=$work/refused" --set budget.uniform=true)
expect_error "uniform with prune_interval" "method.prune_interval = 5" -- "${uni[@]}" --set "model.path=$bin" \
  --set method.prune_interval=5
expect_error "uniform on per-layer sizes" "budget.uniform needs a model whose layers all have the same sizes" -- \
  "${uni[@]}" --set "model.path=$work/m-false.gguf" --set method.name=magnitude

# A byte-level tokenizer (Phi-2's tokenizer.json: "gpt2" with pre-tokenizer "gpt-2", merges, added
# tokens) embedded in a tiny random model of its vocabulary: llama.cpp tokenizes the 47 golden
# strings to the golden ids, which are vtrans-dist's (tests/unit/test_tokenizer_json.c).
phi=$fx/tokenizers/phi2/tokenizer.json gold=$fx/tokenizers/golden/phi2.jsonl
"$py" "$src/scripts/make-random-model" --out "$work/phi" --hidden 16 --ffn 32 --heads 2 --kv-heads 2 --layers 1 \
  --vocab 50295 --seq-len 64 --dtype f32 --tied >/dev/null || fail "make-random-model"
"$VT_BIN" convert --model "$work/phi" --to gguf --out "$work/phi.gguf" --tokenizer "$phi" 2>"$work/phi.err" ||
  { cat "$work/phi.err"; fail "byte-level GGUF export"; }
[[ $(check meta "$work/phi.gguf" tokenizer.ggml.pre) == gpt-2 ]] || record_failure byte-level "tokenizer.ggml.pre is not gpt-2"
"$py" - "$gold" "$work/phi.lines" <<'PY'
import json, sys
with open(sys.argv[2], "w") as f:
    for line in open(sys.argv[1]):
        t = json.loads(line)["text"]
        f.write(t.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + "\n")
PY
check tok "$work/phi.gguf" "$work/phi.lines" >"$work/phi.llama" || record_failure byte-level "llama.cpp could not tokenize"
"$py" - "$gold" "$work/phi.llama" <<'PY' || record_failure byte-level "llama.cpp's ids differ from the golden ids"
import json, sys
gold = [json.loads(l)["ids"] for l in open(sys.argv[1])]
got = [[int(x) for x in l.split()] for l in open(sys.argv[2]).read().split("\n")[:len(gold)]]
bad = [i for i in range(len(gold)) if gold[i] != got[i]]
print(f"byte-level: llama.cpp matches {len(gold) - len(bad)}/{len(gold)} golden strings")
sys.exit(1 if bad else 0)
PY
# LLaMA-3's byte-level tokenizer ("llama-bpe"): a tokenizer.json made from llama.cpp's own
# ggml-vocab-llama-bpe.gguf (its tokens, merges, special tokens and LLaMA-3's Split regex),
# exported with a tiny random model of that vocabulary; llama.cpp tokenizes its test inputs for
# that vocabulary to their expected ids. The vocabulary comes with scripts/install-deps --tests.
l3=$llama/models/ggml-vocab-llama-bpe.gguf
if [[ -f $l3 && -f $l3.inp && -f $l3.out ]]; then
  mkdir -p "$work/l3"
  "$py" - "$l3" "$work/l3/tokenizer.json" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "rb").read()
o = 24  # magic, version, tensor count, kv count
def take(fmt):
    global o
    v = struct.unpack_from("<" + fmt, f, o); o += struct.calcsize("<" + fmt); return v[0]
def string():
    global o
    n = take("Q"); o += n; return f[o - n:o].decode("utf-8")
FMT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
def value(t):
    if t == 8: return string()
    if t == 9:
        et, n = take("I"), take("Q"); return [value(et) for _ in range(n)]
    return take(FMT[t])
kv = {}
for _ in range(struct.unpack_from("<Q", f, 16)[0]):
    k = string(); kv[k] = value(take("I"))
toks, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": t == 4,
          "special": t == 3} for i, (s, t) in enumerate(zip(toks, types)) if t in (3, 4)]
vocab = {s: i for i, (s, t) in enumerate(zip(toks, types)) if t not in (3, 4)}
regex = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
         "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
json.dump({"version": "1.0", "added_tokens": added, "normalizer": None, "post_processor": None,
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False,
                     "ignore_merges": True, "vocab": vocab, "merges": kv["tokenizer.ggml.merges"]}},
          open(sys.argv[2], "w"), ensure_ascii=False)
PY
  "$py" "$src/scripts/make-random-model" --out "$work/l3/m" --hidden 16 --ffn 32 --heads 2 --kv-heads 2 --layers 1 \
    --vocab 128256 --seq-len 64 --dtype f32 --tied >/dev/null || fail "make-random-model"
  "$VT_BIN" convert --model "$work/l3/m" --to gguf --out "$work/l3.gguf" --tokenizer "$work/l3/tokenizer.json" 2>"$work/l3.err" ||
    { cat "$work/l3.err"; fail "LLaMA-3 byte-level GGUF export"; }
  [[ $(check meta "$work/l3.gguf" tokenizer.ggml.pre) == llama-bpe ]] || record_failure llama-bpe "tokenizer.ggml.pre"
  "$py" - "$l3" "$work/l3.lines" <<'PY'
import sys
inputs = open(sys.argv[1] + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for t in inputs[:len(open(sys.argv[1] + ".out").read().split("\n")) - 1]:
        f.write(t.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + "\n")
PY
  check tok "$work/l3.gguf" "$work/l3.lines" >"$work/l3.llama" || record_failure llama-bpe "llama.cpp could not tokenize"
  "$py" - "$l3.out" "$work/l3.llama" <<'PY' || record_failure llama-bpe "llama.cpp's ids on our export differ from the expected ones"
import sys
want = open(sys.argv[1]).read().split("\n")[:-1]
got = open(sys.argv[2]).read().split("\n")
bad = [i for i in range(len(want)) if want[i].split() != got[i].split()]
print(f"llama-bpe: llama.cpp on the export matches {len(want) - len(bad)}/{len(want)} expected tokenizations")
sys.exit(1 if bad else 0)
PY
else
  echo "gguf_llama_cpp: $l3(.inp/.out) not installed: the LLaMA-3 (llama-bpe) tokenizer part is skipped"
fi

# A byte-level regex llama.cpp has no name for is refused, naming the alternative.
"$py" - "$phi" "$work/odd" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "\\s+|\\w+"}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
os.makedirs(sys.argv[2], exist_ok=True)
json.dump(d, open(os.path.join(sys.argv[2], "tokenizer.json"), "w"))
PY
expect_error "unknown pre-tokenizer" "no pre-tokenizer name known" "HF directory" -- convert --model "$work/phi" --to gguf \
  --out "$work/odd.gguf" --tokenizer "$work/odd/tokenizer.json"

# Bad GGUF files: clear errors, no crash.
printf 'GGUX' >"$work/magic.gguf"; head -c 5000 "$fx/gguf/stories260K.gguf" >"$work/trunc.gguf"
expect_error "bad magic" "bad magic" -- inspect --model "$work/magic.gguf"
expect_error "truncated" "truncated" -- inspect --model "$work/trunc.gguf"
finish
