#!/usr/bin/env bash
# inspect refuses each kind of broken checkpoint: non-zero exit (never a crash or signal) and an
# error on stderr that names the file and the problem. Bad inputs are made from the stories260K
# fixture (converted to HF) and with python3's struct/json.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
model="$fx/stories260K/stories260K.bin"
need_files "$model"

# A good HF checkpoint to corrupt, and a check that it is fine as written.
"$VT_BIN" convert --model "$model" --out "$work/good" >/dev/null 2>&1
"$VT_BIN" inspect --model "$work/good" >/dev/null

# fresh_copy NAME: a copy of the good checkpoint to break.
fresh_copy() { cp -r "$work/good" "$work/$1"; echo "$work/$1"; }

# 1. Truncated llama2.c file.
head -c 700000 "$model" >"$work/truncated.bin"
expect_error "truncated .bin" "$work/truncated.bin" "truncated.*needs 1056540 bytes.*has 700000" -- \
  inspect --model "$work/truncated.bin"

# 2-5. Hand-made safetensors files inside otherwise good checkpoints.
# write_st DIR HEADER_LEN_OR_AUTO DATA_BYTES JSON: replaces DIR/model.safetensors.
write_st() {
  "$py" - "$1/model.safetensors" "$2" "$3" "$4" <<'PY'
import struct, sys
path, hlen, nbytes, header = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
header += b" " * (-len(header) % 8)
n = len(header) if hlen == "auto" else int(hlen)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", n) + header + bytes(nbytes))
PY
}
d=$(fresh_copy header_len)
write_st "$d" 5000000 64 '{"model.norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}'
expect_error "header length past end" "$d/model.safetensors" "header length 5000000 runs past the end" -- \
  inspect --model "$d"

d=$(fresh_copy overlap)
write_st "$d" auto 384 '{"a":{"dtype":"F32","shape":[64],"data_offsets":[0,256]},"b":{"dtype":"F32","shape":[64],"data_offsets":[128,384]}}'
expect_error "overlapping offsets" "$d/model.safetensors" "tensor b.*overlap tensor a" -- inspect --model "$d"

d=$(fresh_copy gap)
write_st "$d" auto 520 '{"a":{"dtype":"F32","shape":[64],"data_offsets":[0,256]},"b":{"dtype":"F32","shape":[64],"data_offsets":[264,520]}}'
expect_error "gapped offsets" "$d/model.safetensors" "tensor b.*gap of 8 unused bytes" -- inspect --model "$d"

d=$(fresh_copy range)
write_st "$d" auto 256 '{"a":{"dtype":"F32","shape":[64],"data_offsets":[0,256]},"b":{"dtype":"F32","shape":[64],"data_offsets":[256,512]}}'
expect_error "out-of-range offsets" "$d/model.safetensors" "tensor b.*out of range" -- inspect --model "$d"

# 6. dtype disagreeing with config.json (F32 tensors, torch_dtype float16).
d=$(fresh_copy dtype)
sed -i 's/"torch_dtype": "float32"/"torch_dtype": "float16"/' "$d/config.json"
expect_error "dtype vs config" "$d/model.safetensors" "stored as F32 but .*config.json says torch_dtype float16" -- \
  inspect --model "$d"

# 7. Shape disagreeing with config.json.
d=$(fresh_copy shape)
sed -i 's/"intermediate_size": 172/"intermediate_size": 160/' "$d/config.json"
expect_error "shape vs config" "$d/model.safetensors" "gate_proj.weight has shape \[172, 64\] but .*config.json implies \[160, 64\]" -- \
  inspect --model "$d"

# 8. Missing tensor: rename one in the header (same length, so the file stays well-formed).
d=$(fresh_copy missing)
"$py" - "$d/model.safetensors" <<'PY'
import sys
p = sys.argv[1]
b = open(p, "rb").read()
assert b.count(b'"model.layers.2.mlp.up_proj.weight"') == 1
open(p, "wb").write(b.replace(b'"model.layers.2.mlp.up_proj.weight"', b'"model.layers.2.mlp.up_proj.wXight"'))
PY
expect_error "missing tensor" "$d/model.safetensors" "missing tensor model.layers.2.mlp.up_proj.weight" -- \
  inspect --model "$d"

# 9. Invalid JSON in config.json.
d=$(fresh_copy badjson)
sed -i 's/"vocab_size": 512,/"vocab_size": 512,,/' "$d/config.json"
expect_error "invalid config JSON" "$d/config.json" "invalid JSON at line [0-9]+, column [0-9]+" -- inspect --model "$d"

# 10. Unknown option, and a missing checkpoint.
expect_error "unknown option" "--frobnicate" "unknown option" -- inspect --model "$model" --frobnicate
expect_error "no such checkpoint" "$work/nothing.bin" "no such file" -- inspect --model "$work/nothing.bin"
expect_error "convert bad dtype" "f12" "unknown dtype" -- convert --model "$model" --out "$work/x" --dtype f12
expect_error "convert bad shard size" "12Q" "not a size" -- convert --model "$model" --out "$work/x" --shard-size 12Q

# inspect --json on the good checkpoint is one JSON object with the counts.
"$VT_BIN" inspect --model "$work/good" --json | "$py" -c '
import json, sys
o = json.load(sys.stdin)
assert o["params_total"] == 260032 and o["num_layers"] == 5 and o["dtypes"] == {"F32": 47}, o
assert o["rope_layout"] == "rotate-half" and o["tied"] is True and len(o["layers"]) == 5, o'

finish
