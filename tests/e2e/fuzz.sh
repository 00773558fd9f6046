#!/usr/bin/env bash
# The fuzz targets of tests/fuzz build (clang, libFuzzer, ASan + UBSan) and each runs a few
# seconds from its seed corpus (which holds the inputs of past findings) without a crash, a leak
# or an allocation over 128 MB (scripts/fuzz). The build lives in $VT_BUILD_DIR/fuzz and is reused;
# its first build takes minutes. Skips when clang or libFuzzer is not installed.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_command clang "install clang and libclang-rt-14-dev (scripts/install-deps)"
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$work/probe.c"
clang -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" 2>/dev/null || skip "clang has no libFuzzer here"
VT_FUZZ_BUILD="${VT_BUILD_DIR:-$src/build}/fuzz" "$src/scripts/fuzz" "${VT_FUZZ_SECONDS:-3}" || fail "a fuzz target crashed"
