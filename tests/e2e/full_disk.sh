#!/usr/bin/env bash
# A full disk loses nothing: with the run directory on a small tmpfs that fills during a checkpoint
# save, prune stops with an error naming the file and "No space left" / "disk full", the previous
# checkpoint stays intact and a resume (after space is freed) ends byte-identical to an
# uninterrupted run; with the output directory on a tmpfs that fills during the final write, prune
# fails with a clear error, leaves no output (not even a temporary directory) and the run resumes
# from its last checkpoint to the same result. Needs root to mount tmpfs (skips otherwise).
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_files "$fx/stories260K/stories260K.bin"
mnt="$work/mnt"
mkdir -p "$mnt/run" "$mnt/out"
mount -t tmpfs -o size=8m tmpfs "$mnt/run" 2>/dev/null || skip "mounting a tmpfs is not permitted here"
mount -t tmpfs -o size=8m tmpfs "$mnt/out" || { umount "$mnt/run"; fail "second tmpfs"; }
unmount() { umount "$mnt/run" "$mnt/out" 2>/dev/null; }
on_exit unmount
cd "$src"
export BLIS_NUM_THREADS=1
args=(--config configs/stories260k-50.ini --set "model.path=$fx/stories260K/stories260K.bin"
  --set "model.tokenizer=$fx/stories260K/tok512.bin" --set "data.calib=$fx/tinystories/calib.txt"
  --set data.eval= --set data.seq_len=32 --set data.max_sequences=32 --set schedule.steps=12
  --set schedule.batch_size=4 --set schedule.log_interval=0 --set run.checkpoint_steps=4
  --set output.overwrite=false)
prune() { "$VT_BIN" prune "${args[@]}" "$@"; }
# fill DIR BYTES: leaves about BYTES free on DIR's file system
fill() {
  rm -f "$1/filler"
  local avail
  avail=$(df --output=avail -B1 "$1" | tail -1)
  head -c $(( avail > $2 ? avail - $2 : 0 )) /dev/zero >"$1/filler" 2>/dev/null || true
}
same_models() {
  local f
  for f in $(cd "$1" && ls ./*.safetensors); do cmp -s "$1/$f" "$2/$f" || fail "$2/$f differs from the uninterrupted run's"; done
}

prune --set "output.dir=$work/ref" --set "run.dir=$work/ref.run" >/dev/null 2>"$work/ref.err" || { tail "$work/ref.err"; fail "reference run"; }
ck=$(du -sb "$work/ref.run/ckpt-00000012" | cut -f1)
model=$(du -sb "$work/ref" | cut -f1)
echo "full_disk: a checkpoint takes $ck bytes, the output $model"

# 1. the run directory fills during the second checkpoint's save
run="$mnt/run/r"
fill "$mnt/run" $(( ck * 3 / 2 + 16384 ))
set +e
prune --set "output.dir=$work/a" --set "run.dir=$run" >/dev/null 2>"$work/a.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "a full run directory was not an error"
grep -qiE "no space left|disk full" "$work/a.err" || { cat "$work/a.err"; fail "the error does not say the disk is full"; }
grep -q "$run" "$work/a.err" || { cat "$work/a.err"; fail "the error does not name the run directory's file"; }
[ ! -e "$work/a" ] || fail "an output directory exists after the failed save"
ls "$work" | grep -q '^a\.tmp-' && fail "a temporary output directory was left"
[ -f "$run/manifest.json" ] || fail "no manifest: the first checkpoint was lost"
rm -f "$mnt/run/filler"
prune --set "output.dir=$work/a" --set "run.dir=$run" --resume "$run" >/dev/null 2>"$work/a2.err" ||
  { tail "$work/a2.err"; fail "resume after the full run directory"; }
grep -q "^resume: .*ckpt-0000000[48]" "$work/a2.err" || { cat "$work/a2.err"; fail "did not resume from the saved checkpoint"; }
same_models "$work/ref" "$work/a"

# 2. the output directory fills during the final write
out="$mnt/out/model"
fill "$mnt/out" $(( model / 2 ))
set +e
prune --set "output.dir=$out" --set "run.dir=$work/b.run" >/dev/null 2>"$work/b.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "a full output disk was not an error"
grep -qiE "no space left|disk full" "$work/b.err" || { cat "$work/b.err"; fail "the error does not say the disk is full"; }
[ ! -e "$out" ] || fail "a partial output directory exists"
[ -z "$(ls "$mnt/out" | grep -v '^filler$')" ] || { ls -la "$mnt/out"; fail "the failed write left files in the output's directory"; }
[ -f "$work/b.run/manifest.json" ] || fail "no checkpoint to resume from"
rm -f "$mnt/out/filler"
prune --set "output.dir=$out" --set "run.dir=$work/b.run" --resume "$work/b.run" >/dev/null 2>"$work/b2.err" ||
  { tail "$work/b2.err"; fail "resume after the full output disk"; }
grep -q "^resume: .*ckpt-00000012" "$work/b2.err" || { cat "$work/b2.err"; fail "did not resume from the last checkpoint"; }
same_models "$work/ref" "$out"
echo "full_disk: ok"
