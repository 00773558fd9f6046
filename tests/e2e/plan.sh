#!/usr/bin/env bash
# plan.sh — `vtrans-dist plan` sizes LLaMA-2-7B and 13B runs from the shipped shapes without any
# checkpoint: a line per stage covering every layer once, the micro-batches and sequence chunks
# of the pipeline with its bubble, and impossible layouts refused.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$src"

# check_plan TITLE LAYERS STAGES ARGS...: plan exits 0, reports STAGES stages, and prints one row
# per stage whose layer ranges tile 0..LAYERS-1 in order.
check_plan() {
    local title="$1" layers="$2" stages="$3"
    shift 3
    if ! "$VT_BIN" plan "$@" > "$work/out.txt" 2> "$work/err.txt"; then
        record_failure "$title" "exit code non-zero: $(cat "$work/err.txt")"
        return
    fi
    if ! grep -qE "^topology +$stages stages? x " "$work/out.txt"; then
        record_failure "$title" "no topology line with $stages stages: $(grep topology "$work/out.txt")"
        return
    fi
    local next=0 rows=0 s b e
    while read -r s range _; do
        b="${range%-*}"
        e="${range#*-}"
        if [[ "$s" != "$rows" || "$b" != "$next" || "$e" -lt "$b" ]]; then
            record_failure "$title" "stage row '$s $range' does not continue at layer $next"
            return
        fi
        next=$((e + 1))
        rows=$((rows + 1))
    done < <(grep -E '^ +[0-9]+ +[0-9]+-[0-9]+ ' "$work/out.txt")
    if [[ $rows -ne $stages || $next -ne $layers ]]; then
        record_failure "$title" "$rows stage rows covering $next layers, expected $stages rows covering $layers"
        return
    fi
    for needle in "per token forward" "per mask step" "largest rank"; do
        if ! grep -qF "$needle" "$work/out.txt"; then
            record_failure "$title" "output lacks '$needle'"
            return
        fi
    done
    echo "ok [$title]: $(grep -E '^topology' "$work/out.txt")"
}

# the pipeline cases below plan the mask phase of the former 64-rank layout of this config (4 stages
# x 16 replicas, 4 micro-batches, 64 sequences a step, no recovery)
seven=(--config configs/llama2-7b-50.ini --model-config configs/shapes/llama-2-7b.json --set recover.method=none
    --set parallel.stages=4 --set parallel.micro_batches=4 --set schedule.batch_size=64 --set reconstruct.batch=16
    --set data.max_sequences=0 --set parallel.threads=1)
check_plan "7B on 8 ranks" 32 4 "${seven[@]}" --ranks 8
check_plan "7B on 16 ranks" 32 4 "${seven[@]}" --ranks 16
check_plan "7B on 64 ranks" 32 4 "${seven[@]}" --ranks 64
check_plan "7B, --stages 8" 32 8 "${seven[@]}" --ranks 64 --stages 8
check_plan "7B, automatic stages" 32 8 "${seven[@]}" --ranks 64 --set parallel.stages=0
check_plan "7B, one stage per layer" 32 32 "${seven[@]}" --ranks 32 --stages 32 --set parallel.micro_batches=0
check_plan "13B on 64 ranks" 40 8 --config configs/llama2-13b-50.ini --model-config configs/shapes/llama-2-13b.json \
    --ranks 64

# the memory warning, and the teacher cache when its size is known
"$VT_BIN" plan "${seven[@]}" --ranks 64 --memory-per-rank 1G --calib-sequences 100 > "$work/out.txt"
grep -qE "^warning: 4 of 4 stages need more than --memory-per-rank 1.00 GiB per rank \(stage [0-3]: " "$work/out.txt" ||
    record_failure "memory warning" "no warning for 4 stages over 1 GiB: $(grep warning "$work/out.txt")"
grep -qF "100 calibration sequences x 8.00 MiB = 800.39 MiB cached, sharded over the 16 replicas' last-stage ranks" "$work/out.txt" ||
    record_failure "teacher cache" "no teacher cache line for 100 sequences"
"$VT_BIN" plan "${seven[@]}" --ranks 64 --memory-per-rank 1T > "$work/out.txt"
if grep -q "^warning" "$work/out.txt"; then record_failure "no memory warning" "a warning under 1 TiB per rank"; fi

# the re-fit after training ([reconstruct]): its widest system (LLaMA-2-7B's FFN, with the gate/up
# outputs) and memory; none with reconstruct.method = none
"$VT_BIN" plan "${seven[@]}" --ranks 64 --gflops-per-rank 100 > "$work/out.txt"
grep -qE "^re-fit +reconstruct.method = lsq on 256 sequences \(batches of 16\) after training: up to [0-9.]+ GiB per rank .*widest system 11008 x 11008, 22016 outputs\); [0-9.]+ PFLOP in fp32 passes, [0-9.]+ PFLOP in fp64 sums and solves" "$work/out.txt" ||
    record_failure "re-fit" "no re-fit line: $(grep re-fit "$work/out.txt")"
"$VT_BIN" plan "${seven[@]}" --ranks 64 --set reconstruct.method=none > "$work/out.txt"
if grep -q "^re-fit" "$work/out.txt"; then record_failure "no re-fit" "a re-fit line with reconstruct.method = none"; fi

"$VT_BIN" plan "${seven[@]}" --ranks 64 --gflops-per-rank 100 > "$work/out.txt"
grep -qE "^time +at 100 GFLOP/s per rank \(1 thread\): [0-9.]+ s per mask step" "$work/out.txt" ||
    record_failure "times" "no time line at 100 GFLOP/s per rank: $(grep -A1 '^time' "$work/out.txt")"
grep -qE "^ +hours: teacher pass 0.00, mask phase [0-9.]+, re-fit [0-9.]+; [0-9.]+ hours for the run" "$work/out.txt" ||
    record_failure "phase hours" "no hours line: $(grep hours: "$work/out.txt")"

# the machine form: the shipped recipe on 1 node x 64 cores x 256 GiB takes the fastest layout that
# fits (4 ranks x 16 threads: 8 ranks would not fit, nor split the batch), under 8 hours, and its
# JSON parses with the fields; a node of 32 GiB fits nothing, and says so
machine=(--config configs/llama2-7b-50.ini --model-config configs/shapes/llama-2-7b.json --cores-per-node 64)
"$VT_BIN" plan "${machine[@]}" --memory-per-node 256G > "$work/out.txt" ||
    record_failure "machine plan" "exit code non-zero"
grep -qE "^layout +4 ranks x 16 threads \(1 stage x 4 replicas\): the fastest that fits; up to [0-9.]+ GiB per rank" \
    "$work/out.txt" || record_failure "machine layout" "$(grep '^layout' "$work/out.txt")"
grep -qF "87.9 GFLOP/s per core: the Faster-VTrans step at -n 1" "$work/out.txt" ||
    record_failure "stated speed" "no measured per-core rate named: $(grep '^speed' "$work/out.txt")"
grep -qE "Adam moments: lora rank 12 on q,k,v,o,gate,up,down, 29.98 M adapter parameters: 228.75 MiB; full fine-tuning, 3.24 B kept weights: 24.13 GiB; lora's 0.93% of full's" "$work/out.txt" ||
    record_failure "recovery state" "$(grep -A1 '^recovery' "$work/out.txt")"
# check_json TITLE PYTHON-CONDITION ARGS...: plan --json prints one object for which the condition
# (on `o`) holds
check_json() {
    local title="$1" cond="$2"
    shift 2
    if ! "$VT_BIN" plan "$@" --json > "$work/out.json" 2> "$work/err.txt"; then
        record_failure "$title" "exit code non-zero: $(cat "$work/err.txt")"
        return
    fi
    if ! python3 -c "import json, sys; o = json.load(open(sys.argv[1])); sys.exit(0 if ($cond) else 1)" \
        "$work/out.json"; then
        record_failure "$title" "'$cond' does not hold for $(tr -d '\n' < "$work/out.json")"
        return
    fi
    echo "ok [$title]"
}
fields='all(k in o for k in ("hours", "fits", "max_rank_gib", "ranks", "threads_per_rank", "stages", "replicas",
    "micro_batches", "mask_step_seconds", "recover_step_seconds", "phase_hours"))'
check_json "machine JSON" "$fields and o['fits'] is True and o['ranks'] == 4 and o['threads_per_rank'] == 16 and \
o['hours'] < 8 and o['max_rank_gib'] * 4 <= 256 and abs(sum(o['phase_hours'].values()) - o['hours']) < 1e-3 and \
o['lora_adam_bytes'] < 0.01 * o['full_adam_bytes']" "${machine[@]}" --memory-per-node 256G
check_json "nothing fits" "$fields and o['fits'] is False and o['max_rank_gib'] * o['ranks'] > 32" "${machine[@]}" \
    --memory-per-node 32G
"$VT_BIN" plan "${machine[@]}" --memory-per-node 32G > "$work/out.txt"
grep -qF "NOTHING FITS; the smallest shown" "$work/out.txt" || record_failure "nothing fits, text" "$(grep '^layout' "$work/out.txt")"
check_json "ranks form JSON" "$fields and o['fits'] is None and o['ranks'] == 64 and o['stages'] == 4" "${seven[@]}" \
    --ranks 64
check_json "ranks form over memory" "o['fits'] is False" "${seven[@]}" --ranks 64 --memory-per-rank 1G
expect_error "ranks and a machine" "give either --ranks P or the machine" -- plan "${machine[@]}" --ranks 4 \
    --memory-per-node 256G
expect_error "machine without memory" "--memory-per-node" -- plan "${machine[@]}"

# check_pipeline TITLE LINE ARGS...: plan exits 0 and its pipeline line is LINE (after "pipeline").
check_pipeline() {
    local title="$1" want="$2" got
    shift 2
    if ! "$VT_BIN" plan "$@" > "$work/out.txt" 2> "$work/err.txt"; then
        record_failure "$title" "exit code non-zero: $(cat "$work/err.txt")"
        return
    fi
    got=$(sed -n 's/^pipeline  *//p' "$work/out.txt")
    if [[ "$got" != "$want" ]]; then
        record_failure "$title" "pipeline line '$got', expected '$want'"
        return
    fi
    echo "ok [$title]: $got"
}

# sequence chunks: automatic at 64 ranks (4 single-sequence micro-batches per replica: 2 chunks of
# 256 tokens, the fewest tokens of an automatic chunk, bubble 3/11), requested, off, not needed when
# the micro-batches alone bring the bubble to 10%, and not applicable with micro-batches of 8
# sequences or sequences too short for 2 chunks of 256 tokens
check_pipeline "automatic chunks" "GPipe, 4 micro-batches of 1 sequence in 2 chunks of 256 tokens per replica and \
step (parallel.micro_batches; automatic chunks); bubble 27% of the layers' forward and backward" "${seven[@]}" --ranks 64
grep -qE '^ +4 x 16 +[0-9.]+ GiB +27\.3% +4 x 2 chunks +<- this plan$' "$work/out.txt" ||
    record_failure "layouts with chunks" "no '4 x 2 chunks' row for this plan: $(grep -F '<- this plan' "$work/out.txt")"
check_pipeline "requested chunks" "GPipe, 4 micro-batches of 1 sequence in 4 chunks of 128 tokens per replica and \
step (parallel.micro_batches, parallel.seq_chunks); bubble 16% of the layers' forward and backward" "${seven[@]}" --ranks 64 \
    --set parallel.seq_chunks=4
check_pipeline "chunks off" "GPipe, 4 micro-batches of 1 sequence per replica and step (parallel.micro_batches; no \
chunks: parallel.seq_chunks = 1); bubble 43% of the layers' forward and backward" "${seven[@]}" --ranks 64 --set parallel.seq_chunks=1
check_pipeline "chunks, automatic micro-batches" "GPipe, 8 micro-batches of 1 sequence in 2 chunks of 256 tokens per \
replica and step (automatic); bubble 30% of the layers' forward and backward" "${seven[@]}" --ranks 64 --stages 8 --set parallel.micro_batches=0
check_pipeline "no chunks needed" "GPipe, 64 micro-batches of 1 sequence per replica and step (automatic; no chunks: \
the micro-batches bring the bubble to 10% or less); bubble 2% of the layers' forward and backward" "${seven[@]}" --ranks 2 --stages 2 \
    --set parallel.micro_batches=0
check_pipeline "no chunk of 256 tokens" "GPipe, 4 micro-batches of 1 sequence per replica and step \
(parallel.micro_batches; no chunks: none of 256 tokens or more divides a sequence); bubble 43% of the layers' forward and backward" \
    "${seven[@]}" --ranks 64 --set data.seq_len=384
check_pipeline "no chunks for 8-sequence micro-batches" "GPipe, 4 micro-batches of 8 sequences per replica and step \
(parallel.micro_batches; no chunks: they need micro-batches of one sequence); bubble 43% of the layers' forward and backward" "${seven[@]}" \
    --ranks 8

expect_error "chunks of 8-sequence micro-batches" \
    "parallel.seq_chunks = 2 needs micro-batches of one sequence, not 8" -- \
    plan "${seven[@]}" --ranks 8 --set parallel.seq_chunks=2
expect_error "chunks not dividing the sequence" "parallel.seq_chunks = 3 does not divide data.seq_len = 512" -- \
    plan "${seven[@]}" --ranks 64 --set parallel.seq_chunks=3
expect_error "negative chunks" "parallel.seq_chunks must be at least 0" -- plan "${seven[@]}" --ranks 64 --set parallel.seq_chunks=-1
expect_error "6 ranks in 4 stages" "6 ranks cannot form 4 pipeline stages" -- plan "${seven[@]}" --ranks 6 --stages 4
expect_error "more stages than layers" "cannot split 32 layers into 64 stages" -- plan "${seven[@]}" --ranks 64 --stages 64
expect_error "batch over replicas" "schedule.batch_size 64 does not split evenly over 3" -- plan "${seven[@]}" --ranks 12
expect_error "no checkpoint here" "pass --model-config" -- plan --config configs/llama2-7b-50.ini --ranks 4
expect_error "missing --ranks" "--ranks" -- plan "${seven[@]}"
# the recovery over 4 stages: each rank holds its stage's layers of both models (and rank 0 the
# whole adapter state it gathers for checkpoints), a step at the 2 replicas' rate
"$VT_BIN" plan "${seven[@]}" --ranks 8 --set recover.method=lora --gflops-per-rank 50 > "$work/out.txt" ||
    record_failure "recovery over stages" "exit code non-zero"
grep -qE "^recovery +recover.method = lora, [0-9]+ steps of [0-9]+ sequences: [0-9.]+ GiB per rank" "$work/out.txt" ||
    record_failure "recovery over stages" "$(grep -A1 '^recovery' "$work/out.txt")"
expect_error "bad size" "--memory-per-rank" -- plan "${seven[@]}" --ranks 8 --memory-per-rank lots

finish
