# shellcheck shell=bash
# storm.sh — sourced by scripts/kill-storm and scripts/rank-failures (with $root set): the binary,
# the fixtures, Open MPI's settings, the work directory, and the small stories260K prune both kill
# (storm_prune_args, storm_cmd).
me=$(basename "$0")
bin=$(realpath "${VT_BIN:-$root/build/vtrans-dist}")
fx=$(realpath "${VT_FIXTURES:-$root/../shared/fixtures}")
[ -x "$bin" ] || { echo "$me: $bin not built (scripts/build build)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
work=$(mktemp -d "${TMPDIR:-/tmp}/$me.XXXXXX")
[ -n "${VT_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
cd "$root" || exit 2

# storm_prune_args STEPS LOG_INTERVAL: sets prune_args, a stories260K prune at 50% in 2 pipeline
# stages with a checkpoint every 4 steps (output.dir and run.dir are the caller's).
storm_prune_args() {
  prune_args=(--config configs/stories260k-50.ini --set "model.path=$fx/stories260K/stories260K.bin"
    --set "model.tokenizer=$fx/stories260K/tok512.bin" --set "data.calib=$fx/tinystories/calib.txt"
    --set data.eval= --set data.seq_len=32 --set data.max_sequences=64 --set "schedule.steps=$1"
    --set schedule.batch_size=4 --set "schedule.log_interval=$2" --set run.checkpoint_steps=4
    --set parallel.stages=2 --set output.overwrite=false)
}

# storm_cmd RANKS OUT: sets cmd, mpirun of that prune into OUT (run directory OUT.run, the
# default, named for the reader), run as `timeout S "${cmd[@]}"` or as `"${cmd[@]}" &` when $! must
# be mpirun itself.
storm_cmd() { cmd=(mpirun -n "$1" "$bin" prune "${prune_args[@]}" --set "output.dir=$2" --set "run.dir=$2.run"); }
