/* test_spd_solve_ridge.c — the ridge policy of the re-fit's SPD solves (src/dist/spd_solve.c)
 * with a fake solver: lambda relative to the mean diagonal, 10x per retry and a message for each,
 * bounded tries, errors passed on and bad input refused. The ScaLAPACK solver itself is
 * tests/mpi/test_spd_solve.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dist/spd_solve.h"
#include "util/error.h"
#include "testutil.h"

/* Fails (minor 2) while the ridge is below `passes_at`; -1 when `broken`; on success b = b / ridge. */
typedef struct {
    double passes_at;
    int broken, calls;
    double ridges[16];
} fake;

static int fake_solve(vt_spd_solver *s, const double *g, size_t n, double ridge, double *b, size_t m) {
    fake *f = s->impl;
    f->ridges[f->calls++ % 16] = ridge;
    if (f->broken)
        return vt_fail("fake solver broken");
    if (ridge < f->passes_at)
        return 2;
    for (size_t i = 0; i < n * m; i++)
        b[i] /= ridge;
    return 0;
}

static int warnings;
static char last_warning[256];
static void count_warning(void *ctx, const char *message) {
    (void)ctx;
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", message);
}

/* diag 2, 4, 6: mean 4 */
static const double G[9] = {2, 0.5, 0.1, 0.5, 4, 0.2, 0.1, 0.2, 6};

static void test_first_try(void **state) {
    (void)state;
    fake f = {.passes_at = 0};
    vt_spd_solver s = {.impl = &f, .solve = fake_solve};
    double b[3] = {1, 2, 3};
    vt_spd_request r = {.name = "layer 1 o_proj", .damp = 1e-2, .warn = count_warning};
    vt_spd_outcome out;
    warnings = 0;
    assert_int_equal(vt_spd_solve_ridge(&s, &r, G, 3, b, 1, &out), 0);
    assert_int_equal(f.calls, 1);
    assert_int_equal(out.retries, 0);
    assert_true(fabs(out.lambda - 0.04) < 1e-15);
    assert_true(fabs(b[2] - 3 / 0.04) < 1e-9);
    assert_int_equal(warnings, 0);
}

static void test_retries_then_passes(void **state) {
    (void)state;
    fake f = {.passes_at = 3};
    vt_spd_solver s = {.impl = &f, .solve = fake_solve};
    double b[3] = {1, 2, 3};
    vt_spd_request r = {.name = "layer 1 o_proj", .damp = 1e-2, .warn = count_warning};
    vt_spd_outcome out;
    warnings = 0;
    assert_int_equal(vt_spd_solve_ridge(&s, &r, G, 3, b, 1, &out), 0);
    assert_int_equal(f.calls, 3); /* 0.04, 0.4, 4 */
    assert_int_equal(out.retries, 2);
    assert_true(fabs(out.lambda - 4) < 1e-12 && fabs(f.ridges[1] - 0.4) < 1e-15);
    assert_int_equal(warnings, 2);
    assert_non_null(strstr(last_warning, "layer 1 o_proj"));
    assert_non_null(strstr(last_warning, "retrying with ridge 4 (try 3 of 4)"));
}

static void test_gives_up(void **state) {
    (void)state;
    fake f = {.passes_at = 1e9};
    vt_spd_solver s = {.impl = &f, .solve = fake_solve};
    double b[3] = {1, 2, 3};
    vt_spd_request r = {.name = "layer 2 down_proj", .damp = 1e-2, .warn = count_warning};
    warnings = 0;
    assert_int_equal(vt_spd_solve_ridge(&s, &r, G, 3, b, 1, NULL), -1);
    assert_int_equal(f.calls, VT_SPD_MAX_TRIES);
    assert_int_equal(warnings, VT_SPD_MAX_TRIES - 1);
    assert_non_null(strstr(vt_error(), "layer 2 down_proj"));
    assert_non_null(strstr(vt_error(), "not positive definite (leading minor 2)"));
    assert_true(b[0] == 1 && b[2] == 3);
    f.calls = 0;
    r.max_tries = 2;
    assert_int_equal(vt_spd_solve_ridge(&s, &r, G, 3, b, 1, NULL), -1);
    assert_int_equal(f.calls, 2);
    vt_error_clear();
}

static void test_errors(void **state) {
    (void)state;
    fake f = {.broken = 1};
    vt_spd_solver s = {.impl = &f, .solve = fake_solve};
    double b[3] = {1, 2, 3}, bad[9];
    vt_spd_request r = {.name = "layer 0 o_proj", .damp = 1e-2};
    assert_int_equal(vt_spd_solve_ridge(&s, &r, G, 3, b, 1, NULL), -1);
    assert_non_null(strstr(vt_error(), "layer 0 o_proj"));
    assert_non_null(strstr(vt_error(), "fake solver broken"));
    f = (fake){0};
    r.damp = 0;
    assert_int_equal(vt_spd_solve_ridge(&s, &r, G, 3, b, 1, NULL), -1);
    assert_non_null(strstr(vt_error(), "damp"));
    memcpy(bad, G, sizeof bad);
    bad[4] = NAN;
    r.damp = 1e-2;
    assert_int_equal(vt_spd_solve_ridge(&s, &r, bad, 3, b, 1, NULL), -1);
    assert_non_null(strstr(vt_error(), "not finite"));
    assert_int_equal(f.calls, 0);
    vt_error_clear();
}

static void test_zero_diagonal(void **state) {
    (void)state;
    double zero[4] = {0};
    assert_true(vt_spd_ridge(zero, 2, 1e-3) == 1e-3);
    assert_true(fabs(vt_spd_ridge(G, 3, 0.5) - 2) < 1e-15);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_try),   cmocka_unit_test(test_retries_then_passes),
        cmocka_unit_test(test_gives_up),    cmocka_unit_test(test_errors),
        cmocka_unit_test(test_zero_diagonal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
