/* test_matmul.c — vt_sgemm against a double-precision triple loop on both of BLIS's code paths
 * (small-matrix and packed), every transpose, row strides wider than the rows, alpha and beta; and
 * products through weights packed once for the micro-kernel (vt_pack, vt_sgemm_packed), held in
 * fp32 or in a 16-bit type (the same products, bit for bit). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/matmul.h"
#include "util/rng.h"

static float val(uint64_t *s) {
    vt_lcg64(s);
    return (float)((double)(*s >> 40) / (double)(1 << 24) - 0.5);
}

/* Compares c[m, ldc] with alpha op(A) op(B) + beta c0 in double precision; the spare columns
 * (n..ldc) must be untouched. */
static void expect_product(const float *c, const float *c0, int m, int n, int k, int ldc, int ta, int tb,
                           const float *a, int lda, const float *b, int ldb, float alpha, float beta,
                           const char *what) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            float got = c[(size_t)i * ldc + j];
            if (j >= n) {
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
            if (fabs(got - want) > 1e-5 * (mag + 1.0))
                fail_msg("%s %dx%dx%d ta %d tb %d: C[%d,%d] = %g, want %g", what, m, n, k, ta, tb, i, j, got, want);
        }
}

static float *random_floats(size_t n, uint64_t *s) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = val(s);
    return p;
}

/* One product m x n x k with ta, tb; A, B, C stored with 3 spare floats per row. */
static void check(int m, int n, int k, int ta, int tb) {
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int lda = ac + 3, ldb = bc + 3, ldc = n + 3;
    uint64_t s = (uint64_t)(m * 131 + n * 17 + k + ta * 7 + tb * 3);
    float *a = random_floats((size_t)ar * lda, &s), *b = random_floats((size_t)br * ldb, &s);
    float *c = random_floats((size_t)m * ldc, &s), *c0 = malloc(sizeof(float) * (size_t)m * ldc);
    assert_non_null(c0);
    memcpy(c0, c, sizeof(float) * (size_t)m * ldc);
    float alpha = 0.75f, beta = -0.5f;
    vt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    expect_product(c, c0, m, n, k, ldc, ta, tb, a, lda, b, ldb, alpha, beta, "vt_sgemm");
    free(a);
    free(b);
    free(c);
    free(c0);
}

/* The same product through a packed weight: B = W^T for W[n, k] (trans 1) or W[k, n] (trans 0),
 * A and C with 5 spare floats per row; beta 0 must ignore what C held (NaN here). */
static void check_packed(int m, int n, int k, int trans, float beta) {
    int lda = k + 5, ldc = n + 5;
    uint64_t s = (uint64_t)(m * 7 + n * 31 + k * 3 + trans);
    float *a = random_floats((size_t)m * lda, &s), *w = random_floats((size_t)n * k, &s);
    float *c = random_floats((size_t)m * ldc, &s), *c0 = malloc(sizeof(float) * (size_t)m * ldc);
    assert_non_null(c0);
    if (beta == 0.0f)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = NAN;
    memcpy(c0, c, sizeof(float) * (size_t)m * ldc);
    vt_packed p;
    assert_int_equal(vt_pack(&p, w, k, n, trans, VT_F32), 0);
    assert_int_equal(p.k, k);
    assert_int_equal(p.n, n);
    assert_true(vt_packed_use(&p, m) == !vt_sgemm_uses_sup(m, n, k));
    vt_sgemm_packed(m, a, lda, &p, beta, c, ldc);
    if (beta == 0.0f)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c0[(size_t)i * ldc + j] = 0.0f;
    expect_product(c, c0, m, n, k, ldc, 0, trans, a, lda, w, trans ? k : n, 1.0f, beta, "vt_sgemm_packed");
    vt_packed_free(&p);
    assert_null(p.data);
    free(a);
    free(w);
    free(c);
    free(c0);
}

/* Shapes that cross every block edge of the packed path: rows past one block of A (2 x MC) and
 * not a multiple of MR, columns not a multiple of NR, depth past one KC block and not a multiple. */
static void test_packed_weights(void **state) {
    (void)state;
    int shapes[][3] = {{1, 17, 9}, {7, 16, 256}, {40, 33, 257}, {300, 50, 600}, {611, 19, 70}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int trans = 0; trans < 2; trans++) {
            check_packed(shapes[i][0], shapes[i][1], shapes[i][2], trans, 0.0f);
            check_packed(shapes[i][0], shapes[i][1], shapes[i][2], trans, 1.0f);
            check_packed(shapes[i][0], shapes[i][1], shapes[i][2], trans, -0.5f);
        }
}

/* W rounded to t (as a 16-bit checkpoint's weights load) packed in t: half the bytes, and every
 * output bit equal to the fp32 pack of the same W; a W not exact in t is packed in fp32. */
static void check_packed_16(int m, int n, int k, int trans, vt_dtype t) {
    int lda = k + 5, ldc = n + 5;
    uint64_t s = (uint64_t)(m * 5 + n * 13 + k * 11 + trans);
    float *a = random_floats((size_t)m * lda, &s), *w = random_floats((size_t)n * k, &s);
    float *c32 = random_floats((size_t)m * ldc, &s), *c16 = malloc(sizeof(float) * (size_t)m * ldc);
    assert_non_null(c16);
    vt_packed p32, p16;
    assert_int_equal(vt_pack(&p16, w, k, n, trans, t), 0); /* random fp32 values: not exact in t */
    assert_int_equal(p16.dtype, VT_F32);
    vt_packed_free(&p16);
    for (size_t i = 0; i < (size_t)n * k; i++)
        w[i] = t == VT_BF16 ? vt_bf16_to_f32(vt_f32_to_bf16(w[i])) : vt_f16_to_f32(vt_f32_to_f16(w[i]));
    memcpy(c16, c32, sizeof(float) * (size_t)m * ldc);
    assert_int_equal(vt_pack(&p32, w, k, n, trans, VT_F32), 0);
    assert_int_equal(vt_pack(&p16, w, k, n, trans, t), 0);
    assert_int_equal(p16.dtype, t);
    assert_int_equal(p16.bytes * 2, p32.bytes);
    assert_int_equal(p16.bytes, vt_packed_bytes(k, n, t));
    vt_sgemm_packed(m, a, lda, &p32, -0.5f, c32, ldc);
    vt_sgemm_packed(m, a, lda, &p16, -0.5f, c16, ldc);
    if (memcmp(c32, c16, sizeof(float) * (size_t)m * ldc))
        fail_msg("%s pack %dx%dx%d trans %d: the product differs from the fp32 pack's", vt_dtype_name(t), m, n, k,
                 trans);
    vt_packed_free(&p32);
    vt_packed_free(&p16);
    free(a);
    free(w);
    free(c32);
    free(c16);
}

/* The view of pack(W, k, n, trans) as its transpose (vt_pack_transposed) multiplies like
 * pack(W, n, k, !trans), bit for bit, in fp32 and in 16 bits. */
static void check_transposed(int m, int n, int k, int trans, vt_dtype t) {
    int lda = n + 3, ldc = k + 3;
    uint64_t s = (uint64_t)(m * 3 + n * 19 + k * 23 + trans);
    float *a = random_floats((size_t)m * lda, &s), *w = random_floats((size_t)n * k, &s);
    float *c1 = random_floats((size_t)m * ldc, &s), *c2 = malloc(sizeof(float) * (size_t)m * ldc);
    assert_non_null(c2);
    for (size_t i = 0; i < (size_t)n * k && t != VT_F32; i++)
        w[i] = t == VT_BF16 ? vt_bf16_to_f32(vt_f32_to_bf16(w[i])) : vt_f16_to_f32(vt_f32_to_f16(w[i]));
    memcpy(c2, c1, sizeof(float) * (size_t)m * ldc);
    vt_packed of, view, direct;
    assert_int_equal(vt_pack(&of, w, k, n, trans, t), 0);
    assert_int_equal(of.dtype, t);
    vt_pack_transposed(&view, &of);
    assert_int_equal(view.k, n);
    assert_int_equal(view.n, k);
    assert_int_equal(view.bytes, 0);
    assert_int_equal(vt_pack(&direct, w, n, k, !trans, VT_F32), 0);
    vt_sgemm_packed(m, a, lda, &view, 0.25f, c1, ldc);
    vt_sgemm_packed(m, a, lda, &direct, 0.25f, c2, ldc);
    if (memcmp(c1, c2, sizeof(float) * (size_t)m * ldc))
        fail_msg("%s transposed view %dx%dx%d trans %d: the product differs from the direct pack's",
                 vt_dtype_name(t), m, k, n, trans);
    vt_packed_free(&view);
    assert_null(view.data);
    assert_non_null(of.data); /* the view does not own it */
    vt_packed_free(&of);
    vt_packed_free(&direct);
    free(a);
    free(w);
    free(c1);
    free(c2);
}

static void test_packed_transposed(void **state) {
    (void)state;
    int shapes[][3] = {{40, 33, 257}, {300, 50, 600}, {611, 19, 70}, {64, 600, 300}};
    vt_dtype types[] = {VT_F32, VT_BF16, VT_F16};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int trans = 0; trans < 2; trans++)
            for (int t = 0; t < 3; t++) check_transposed(shapes[i][0], shapes[i][1], shapes[i][2], trans, types[t]);
}

static void test_packed_16bit(void **state) {
    (void)state;
    int shapes[][3] = {{40, 33, 257}, {300, 50, 600}, {611, 19, 70}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int trans = 0; trans < 2; trans++) {
            check_packed_16(shapes[i][0], shapes[i][1], shapes[i][2], trans, VT_BF16);
            check_packed_16(shapes[i][0], shapes[i][1], shapes[i][2], trans, VT_F16);
        }
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
        cmocka_unit_test(test_packed_weights),
        cmocka_unit_test(test_packed_16bit),
        cmocka_unit_test(test_packed_transposed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
