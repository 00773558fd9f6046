#!/usr/bin/env bash
# plan.sh — `vtrans-dist plan` sizes LLaMA-2-7B and 13B runs from the shipped shapes without any
# checkpoint: a line per stage covering every layer once, and impossible layouts refused.
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

seven=(--config configs/llama2-7b-50.ini --model-config configs/shapes/llama-2-7b.json)
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

expect_error "6 ranks in 4 stages" "6 ranks cannot form 4 pipeline stages" -- plan "${seven[@]}" --ranks 6 --stages 4
expect_error "more stages than layers" "cannot split 32 layers into 64 stages" -- plan "${seven[@]}" --ranks 64 --stages 64
expect_error "batch over replicas" "schedule.batch_size 64 does not split evenly over 3" -- plan "${seven[@]}" --ranks 12
expect_error "no checkpoint here" "pass --model-config" -- plan --config configs/llama2-7b-50.ini --ranks 8
expect_error "missing --ranks" "--ranks" -- plan "${seven[@]}"
expect_error "bad size" "--memory-per-rank" -- plan "${seven[@]}" --ranks 8 --memory-per-rank lots

finish
