/* test_matmul.c — vt_sgemm against a double-precision triple loop on both of BLIS's code paths
 * (small-matrix and packed), every transpose, row strides wider than the rows, alpha and beta. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "matmul.h"

static float val(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 40) / (double)(1 << 24) - 0.5);
}

/* One product m x n x k with ta, tb; A, B, C stored with 3 spare floats per row. */
static void check(int m, int n, int k, int ta, int tb) {
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int lda = ac + 3, ldb = bc + 3, ldc = n + 3;
    float *a = malloc(sizeof(float) * (size_t)ar * lda), *b = malloc(sizeof(float) * (size_t)br * ldb);
    float *c = malloc(sizeof(float) * (size_t)m * ldc), *c0 = malloc(sizeof(float) * (size_t)m * ldc);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(c0);
    uint64_t s = (uint64_t)(m * 131 + n * 17 + k + ta * 7 + tb * 3);
    for (size_t i = 0; i < (size_t)ar * lda; i++) a[i] = val(&s);
    for (size_t i = 0; i < (size_t)br * ldb; i++) b[i] = val(&s);
    for (size_t i = 0; i < (size_t)m * ldc; i++) c[i] = c0[i] = val(&s);
    float alpha = 0.75f, beta = -0.5f;
    vt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            float got = c[(size_t)i * ldc + j];
            if (j >= n) { /* the spare columns stay untouched */
                assert_true(got == c0[(size_t)i * ldc + j]);
                continue;
            }
            double want = 0.0, mag = 0.0;
            for (int q = 0; q < k; q++) {
                double x = ta ? a[(size_t)q * lda + i] : a[(size_t)i * lda + q];
                double y = tb ? b[(size_t)j * ldb + q] : b[(size_t)q * ldb + j];
                want += x * y;
                mag += fabs(x * y);
            }
            want = alpha * want + beta * c0[(size_t)i * ldc + j];
            if (fabs(got - want) > 1e-5 * (mag + 1.0)) fail_msg("%dx%dx%d ta %d tb %d: C[%d,%d] = %g, want %g", m, n, k, ta, tb, i, j, got, want);
        }
    free(a);
    free(b);
    free(c);
    free(c0);
}

static void test_both_paths_every_transpose(void **state) {
    (void)state;
    int shapes[][3] = {{1, 70, 50}, {5, 33, 64}, {31, 40, 40}, {32, 32, 32}, {64, 96, 80}, {257, 48, 130}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) check(shapes[i][0], shapes[i][1], shapes[i][2], ta, tb);
}

/* The path by shape: small-matrix only when a dimension is under the threshold. */
static void test_path_choice(void **state) {
    (void)state;
    int t = VT_MATMUL_SUP_BELOW;
    assert_true(vt_sgemm_uses_sup(1, 4096, 4096));
    assert_true(vt_sgemm_uses_sup(t - 1, 4096, 4096));
    assert_true(vt_sgemm_uses_sup(256, t - 1, 4096));
    assert_true(vt_sgemm_uses_sup(256, 4096, t - 1));
    assert_false(vt_sgemm_uses_sup(t, t, t));
    assert_false(vt_sgemm_uses_sup(256, 12288, 4096));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_paths_every_transpose),
        cmocka_unit_test(test_path_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
