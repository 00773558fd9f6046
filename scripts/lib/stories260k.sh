# stories260k.sh — sourced by scripts/results-stories260k and scripts/recipe-study-stories260k: the
# binary, the fixtures, the work directory and one timed prune run on stories260K.
cd "$(dirname "$0")/.."
bin=${VT_BIN:-build/vtrans-dist}
[ -n "${VT_BIN:-}" ] || scripts/build build >/dev/null
export BLIS_NUM_THREADS=${BLIS_NUM_THREADS:-1} OMP_NUM_THREADS=1
fx=${VT_FIXTURES:-../shared/fixtures}
[ -f "$fx/stories260K/stories260K.bin" ] || { echo "$(basename "$0"): needs the fixtures in $fx" >&2; exit 1; }
work=${VT_RESULTS_DIR:-$(mktemp -d)}
mkdir -p "$work"
sets=(--set "model.path=$fx/stories260K/stories260K.bin" --set "model.tokenizer=$fx/stories260K/tok512.bin"
      --set "data.calib=$fx/tinystories/calib.txt" --set "data.eval=$fx/tinystories/eval.txt")
# prune_run OUT CONFIG [--set k=v ...]: one prune into OUT, its output in OUT.log, its process's
# wall, user and system seconds in OUT.time, the load average before and after in OUT.load
# (the machine may be shared: CPU time is the fairer figure) and the commit the tree was at in
# OUT.commit ("-dirty" with uncommitted changes; the binary is built from the tree).
prune_run() {
  local out=$1 cfg=$2
  shift 2
  rm -rf "$out" "$out.run"
  cut -d' ' -f1 /proc/loadavg > "$out.load"
  { git rev-parse --short HEAD 2>/dev/null || echo unknown; } | tr -d '\n' > "$out.commit"
  git diff --quiet HEAD 2>/dev/null || echo -n "-dirty" >> "$out.commit"
  /usr/bin/time -f '%e %U %S' -o "$out.time" $bin prune --config "$cfg" "${sets[@]}" "$@" --set "output.dir=$out" \
    </dev/null >"$out.log" 2>&1 || { echo "$(basename "$0"): $out failed; see $out.log" >&2; tail -5 "$out.log" >&2; return 1; }
  cut -d' ' -f1 /proc/loadavg >> "$out.load"
}
