/* test_llama2c_header.c — a llama2.c header is checked against the file's size before anything is
 * allocated from it: 28 bytes claiming 16 million layers fail at once, naming the size they need
 * (fuzz_llama2c found such a header spending 30 s and 200 MB on per-layer shapes). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "io/llama2c_bin.h"
#include "testutil.h"
#include "util/error.h"

static void write_header(const char *path, const int32_t h[7]) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(h, 4, 7, f), 7);
    assert_int_equal(fclose(f), 0);
}

static void test_huge_layer_count_fails_fast(void **st) {
    (void)st;
    const int32_t h[7] = {64, 172, 1 << 24, 8, 4, 512, 512};
    const char *path = tu_in_dir("huge.bin");
    write_header(path, h);
    vt_config c;
    clock_t t0 = clock();
    assert_int_equal(vt_llama2c_read_config(path, &c), -1);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    print_message("  %s (%.3f s)\n", vt_error(), secs);
    assert_non_null(strstr(vt_error(), "16777216 layers"));
    assert_non_null(strstr(vt_error(), "but the file has 28"));
    assert_true(secs < 0.05); /* nothing per layer: no 16M-entry array allocated and checked */
}

/* vocab_size < 0 means an untied classifier; INT32_MIN has no positive counterpart and is refused
 * (fuzz_llama2c: negating it was undefined). */
static void test_vocab_int_min_refused(void **st) {
    (void)st;
    const int32_t h[7] = {64, 172, 5, 8, 4, INT32_MIN, 512};
    const char *path = tu_in_dir("intmin.bin");
    write_header(path, h);
    vt_config c;
    assert_int_equal(vt_llama2c_read_config(path, &c), -1);
    assert_non_null(strstr(vt_error(), "bad header: vocab_size = -2147483648"));
}

/* The size is checked first, the per-layer shapes after: an odd head_dim in a file of the right
 * size is still refused by the configuration's own check. */
static void test_validation_still_applies(void **st) {
    (void)st;
    const int32_t h[7] = {6, 4, 1, 2, 2, 3, 2}; /* head_dim 3: odd */
    const char *path = tu_in_dir("odd.bin");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(h, 4, 7, f), 7);
    /* embed 3x6, rms 6, wq/wk/wv/wo 36 each, rms_ffn 6, w1/w2/w3 24 each, final 6, freqs 2x3 */
    size_t floats = 18 + 6 + 4 * 36 + 6 + 3 * 24 + 6 + 6;
    float zero[512] = {0};
    assert_int_equal(fwrite(zero, 4, floats, f), floats);
    assert_int_equal(fclose(f), 0);
    vt_config c;
    assert_int_equal(vt_llama2c_read_config(path, &c), -1);
    print_message("  %s\n", vt_error());
    assert_non_null(strstr(vt_error(), "head_dim 3 must be even"));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_huge_layer_count_fails_fast),
                                       cmocka_unit_test(test_vocab_int_min_refused),
                                       cmocka_unit_test(test_validation_still_applies)};
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
