# shellcheck shell=bash
# mpirun-end.sh — sourced by scripts/kill-storm and scripts/rank-failures: after a kill, wait for
# the ranks, then for mpirun, and tell a rank that hangs (vtrans-dist's fault) from an mpirun that
# stays after every rank has ended (Open MPI's launcher; seen when a rank dies while it starts).
now_ms() { date +%s%3N; }

# wait_ranks PATTERN LIMIT_MS: waits until no process matches PATTERN (pgrep -f) or LIMIT_MS pass;
# prints the milliseconds waited, returns 1 when ranks still run at the limit (then kills them).
wait_ranks() {
  local t0 took
  t0=$(now_ms)
  while pgrep -f "$1" >/dev/null && (( $(now_ms) - t0 < $2 )); do sleep 0.1; done
  took=$(( $(now_ms) - t0 ))
  echo "$took"
  pgrep -f "$1" >/dev/null || return 0
  pkill -9 -f "$1"
  return 1
}

# wait_launcher PID: waits up to 30 s for mpirun PID, which has no rank left; returns 1 (and kills
# it) when it is still there, an Open MPI launcher hang rather than a hung rank.
wait_launcher() {
  if timeout 30 tail --pid="$1" -f /dev/null; then wait "$1" 2>/dev/null; return 0; fi
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 1
}

# retime REF: the run's duration follows the machine's load (a background job at nice 19 more than
# doubled it here), and a moment past the end kills nothing, so the scripts time an uninterrupted
# run again every 10 kills: `prune` (the caller's) into $work/retime, timed into run_ms and
# appended to durations; its output must equal REF's (same_output, the caller's).
retime() {
  local t0
  t0=$(now_ms)
  prune "$work/retime" >"$work/retime.log" 2>&1 ||
    { tail "$work/retime.log"; echo "$(basename "$0"): an uninterrupted prune failed"; exit 1; }
  run_ms=$(( $(now_ms) - t0 ))
  durations+=("$run_ms")
  same_output "$1" "$work/retime" || { echo "$(basename "$0"): two uninterrupted prunes differ"; exit 1; }
  rm -rf "$work/retime" "$work/retime.run"
}
