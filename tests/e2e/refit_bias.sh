#!/usr/bin/env bash
# reconstruct.bias: the re-fit gives o_proj and down_proj output biases, written as Hugging Face
# LlamaConfig has them (attention_bias / mlp_bias, with zero q/k/v and gate/up biases). The written
# directory
#   1. says so in config.json and stores non-zero o_proj/down_proj biases, zero q/k/v/gate/up ones;
#   2. evaluates, read back by our HF reader, to the perplexity the run reported for the model in
#      memory (1e-6 relative);
#   3. evaluates in the independent PyTorch reference (tests/reference/llama_ref.py, float64, which
#      adds biases by LlamaConfig's rules) to our perplexity within 1e-4 relative, and would not
#      without the biases (the same directory with the biases zeroed differs by more than 1e-3);
#   4. converts to GGUF and back to the same perplexity (attn_output.bias, ffn_down.bias);
#   5. is refused, with a message, as the input of another prune (biases on kept dims only).
# And reconstruct.seq_len: the re-fit runs on the calibration tokens cut anew (its log line says
# how), and a length below 2 is refused.
# The GGUF file against the real llama.cpp: tests/e2e/gguf_llama_cpp.sh. Random pruning (no
# training) keeps this test to a few seconds.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
refdir=$src/tests/reference
model=$fx/stories260K/stories260K.bin tok=$fx/stories260K/tok512.bin
need_files "$model" "$tok" "$fx/tinystories/calib.txt" "$fx/tinystories/eval.txt"
[[ -x $py ]] || skip "$py not found"
cd "$src"
head -c 20000 "$fx/tinystories/eval.txt" >"$work/eval.txt"
"$VT_BIN" prune --config configs/stories260k-50.ini --set "model.path=$model" --set "model.tokenizer=$tok" \
  --set "data.calib=$fx/tinystories/calib.txt" --set "data.eval=$work/eval.txt" --set "output.dir=$work/b50" \
  --set method.name=random --set reconstruct.sequences=64 --set reconstruct.bias=true >"$work/prune.txt" 2>&1 ||
  { tail -20 "$work/prune.txt"; fail "prune with reconstruct.bias"; }

# 1. config.json and the stored biases.
"$py" - "$work/b50" "$refdir" <<'PY' || record_failure stored "config.json or the stored biases"
import json, sys
sys.path.insert(0, sys.argv[2])
from llama_ref import read_safetensors
d = sys.argv[1]
c = json.load(open(f"{d}/config.json"))
assert c["attention_bias"] is True and c["mlp_bias"] is True, c
t = read_safetensors(f"{d}/model.safetensors")
nonzero = lambda k: float(t[k].abs().max()) > 0  # noqa: E731
for l in range(c["num_hidden_layers"]):
    p = f"model.layers.{l}."
    if f"{p}self_attn.o_proj.weight" in t:
        assert nonzero(f"{p}self_attn.o_proj.bias"), l
        assert not any(nonzero(f"{p}self_attn.{x}_proj.bias") for x in "qkv"), l
    if f"{p}mlp.down_proj.weight" in t:
        assert nonzero(f"{p}mlp.down_proj.bias"), l
        assert not any(nonzero(f"{p}mlp.{x}_proj.bias") for x in ("gate", "up")), l
print("config.json: attention_bias and mlp_bias; o_proj/down_proj biases non-zero, the others zero")
PY

# 2. read back: the perplexity the run reported.
"$VT_BIN" eval --model "$work/b50" --data "$work/eval.txt" --window 256 --json >"$work/ours.json"
"$py" - "$work/b50/vtrans_report.json" "$work/ours.json" <<'PY' || record_failure readback "eval of the directory"
import json, sys
r, e = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert abs(r["ppl_after"] - e["ppl"]) <= 1e-6 * e["ppl"], (r["ppl_after"], e["ppl"])
print(f"written model: ppl {e['ppl']:.6f}, as reported ({r['ppl_after']:.6f})")
PY

# 3. the PyTorch reference, with and without the biases.
if "$py" -c 'import torch, numpy' 2>/dev/null; then
  "$py" "$refdir/llama_ref.py" eval --model "$work/b50" --tokenizer "$tok" --data "$work/eval.txt" --window 256 \
    >"$work/ref.json"
  "$py" "$refdir/compare_eval.py" "$work/ref.json" "$work/ours.json" --rtol 1e-4 --label "biased model vs PyTorch" ||
    record_failure torch "perplexity differs from the PyTorch reference"
  # the same directory with the bias tensors removed and config.json saying there are none
  mkdir "$work/nobias" && cp "$work/b50"/*.json "$work/nobias/" && "$py" - "$work/b50" "$work/nobias" <<'PY'
import json, sys
c = json.load(open(f"{sys.argv[1]}/config.json"))
c["attention_bias"] = c["mlp_bias"] = False
json.dump(c, open(f"{sys.argv[2]}/config.json", "w"))
PY
  "$py" - "$work/b50" "$work/nobias" "$refdir" <<'PY'
import json, struct, sys
sys.path.insert(0, sys.argv[3])
raw = open(f"{sys.argv[1]}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
keep = {k: v for k, v in head.items() if not k.endswith(".bias")}
data, out, off = raw[8 + n:], bytearray(), 0
for k, v in keep.items():
    if k == "__metadata__":
        continue
    a, b = v["data_offsets"]
    v["data_offsets"] = [off, off + b - a]
    out += data[a:b]
    off += b - a
h = json.dumps(keep).encode()
h += b" " * (-len(h) % 8)
open(f"{sys.argv[2]}/model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + out)
PY
  "$py" "$refdir/llama_ref.py" eval --model "$work/nobias" --tokenizer "$tok" --data "$work/eval.txt" --window 256 \
    >"$work/ref0.json"
  "$py" - "$work/ref0.json" "$work/ours.json" <<'PY' || record_failure torch "the biases change nothing"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rel = abs(a["ppl"] - b["ppl"]) / b["ppl"]
print(f"without the biases the reference gives ppl {a['ppl']:.4f} against {b['ppl']:.4f} ({rel:.2e} relative)")
assert rel > 1e-3
PY
else
  echo "note: no torch for $py; the PyTorch comparison is skipped"
fi

# 4. GGUF and back.
"$VT_BIN" convert --model "$work/b50" --to gguf --out "$work/b50.gguf" >/dev/null 2>&1 || record_failure gguf "export"
"$VT_BIN" eval --model "$work/b50.gguf" --data "$work/eval.txt" --window 256 --json >"$work/gguf.json"
"$py" - "$work/gguf.json" "$work/ours.json" <<'PY' || record_failure gguf "perplexity of the GGUF file"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert abs(a["ppl"] - b["ppl"]) <= 1e-5 * b["ppl"], (a["ppl"], b["ppl"])
print(f"GGUF: ppl {a['ppl']:.6f}")
PY

# 5. not an input of prune.
expect_error "prune a biased model" "pruning a biased model is not supported" -- prune \
  --config configs/stories260k-50.ini --set "model.path=$work/b50" --set "model.tokenizer=$tok" \
  --set "data.calib=$fx/tinystories/calib.txt" --set "data.eval=$work/eval.txt" --set "output.dir=$work/again" \
  --set method.name=magnitude

# 6. reconstruct.seq_len.
"$VT_BIN" prune --config configs/stories260k-50.ini --set "model.path=$model" --set "model.tokenizer=$tok" \
  --set "data.calib=$fx/tinystories/calib.txt" --set data.eval= --set "output.dir=$work/cut" \
  --set method.name=random --set reconstruct.sequences=8 --set reconstruct.seq_len=48 >"$work/cut.txt" 2>&1 ||
  { tail -20 "$work/cut.txt"; record_failure seq_len "prune with reconstruct.seq_len = 48"; }
grep -q "on 8 calibration sequences of 48 tokens" "$work/cut.txt" ||
  record_failure seq_len "the re-fit's log line does not say 8 sequences of 48 tokens: $(grep -m1 're-fit (' "$work/cut.txt")"
expect_error "reconstruct.seq_len = 1" "reconstruct.seq_len must be 0 or at least 2: got 1" -- prune \
  --config configs/stories260k-50.ini --set "model.path=$model" --set "model.tokenizer=$tok" \
  --set "data.calib=$fx/tinystories/calib.txt" --set data.eval= --set "output.dir=$work/cut1" \
  --set method.name=random --set reconstruct.seq_len=1
finish
