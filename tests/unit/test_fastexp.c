/* test_fastexp.c — the vectorised exp: accurate on [-87, 0], and a NaN input (a diverged model, a
 * hostile checkpoint: found by tests/fuzz/fuzz_train_ckpt) gives NaN without undefined behaviour. */
#include <math.h>

#include "testutil.h"
#include "util/fastexp.h"

static void test_accuracy(void **st) {
    (void)st;
    float x[1000], want[1000];
    for (int i = 0; i < 1000; i++) {
        x[i] = -87.0f * (float)i / 999.0f;
        want[i] = expf(x[i]);
    }
    vt_exp_nonpositive(x, 1000);
    for (int i = 0; i < 1000; i++) assert_true(fabsf(x[i] - want[i]) <= 1e-6f * want[i]);
}

static void test_nan_stays_nan(void **st) {
    (void)st;
    float x[4] = {NAN, -1.0f, -NAN, 0.0f};
    vt_exp_nonpositive(x, 4);
    assert_true(isnan(x[0]));
    assert_true(isnan(x[2]));
    assert_true(fabsf(x[1] - expf(-1.0f)) < 1e-7f);
    assert_true(x[3] == 1.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_accuracy), cmocka_unit_test(test_nan_stays_nan)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
