#!/usr/bin/env bash
# prune with configs/stories260k-50.ini: the checkpoint keeps at most 50% of the parameters and
# within 2% of that; its report and config agree; inspect, eval and generate work on it; the
# output directory appears only on success; bad configurations are refused before any work.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/stories260K/stories260K.bin"
cd "$src"  # configs name their files relative to the repository root
model="$fx/stories260K/stories260K.bin"
head -c 10000 "$fx/tinystories/eval.txt" >"$work/eval.txt"  # a slice keeps the test fast
sets=(--set "model.path=$model" --set "model.tokenizer=$fx/stories260K/tok512.bin"
      --set "data.calib=$fx/tinystories/calib.txt" --set "data.eval=$work/eval.txt"
      --set "output.dir=$work/out50"
      --set schedule.steps=40 --set schedule.log_interval=10   # a short schedule: the suite stays fast
      --set data.max_sequences=320                             # the teacher cache: as many as 40 steps of 8 draw
      --set reconstruct.sequences=64)                          # the re-fit (lsq by default) on fewer sequences

"$VT_BIN" prune --config configs/stories260k-50.ini "${sets[@]}" --set output.archive=tar.zst >"$work/stdout.txt" 2>"$work/stderr.txt" || {
  tail -20 "$work/stderr.txt"; fail "prune exited non-zero"; }
[ -f "$work/out50/vtrans_report.json" ] || fail "no report"
grep -q 'class="layer"' "$work/out50/vtrans_report.svg" && [ "$(tail -c 7 "$work/out50/vtrans_report.svg")" = "</svg>" ] ||
  fail "no report picture"
grep -q "step" "$work/stderr.txt" || fail "no progress lines"
# output.archive: the same files packed into one tar.zst beside the directory.
tar -I zstd -tf "$work/out50.tar.zst" | sort >"$work/packed.txt"
(cd "$work" && ls out50 | sed 's|^|out50/|' | sort) | cmp - "$work/packed.txt" || fail "archive contents differ"

"$py" - "$work/out50" <<'PY'
import json, sys
d = sys.argv[1]
r = json.load(open(f"{d}/vtrans_report.json"))
c = json.load(open(f"{d}/config.json"))
before, after = r["params_before"], r["params_after"]
assert after <= 0.5 * before, f"kept {after} of {before}: over the 50% budget"
assert after >= 0.48 * before, f"kept {after} of {before}: more than 2% under the budget"
for k in ("params_before", "params_after", "hidden_kept", "layers", "ppl_before", "ppl_masks", "ppl_after", "method",
          "steps", "tokens", "train_tokens", "wall_seconds", "reconstruct"):
    assert k in r, f"report lacks {k}"
assert r["hidden_kept"] == c["hidden_size"], "report and config.json disagree on hidden size"
L = r["layers"]
assert len(L) == 5
per_heads = c.get("num_attention_heads_per_layer", [c["num_attention_heads"]] * 5)
per_ffn = c.get("intermediate_size_per_layer", [c["intermediate_size"]] * 5)
assert [l["heads"] for l in L] == per_heads and [l["ffn"] for l in L] == per_ffn, "per-layer sizes differ"
assert r["ppl_after"] > r["ppl_before"] > 1, (r["ppl_before"], r["ppl_after"])
# the re-fit: every projection it solved fits the calibration rows better, and the model is better
assert r["ppl_after"] < r["ppl_masks"], ("the re-fit made perplexity worse", r["ppl_masks"], r["ppl_after"])
fits = [(l["layer"], k, v) for l in r["reconstruct"]["layers"] for k, v in l.items() if k != "layer"]
assert {k for _, k, _ in fits} == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}, fits
for l, k, v in fits:
    assert v["error_after"] <= v["error_before"] * 1.001 + 1e-9, (l, k, v)
assert r["train_tokens"] == r["tokens"] == 40 * 8 * 128, (r["train_tokens"], r["tokens"])
print(f"kept {after}/{before} = {after / before:.4f}; ppl {r['ppl_before']:.3f} -> {r['ppl_masks']:.3f} masks only "
      f"-> {r['ppl_after']:.3f} re-fitted")
PY

# The pruned checkpoint loads and runs.
"$VT_BIN" inspect --model "$work/out50" >"$work/inspect.txt"
"$VT_BIN" eval --model "$work/out50" --data "$work/eval.txt" --json >"$work/eval.json"
"$py" - "$work/eval.json" "$work/out50/vtrans_report.json" <<'PY'
import json, sys
e, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert abs(e["ppl"] - r["ppl_after"]) <= 1e-4 * r["ppl_after"], (e["ppl"], r["ppl_after"])
PY
"$VT_BIN" generate --model "$work/out50" --steps 30 --temperature 0 >"$work/gen.txt"
[ -s "$work/gen.txt" ] || fail "generate printed nothing"

# Refused before any work, with the reason, and no output directory.
expect_error "refused: smallest" "smallest" -- prune --config configs/stories260k-50.ini "${sets[@]}" --set budget.params=0.0001 --set "output.dir=$work/x1"
expect_error "refused: budget.params" "budget.params" -- prune --config configs/stories260k-50.ini "${sets[@]}" --set budget.params=1.0 --set "output.dir=$work/x2"
expect_error "refused: method" "method" -- prune --config configs/stories260k-50.ini "${sets[@]}" --set method.name=magic --set "output.dir=$work/x3"
expect_error "refused: unknown key" "unknown key" -- prune --config configs/stories260k-50.ini "${sets[@]}" --set schedule.stepz=3 --set "output.dir=$work/x4"
expect_error "refused: missing.txt" "missing.txt" -- prune --config configs/stories260k-50.ini "${sets[@]}" --set "data.calib=$work/missing.txt" --set "output.dir=$work/x5"
for d in x1 x2 x3 x4 x5; do [ ! -e "$work/$d" ] || fail "$d was created by a refused run"; done
finish
