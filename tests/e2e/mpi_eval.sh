#!/usr/bin/env bash
# eval and generate under mpirun on stories260K: 2 stages, 2 replicas and 2x2 give the single
# process's perplexity and token count; greedy generation through 2 stages prints llama2.c's text;
# impossible topologies are refused before loading; a corrupt shard read by one stage, and a rank
# failing in the middle of the pipeline, end every rank with the message within seconds.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
model="$fx/stories260K/stories260K.bin"
need_files "$model"
need_command mpirun "install openmpi-bin"
mpi_env
# 14 kB of the evaluation text: 55 windows of 128, the last one shorter, an odd count to split.
head -c 14000 "$fx/tinystories/eval.txt" >"$work/eval.txt"

# run NAME NPROCS ARGS...: vtrans-dist under mpirun with a time limit; stdout to $work/NAME.out,
# stderr to $work/NAME.err, exit code to $rc, seconds taken to $took.
run() {
  local name=$1 np=$2 start=$SECONDS
  shift 2
  set +e
  timeout 60 mpirun --oversubscribe -n "$np" "$VT_BIN" "$@" >"$work/$name.out" 2>"$work/$name.err"
  rc=$?
  set -e
  took=$((SECONDS - start))
}

# 1. Perplexity: one process, then 2 stages (automatic and explicit), 2 replicas, 2x2, and
#    4 stages reading an HF checkpoint in shards with an odd micro-batch size.
"$VT_BIN" eval --model "$model" --data "$work/eval.txt" --window 128 --json >"$work/single.out"
"$VT_BIN" convert --model "$model" --out "$work/hf" --shard-size 300000 >/dev/null
same_ppl() { # NAME: its JSON has the single process's tokens and windows, and ppl to 1e-6 relative
  "$py" - "$work/single.out" "$work/$1.out" <<'PY' || fail "$1: result differs from one process"
import json, sys
a, b = (json.loads(open(p).read()) for p in sys.argv[1:])
print(f"  {sys.argv[2].rsplit('/', 1)[1]}: ppl {b['ppl']:.9f} tokens {b['tokens']} (one process: {a['ppl']:.9f} {a['tokens']})")
assert a["tokens"] == b["tokens"] == 6917 and a["windows"] == b["windows"] == 55, (a, b)
assert abs(a["ppl"] - b["ppl"]) <= 1e-6 * a["ppl"], (a, b)
PY
}
specs=("auto 2" "grid2x2 4 --stages 2")
full_pass "2 stages chosen explicitly, 2 replicas: the code of the automatic 2 stages and 2x2" &&
  specs+=("stages2 2 --stages 2" "replicas2 2 --stages 1")
for spec in "${specs[@]}"; do
  # shellcheck disable=SC2086
  set -- $spec
  name=$1 np=$2
  shift 2
  run "$name" "$np" eval --model "$model" --data "$work/eval.txt" --window 128 --json "$@"
  [ "$rc" -eq 0 ] || { cat "$work/$name.err"; fail "eval $name exited $rc"; }
  [ "$(grep -c . "$work/$name.out")" -eq 1 ] || fail "eval $name: expected one result line, got: $(cat "$work/$name.out")"
  same_ppl "$name"
done
grep -q "2 ranks = 2 stages x 1 replicas; layers 0-2, 3-4" "$work/auto.err" || fail "automatic topology: $(cat "$work/auto.err")"
[ ! -f "$work/replicas2.err" ] || grep -q "2 ranks = 1 stages x 2 replicas" "$work/replicas2.err" ||
  fail "--stages 1: $(cat "$work/replicas2.err")"
grep -q "4 ranks = 2 stages x 2 replicas" "$work/grid2x2.err" || fail "2x2: $(cat "$work/grid2x2.err")"
run sharded 4 eval --model "$work/hf" --data "$work/eval.txt" --window 128 --json --batch 3
[ "$rc" -eq 0 ] || { cat "$work/sharded.err"; fail "eval of the sharded HF checkpoint on 4 stages exited $rc"; }
grep -q "4 ranks = 4 stages x 1 replicas" "$work/sharded.err" || fail "4 stages: $(cat "$work/sharded.err")"
same_ppl sharded

# 2. Generation: greedy through 2 stages is llama2.c's text; sampling on 2x2 is the single
#    process's text, printed once.
{ cat "$fx/stories260K/greedy_t0.txt"; echo; } >"$work/greedy.txt"
run gen2 2 generate --model "$model" --steps 256 --temperature 0
[ "$rc" -eq 0 ] || { cat "$work/gen2.err"; fail "generate on 2 ranks exited $rc"; }
cmp "$work/gen2.out" "$work/greedy.txt" || fail "greedy output on 2 stages differs: $(head -c 200 "$work/gen2.out")"
"$VT_BIN" generate --model "$model" --prompt "Once upon a time" --steps 90 --temperature 0.9 --seed 7 >"$work/sample1.out" 2>/dev/null
run sample4 4 generate --model "$model" --prompt "Once upon a time" --steps 90 --temperature 0.9 --seed 7 --stages 2
[ "$rc" -eq 0 ] || { cat "$work/sample4.err"; fail "sampling on 2x2 exited $rc"; }
cmp "$work/sample4.out" "$work/sample1.out" || fail "sampled text on 2x2 differs from one process: $(cat "$work/sample4.out")"
echo "  generate: greedy on 2 stages and sampling on 2x2 match one process"

# expect_refusal NAME PATTERN: the run failed fast (not killed by the time limit) and printed the
# message matching PATTERN once.
expect_refusal() {
  local name=$1 pattern=$2
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$rc" -ge 128 ]; then cat "$work/$name.err"; fail "$name: exit code $rc"; fi
  [ "$took" -le 60 ] || fail "$name: took $took s to fail" # 8 ranks under ASan on 2 loaded cores: ~30 s
  [ "$(grep -cE -- "$pattern" "$work/$name.err")" -eq 1 ] || { cat "$work/$name.err"; fail "$name: expected one line matching '$pattern'"; }
  echo "  $name: exit $rc after ${took} s: $(grep -E -- "$pattern" "$work/$name.err" | head -c 240)"
}

# 3. Impossible topologies are refused before loading anything (no layout line is printed).
run notdivisible 4 eval --model "$model" --data "$work/eval.txt" --stages 3
expect_refusal notdivisible "^vtrans-dist: ranks 0-3: 4 ranks cannot form 3 pipeline stages: 4 is not a multiple of 3"
run toomany 8 generate --model "$model" --stages 8
expect_refusal toomany "^vtrans-dist: ranks 0-7: cannot split 5 layers into 8 stages"
! grep -q "^eval: " "$work/notdivisible.err" || fail "a refused topology went on to the layout"
run badopt 2 eval --model "$model" --data "$work/eval.txt" --window x
expect_refusal badopt "^vtrans-dist: ranks 0-1: --window: 'x' is not an integer"

# 4. A corrupt shard read only by stage 1 (layers 3-4 and the tied classifier; stage 0 reads
#    the embedding and layers 0-2): every rank stops, the message names rank 1 and the file.
shard=$("$py" - "$work/hf/model.safetensors.index.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["weight_map"]
f = m["model.layers.4.mlp.down_proj.weight"]
stage0 = [k for k, v in m.items() if v == f and (k.startswith(("model.layers.0.", "model.layers.1.", "model.layers.2.")))]
assert not stage0, f"{f} also holds {stage0}: pick another shard size"
print(f)
PY
)
cp -r "$work/hf" "$work/bad"
truncate -s 100000 "$work/bad/$shard"
run corrupt 2 eval --model "$work/bad" --data "$work/eval.txt"
expect_refusal corrupt "^vtrans-dist: rank 1: stage 1 loading layers 3-4: .*bad/$shard: .*out of range"
run corrupt_gen 2 generate --model "$work/bad" --steps 20
expect_refusal corrupt_gen "^vtrans-dist: rank 1: .*bad/$shard"

# 5. A rank that fails in the middle of the pipeline while its peers wait on it aborts the world.
VT_INJECT_FAULT=1:forward run midway 2 eval --model "$model" --data "$work/eval.txt"
expect_refusal midway "^vtrans-dist: rank 1: pipeline forward: fault injected at forward"
VT_INJECT_FAULT=0:forward run midway_gen 4 generate --model "$model" --stages 2 --steps 30
expect_refusal midway_gen "^vtrans-dist: rank 0: pipeline forward: fault injected at forward"

echo "mpi_eval: ok"
