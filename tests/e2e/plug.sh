#!/usr/bin/env bash
# Variator plugins on stories260K (docs/PLUGINS.md): `plug` trains a plugin and writes it with its
# report (plugin.lr_schedule reaching Adam); 2 data-parallel replicas (mpirun -n 2), 2 pipeline stages and 2 stages x 2 replicas
# train the same plugin as one process (1e-4, relative to the tensor's largest value), with the
# same report; a 2-stage run stopped after step 2 and resumed in one process writes the same
# plugin; `eval --plugin` prints dense and plugged continuation perplexity; `generate --plugin`
# runs; a plugin is refused by another model's weights (an f16 copy).
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
model="$fx/stories260K/stories260K.bin"
need_files "$model" "$fx/tinystories/calib.txt" "$fx/tinystories/eval.txt"
head -c 40000 "$fx/tinystories/calib.txt" >"$work/calib.txt"
head -c 12000 "$fx/tinystories/eval.txt" >"$work/eval.txt"
cat >"$work/plug.ini" <<INI
[model]
path = $model
tokenizer = $fx/stories260K/tok512.bin
[data]
calib = $work/calib.txt
eval = $work/eval.txt
eval_window = 64
[plugin]
k = 4
r = 8
steps = 4
batch_size = 4
lr = 1e-3
[schedule]
log_interval = 2
[output]
dir = $work/one
INI

# 1. One process: the plugin, its report, progress lines.
"$VT_BIN" plug --config "$work/plug.ini" >"$work/one.out" 2>"$work/one.err" || { cat "$work/one.err"; fail "plug exited $?"; }
grep -q "plug: step 4/4  KL" "$work/one.err" || fail "no progress line: $(cat "$work/one.err")"
[ -s "$work/one/plugin-k4.safetensors" ] || fail "no plugin file"
"$py" - "$work/one/plugin-k4.json" <<'PY' || fail "report"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  one process: ppl {r['ppl']:.4f} dense {r['ppl_dense']:.4f} saved {r['prefill_flops_saved']:.3f}")
assert r["k"] == 4 and r["r"] == 8 and r["prompt"] == 48 and r["train_steps"] == 4 and r["train_tokens"] == 4 * 4 * 64, r
assert r["tokens"] > 0 and r["ppl"] > 1 and r["ppl_dense"] > 1 and 0.3 < r["prefill_flops_saved"] < 0.6, r
PY

# 1b. plugin.lr_schedule = linear reaches Adam: the progress lines give the decayed rate (to 0.1 lr
# over the steps: 0.775e-3 for the second of 4 steps, 0.325e-3 for the last), and the plugin
# differs from the constant rate's.
"$VT_BIN" plug --config "$work/plug.ini" --set output.dir="$work/linear" --set plugin.lr_schedule=linear \
  >"$work/linear.out" 2>"$work/linear.err" || { cat "$work/linear.err"; fail "plug with a linear schedule exited $?"; }
grep -q "plug: step 2/4 .* lr 0.000775 " "$work/linear.err" && grep -q "plug: step 4/4 .* lr 0.000325 " "$work/linear.err" &&
  grep -q "plug: step 4/4 .* lr 0.001 " "$work/one.err" || fail "learning rates: $(grep 'plug: step' "$work/one.err" "$work/linear.err")"
cmp -s "$work/one/plugin-k4.safetensors" "$work/linear/plugin-k4.safetensors" && fail "the linear schedule trained the same plugin as the constant one"

# 2. Two data-parallel replicas, two pipeline stages, 2 x 2 train the same plugin.
cat >"$work/same.py" <<'PY'
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    out = {}
    for name, t in h.items():
        s, e = t["data_offsets"]
        out[name] = struct.unpack(f"<{(e - s) // 4}f", b[8 + n + s:8 + n + e])
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and "layers.4.plugin.w1" not in a and "layers.3.plugin.w1" in a, sorted(a)
rel = max(max(abs(x - y) for x, y in zip(a[k], b[k])) / max(max(abs(x) for x in a[k]), 1e-30) for k in a)
moved = max(abs(x) for x in a["layers.0.plugin.w2"])
ra, rb = (json.load(open(p.replace(".safetensors", ".json"))) for p in sys.argv[1:3])
print(f"  {sys.argv[3]} vs 1: largest difference {rel:.3g} of the tensor's largest value (trained W2 up to {moved:.3g}); "
      f"ppl {rb['ppl']:.6f} vs {ra['ppl']:.6f}")
assert rel <= 1e-4 and moved > 1e-3, (rel, moved)
assert abs(ra["ppl"] - rb["ppl"]) <= 1e-5 * ra["ppl"] and ra["tokens"] == rb["tokens"], (ra, rb)
assert abs(ra["ppl_dense"] - rb["ppl_dense"]) <= 1e-5 * ra["ppl_dense"] and abs(ra["final_kl"] - rb["final_kl"]) <= 1e-4 * ra["final_kl"], (ra, rb)
PY
if command -v mpirun >/dev/null; then
  mpi_env
  run_ranks() { # NAME RANKS STAGES [ARGS...]: plug into $work/NAME
    local name=$1 n=$2 s=$3
    shift 3
    timeout 180 mpirun --oversubscribe ${VT_STOP_AFTER:+-x VT_STOP_AFTER} -n "$n" "$VT_BIN" plug --config "$work/plug.ini" --set output.dir="$work/$name" \
      --set parallel.stages="$s" "$@" >"$work/$name.out" 2>"$work/$name.err"
  }
  if full_pass "2 replicas, 2 stages: the code of 2 x 2 and of the stopped 2-stage run"; then
    run_ranks two 2 1 || { cat "$work/two.err"; fail "plug on 2 ranks exited $?"; }
    grep -q "on 2 replicas$" "$work/two.err" || fail "2 ranks: $(cat "$work/two.err")"
    "$py" "$work/same.py" "$work/one/plugin-k4.safetensors" "$work/two/plugin-k4.safetensors" "2 replicas" || fail "2 replicas differ from 1"
    run_ranks st2 2 2 || { cat "$work/st2.err"; fail "plug on 2 stages exited $?"; }
    grep -q "2 stages x 1 replicas; layers 0-2, 3-4" "$work/st2.err" && grep -q "on 1 replicas of 2 stages" "$work/st2.err" ||
      fail "2 stages: $(cat "$work/st2.err")"
    "$py" "$work/same.py" "$work/one/plugin-k4.safetensors" "$work/st2/plugin-k4.safetensors" "2 stages" || fail "2 stages differ from 1"
  fi
  run_ranks st22 4 2 || { cat "$work/st22.err"; fail "plug on 2 x 2 exited $?"; }
  grep -q "on 2 replicas of 2 stages" "$work/st22.err" || fail "2 x 2: $(cat "$work/st22.err")"
  "$py" "$work/same.py" "$work/one/plugin-k4.safetensors" "$work/st22/plugin-k4.safetensors" "2 stages x 2 replicas" ||
    fail "2 x 2 differs from 1"
  # stopped on 2 stages after step 2 (the checkpoint holds every stage's plugins), resumed in one process
  code=0
  VT_STOP_AFTER=plug:2 run_ranks stop 2 2 || code=$?
  [ "$code" = 75 ] || { cat "$work/stop.err"; fail "2 stages stopped after step 2: exit $code, expected 75"; }
  "$VT_BIN" plug --config "$work/plug.ini" --set output.dir="$work/stop" --resume "$work/stop.run" \
    >"$work/resumed.out" 2>"$work/resumed.err" || { cat "$work/resumed.err"; fail "resume of the 2-stage run exited $?"; }
  grep -q "at plug step 2" "$work/resumed.err" || fail "resume: $(cat "$work/resumed.err")"
  "$py" "$work/same.py" "$work/one/plugin-k4.safetensors" "$work/stop/plugin-k4.safetensors" "2 stages stopped, resumed in 1" ||
    fail "the resumed 2-stage run differs"
else
  echo "  mpirun not found: the 2-replica and 2-stage runs are not tried"
fi

# 3. eval --plugin: dense and plugged on the same windows; --prompt-fraction.
"$VT_BIN" eval --model "$model" --data "$work/eval.txt" --window 64 --plugin "$work/one/plugin-k4.safetensors" \
  --json >"$work/eval.json"
"$VT_BIN" eval --model "$model" --data "$work/eval.txt" --window 64 --plugin "$work/one/plugin-k4.safetensors" \
  --prompt-fraction 0.5 --json >"$work/eval50.json"
"$py" - "$work/eval.json" "$work/eval50.json" "$work/one/plugin-k4.json" <<'PY' || fail "eval --plugin"
import json, sys
e, h, r = (json.load(open(p)) for p in sys.argv[1:])
assert abs(e["ppl"] - r["ppl"]) <= 1e-6 * r["ppl"] and e["tokens"] == r["tokens"], (e, r)
assert e["ppl_dense"] > 1 and e["prompt"] == 48 and h["prompt"] == 32 and h["tokens"] > e["tokens"], (e, h)
assert 0 < h["prefill_flops_saved"] < e["prefill_flops_saved"], (e, h)
PY
"$VT_BIN" eval --model "$model" --data "$work/eval.txt" --window 64 --plugin "$work/one/plugin-k4.safetensors" \
  | grep -q "continuation ppl: dense .* plugged .* saves .* of the prefill FLOPs" || fail "eval --plugin text"

# 4. generate --plugin: the prompt plugged, then greedy on the cache.
"$VT_BIN" generate --model "$model" --temperature 0 --steps 40 --prompt "Once upon a time, there was a little girl" \
  --plugin "$work/one/plugin-k4.safetensors" >"$work/gen.out" 2>"$work/gen.err" || { cat "$work/gen.err"; fail "generate --plugin"; }
grep -q "^Once upon a time, there was a little girl" "$work/gen.out" || fail "generate --plugin: $(cat "$work/gen.out")"

# 5. plugin.exact_tail = 8: the plugin file carries it, eval follows it (the same perplexity as the
# report, less saved than with the last position alone), and 2 stages x 2 replicas train the same plugin.
"$VT_BIN" plug --config "$work/plug.ini" --set output.dir="$work/tail" --set plugin.exact_tail=8 \
  >"$work/tail.out" 2>"$work/tail.err" || { cat "$work/tail.err"; fail "plug with exact_tail exited $?"; }
"$VT_BIN" eval --model "$model" --data "$work/eval.txt" --window 64 --plugin "$work/tail/plugin-k4.safetensors" \
  --json >"$work/eval-tail.json"
"$py" - "$work/eval-tail.json" "$work/tail/plugin-k4.json" "$work/eval.json" "$work/tail/plugin-k4.safetensors" <<'PY' || fail "exact_tail"
import json, struct, sys
e, r, one = (json.load(open(p)) for p in sys.argv[1:4])
b = open(sys.argv[4], "rb").read()
md = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]
print(f"  exact tail 8: ppl {e['ppl']:.4f} saved {e['prefill_flops_saved']:.3f} (tail 1: {one['prefill_flops_saved']:.3f})")
assert md["exact_tail"] == "8" and md["version"] == "3" and r["exact_tail"] == 8 and e["exact_tail"] == 8, (md, r, e)
assert abs(e["ppl"] - r["ppl"]) <= 1e-6 * r["ppl"] and 0 < e["prefill_flops_saved"] < one["prefill_flops_saved"], (e, r, one)
PY
if command -v mpirun >/dev/null; then
  run_ranks tail22 4 2 --set plugin.exact_tail=8 || { cat "$work/tail22.err"; fail "plug with exact_tail on 2 x 2 exited $?"; }
  "$py" "$work/same.py" "$work/tail/plugin-k4.safetensors" "$work/tail22/plugin-k4.safetensors" "exact tail 8, 2 stages x 2 replicas" ||
    fail "exact tail 8: 2 x 2 differs from 1"
fi

# 6. Another model's weights (an f16 copy) refuse the plugin.
"$VT_BIN" convert --model "$model" --out "$work/f16" --dtype f16 >/dev/null
expect_error "another model's weights, eval" "plugin made for another model" -- eval --model "$work/f16" \
  --data "$work/eval.txt" --window 64 --plugin "$work/one/plugin-k4.safetensors"
expect_error "another model's weights, generate" "plugin made for another model" -- generate --model "$work/f16" \
  --steps 8 --plugin "$work/one/plugin-k4.safetensors"
finish
