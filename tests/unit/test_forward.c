/* test_forward.c — the batched forward pass against a naive double-precision reference, the KV
 * cache against full windows, batching, and the two RoPE layouts against each other. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/pipeline.h"
#include "nn/eval.h"
#include "nn/forward.h"
#include "nn/masks.h"
#include "ref_model.h"
#include "testutil.h"
#include "util/rng.h"

/* The double-precision reference (ref_model.c), one sequence, no gates. */
static void naive_forward(const vt_model *m, const int32_t *tok, int T, double *logits) {
    ref_model r;
    ref_model_init(&r, m);
    ref_forward(&r, NULL, NULL, tok, 1, T, logits, NULL);
    ref_model_free(&r);
}

static void random_tokens(int32_t *tok, int n, int vocab, unsigned seed) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(vt_lcg32(&seed) >> 8) % vocab;
}

static void assert_close(const float *a, const double *b, size_t n, double rel) {
    double mx = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(b[i]));
        err = fmax(err, fabs(a[i] - b[i]));
    }
    if (err > rel * mx) fail_msg("max abs error %g exceeds %g x max |ref| %g", err, rel, mx);
}

static void check_against_naive(vt_rope_layout rope, int pruned) {
    vt_config c;
    tu_small_config(&c);
    c.rope = rope;
    if (pruned) { /* per-layer sizes: fewer heads and neurons, one block removed */
        c.layers[0] = (vt_layer_shape){2, 1, 10};
        c.layers[1] = (vt_layer_shape){0, 0, 7};
    }
    vt_model m;
    tu_random_model(&m, &c, 7);
    int T = 12;
    int32_t tok[12];
    random_tokens(tok, T, c.vocab, 3);
    double *ref = malloc(sizeof(double) * T * c.vocab);
    naive_forward(&m, tok, T, ref);
    float *ours = tu_model_logits(&m, tok, 1, T);
    assert_close(ours, ref, (size_t)T * c.vocab, 1e-5);
    free(ref);
    free(ours);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_matches_naive_interleaved(void **s) { (void)s; check_against_naive(VT_ROPE_INTERLEAVED, 0); }
static void test_matches_naive_rotate_half(void **s) { (void)s; check_against_naive(VT_ROPE_HALF, 0); }
static void test_matches_naive_pruned(void **s) { (void)s; check_against_naive(VT_ROPE_HALF, 1); }

/* Token-by-token with the KV cache gives the same logits as one full window. */
static void test_kv_cache_matches_window(void **s) {
    (void)s;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 11);
    int T = 20;
    int32_t tok[20];
    random_tokens(tok, T, c.vocab, 5);
    float *full = tu_model_logits(&m, tok, 1, T);
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, &m, 1, 1, T), 0);
    float x[16], logits[32];
    for (int t = 0; t < T; t++) {
        vt_embed(&m, &tok[t], 1, x);
        vt_layers_forward(&m, &f, 0, c.n_layers, x, 1, 1, t);
        vt_head_forward(&m, &f, x, 1, logits);
        for (int v = 0; v < c.vocab; v++) assert_true(fabsf(logits[v] - full[t * c.vocab + v]) < 1e-4f);
    }
    vt_fwd_free(&f);
    free(full);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* A batch of 3 sequences equals 3 separate runs; a stage split [0,1)+[1,2) equals the whole. */
static void test_batch_and_stage_split(void **s) {
    (void)s;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 13);
    int B = 3, T = 9;
    int32_t tok[27];
    random_tokens(tok, B * T, c.vocab, 9);
    float *batched = tu_model_logits(&m, tok, B, T);
    for (int b = 0; b < B; b++) {
        float *one = tu_model_logits(&m, tok + b * T, 1, T);
        for (int i = 0; i < T * c.vocab; i++) assert_true(fabsf(one[i] - batched[b * T * c.vocab + i]) < 1e-5f);
        free(one);
    }
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, &m, B, T, T), 0);
    float *x = malloc(sizeof(float) * B * T * c.dim), *logits = malloc(sizeof(float) * B * T * c.vocab);
    vt_embed(&m, tok, B * T, x);
    vt_layers_forward(&m, &f, 0, 1, x, B, T, 0);
    vt_layers_forward(&m, &f, 1, 2, x, B, T, 0);
    vt_head_forward(&m, &f, x, B * T, logits);
    assert_memory_equal(logits, batched, sizeof(float) * B * T * c.vocab);
    free(x);
    free(logits);
    vt_fwd_free(&f);
    free(batched);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* Windowed evaluation: token count and NLL follow the protocol (last window >= 2 tokens). */
static void test_eval_windows(void **s) {
    (void)s;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 17);
    int32_t tok[23];
    random_tokens(tok, 23, c.vocab, 21);
    vt_eval_result r;
    assert_int_equal(vt_pipeline_eval(vt_comm_local(c.n_layers), &m, tok, 23, 8, 0, &r, NULL, NULL), 0);
    assert_int_equal(r.tokens, 7 + 7 + 6);
    assert_int_equal(r.windows, 3);
    /* Same NLL by hand from per-window naive logits. */
    double nll = 0, *ref = malloc(sizeof(double) * 8 * c.vocab);
    for (int w = 0; w < 3; w++) {
        int T = w < 2 ? 8 : 7;
        naive_forward(&m, tok + w * 8, T, ref);
        for (int t = 0; t + 1 < T; t++) {
            double mx = -1e300, sum = 0;
            for (int v = 0; v < c.vocab; v++) mx = fmax(mx, ref[t * c.vocab + v]);
            for (int v = 0; v < c.vocab; v++) sum += exp(ref[t * c.vocab + v] - mx);
            nll += log(sum) + mx - ref[t * c.vocab + tok[w * 8 + t + 1]];
        }
    }
    assert_true(fabs(r.nll_sum - nll) < 1e-4 * fabs(nll));
    /* 24 tokens: last window has 0 tokens; 25: a 1-token window is not scored. */
    int32_t tok25[25];
    random_tokens(tok25, 25, c.vocab, 4);
    assert_int_equal(vt_pipeline_eval(vt_comm_local(c.n_layers), &m, tok25, 25, 8, 0, &r, NULL, NULL), 0);
    assert_int_equal(r.tokens, 21);
    /* Out-of-vocabulary id is an error. */
    tok25[3] = c.vocab;
    assert_int_equal(vt_pipeline_eval(vt_comm_local(c.n_layers), &m, tok25, 25, 8, 0, &r, NULL, NULL), -1);
    free(ref);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* Gated forward (sampled gates, per-sequence rows) against the reference with the same gates. */
static void test_gated_matches_reference(void **s) {
    (void)s;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 19);
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 2), 0);
    for (size_t i = 0; i < mk.n; i++) mk.logvar[i] = -1.0f; /* sigma 0.6: gates far from 1 */
    int B = 2, T = 7;
    int32_t tok[14];
    random_tokens(tok, B * T, c.vocab, 31);
    int64_t ids[2] = {5, 6};
    float *z = malloc(sizeof(float) * B * mk.n), *eps = malloc(sizeof(float) * B * mk.n);
    vt_masks_sample(&mk, 3, 1, ids, B, z, eps);
    double *zd = malloc(sizeof(double) * B * mk.n), *ref = malloc(sizeof(double) * B * T * c.vocab);
    for (size_t i = 0; i < B * mk.n; i++) zd[i] = z[i];
    ref_model r;
    ref_model_init(&r, &m);
    ref_forward(&r, &mk, zd, tok, B, T, ref, NULL);
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, &m, B, T, T), 0);
    float *x = malloc(sizeof(float) * B * T * c.dim), *logits = malloc(sizeof(float) * B * T * c.vocab);
    vt_gates g = {&mk, z, mk.n};
    vt_embed_gated(&m, tok, B, T, &g, x);
    vt_layers_forward_ex(&m, &f, 0, c.n_layers, x, B, T, 0, &g, NULL);
    vt_head_forward(&m, &f, x, B * T, logits);
    assert_close(logits, ref, (size_t)B * T * c.vocab, 1e-5);
    ref_model_free(&r);
    free(x); free(logits); free(z); free(eps); free(zd); free(ref);
    vt_fwd_free(&f);
    vt_masks_free(&mk);
    vt_model_free(&m);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_naive_interleaved), cmocka_unit_test(test_matches_naive_rotate_half),
        cmocka_unit_test(test_matches_naive_pruned),      cmocka_unit_test(test_kv_cache_matches_window),
        cmocka_unit_test(test_batch_and_stage_split),     cmocka_unit_test(test_eval_windows),
        cmocka_unit_test(test_gated_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
