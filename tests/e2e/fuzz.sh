#!/usr/bin/env bash
# The fuzz targets of tests/fuzz build (clang, libFuzzer, ASan + UBSan) and each runs a few
# seconds from its seed corpus (which holds the inputs of past findings) without a crash, a leak
# or an allocation over 128 MB (scripts/fuzz). The build lives in $VT_BUILD_DIR/fuzz and is reused;
# its first build takes minutes. Skips when clang or libFuzzer is not installed. Then
# scripts/fuzz-campaign: a last slice ending at the count, a continued campaign, a held target.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_command clang "install clang and libclang-rt-14-dev (scripts/install-deps)"
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$work/probe.c"
clang -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" 2>/dev/null || skip "clang has no libFuzzer here"
export VT_FUZZ_BUILD="${VT_BUILD_DIR:-$src/build}/fuzz"
"$src/scripts/fuzz" "${VT_FUZZ_SECONDS:-3}" || fail "a fuzz target crashed"

# scripts/fuzz-campaign: a campaign's last slice ends at its execution count (-runs), a second
# campaign continues from the logged slices, and a campaign refuses a target another one holds.
campaign() { VT_FUZZ_CAMPAIGN="$work/campaign" "$src/scripts/fuzz-campaign" "$@"; }
executions() { campaign report | awk -F' *\\| *' -v t="$1" '$2 == t {print $3}'; }
campaign 3000 60 fuzz_hf_config >"$work/c1.log" 2>&1 || { cat "$work/c1.log"; fail "the campaign to 3000 failed"; }
[ "$(executions fuzz_hf_config)" = 3000 ] || { campaign report; fail "the campaign did not end at 3000 executions"; }
campaign 5000 60 fuzz_hf_config >"$work/c2.log" 2>&1 || { cat "$work/c2.log"; fail "the campaign to 5000 failed"; }
[ "$(executions fuzz_hf_config)" = 5000 ] || { campaign report; fail "the continued campaign did not end at 5000"; }
[ "$(grep -c ' fuzz_hf_config rc=0 ' "$work/campaign/slices.txt")" = 2 ] || fail "not one slice per campaign"
exec {held}>"$work/campaign/locks/fuzz_hf_config"
flock -n "$held" || fail "could not take the campaign's lock"
set +e
campaign 9000 60 fuzz_hf_config >"$work/c3.log" 2>&1
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "another campaign is fuzzing fuzz_hf_config" "$work/c3.log" ||
  { cat "$work/c3.log"; fail "a held target: exit $rc, expected 2 with a message"; }
[ "$(executions fuzz_hf_config)" = 5000 ] || fail "a refused campaign ran"
finish
