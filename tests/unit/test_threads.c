/* test_threads.c — threads inside a rank (parallel.threads) change no bit: the packed matmul, BLIS's
 * matmul, and a whole gated forward pass, distillation and cross-entropy losses and backward pass
 * (gates, weights, sequence chunks, packed weights) give identical results at 1 and 2 threads (the
 * matmuls at 3 too: an uneven split). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "nn/forward.h"
#include "nn/loss.h"
#include "nn/masks.h"
#include "nn/matmul.h"
#include "util/dtype.h"
#include "util/rng.h"

static float *random_floats(size_t n, uint64_t *s) {
    float *x = malloc(sizeof(float) * n);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) {
        vt_lcg64(s);
        x[i] = (float)((double)(*s >> 40) / (double)(1 << 24) - 0.5);
    }
    return x;
}

/* C = A W^T (+ C) through W packed, and the same with BLIS's own matmul, at 1, 2 and 3 threads:
 * shapes that cross KC blocks, MC blocks and a partial sliver, split unevenly over 3 threads. */
static void test_matmuls(void **st) {
    (void)st;
    if (!vt_pack_available()) skip();
    enum { M = 300, N = 333, K = 700, TRIES = 3 };
    uint64_t s = 5;
    vt_threads_grain_set(0);
    float *a = random_floats((size_t)M * K, &s), *w = random_floats((size_t)N * K, &s);
    float *c0 = random_floats((size_t)M * N, &s), *c[TRIES], *d[TRIES];
    for (size_t i = 0; i < (size_t)N * K; i++) { /* exact in bf16, so a 16-bit pack holds the same numbers */
        uint32_t u = (uint32_t)vt_f32_to_bf16(w[i]) << 16;
        memcpy(&w[i], &u, sizeof u);
    }
    assert_int_equal(vt_threads_set(TRIES), 0); /* vt_pack holds row buffers for the threads there are */
    vt_packed p, pb;
    assert_int_equal(vt_pack(&p, w, K, N, 1, VT_F32), 0);
    assert_int_equal(vt_pack(&pb, w, K, N, 1, VT_BF16), 0);
    assert_int_equal(pb.dtype, VT_BF16);
    float *e = malloc(sizeof(float) * M * N);
    for (int t = 0; t < TRIES; t++) {
        assert_int_equal(vt_threads_set(t + 1), 0);
        assert_int_equal(vt_threads(), t + 1);
        c[t] = malloc(sizeof(float) * M * N);
        d[t] = malloc(sizeof(float) * M * N);
        memcpy(c[t], c0, sizeof(float) * M * N);
        vt_sgemm_packed(M, a, K, &p, 1.0f, c[t], N);
        vt_sgemm(0, 1, M, N, K, 1.0f, a, K, w, K, 0.0f, d[t], N);
        assert_memory_equal(c[t], c[0], sizeof(float) * M * N);
        assert_memory_equal(d[t], d[0], sizeof(float) * M * N);
        memcpy(e, c0, sizeof(float) * M * N); /* the 16-bit pack, widened per sliver on every thread */
        vt_sgemm_packed(M, a, K, &pb, 1.0f, e, N);
        assert_memory_equal(e, c[0], sizeof(float) * M * N);
    }
    /* and the product is the product: the packed path against BLIS's, to rounding */
    for (int i = 0; i < M * N; i++) d[0][i] += c0[i];
    assert_true(tu_rel_diff(c[0], d[0], (size_t)M * N) < 1e-5);
    for (int t = 0; t < TRIES; t++) free(c[t]), free(d[t]);
    vt_packed_free(&p);
    vt_packed_free(&pb);
    free(e);
    free(a);
    free(w);
    free(c0);
    vt_threads_grain_set(VT_THREAD_GRAIN);
    assert_int_equal(vt_threads_set(1), 0);
}

enum { B = 3, T = 40, C = 2, TC = T / C };

/* What one run of the step gives: logits, losses, gate gradients and weight gradients. */
typedef struct {
    float *logits, *dz, *dw;
    double loss[2];
} step_out;

/* Teacher forward, gated student forward over C chunks with tapes and packed weights, distillation
 * plus cross-entropy, backward to gates and weights: all on `threads` threads. */
static void run_step(const vt_model *m, vt_masks *mk, int threads, step_out *o) {
    const vt_config *c = &m->cfg;
    assert_int_equal(vt_threads_set(threads), 0);
    size_t n = mk->n, rows = B * T, V = (size_t)c->vocab, d = (size_t)c->dim, rc = (size_t)B * TC;
    int32_t tok[B * T], tokc[B * TC], tgt[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((unsigned)(i * 37 + 11) % (unsigned)c->vocab);
    for (int i = 0; i < B * T; i++) tgt[i] = i % 7 == 3 ? -1 : tok[(i + 1) % (B * T)];
    int64_t ids[B] = {0, 1, 2};
    float *z = malloc(sizeof(float) * B * n), *eps = malloc(sizeof(float) * B * n);
    vt_masks_sample(mk, 1, 0, ids, B, z, eps);
    vt_fwd f;
    vt_tape tapes[C];
    vt_bwd bw;
    assert_int_equal(vt_fwd_init(&f, m, B, T, T), 0);
    f.query_block = 16; /* blocks of query rows that end inside a chunk */
    for (int k = 0; k < C; k++) assert_int_equal(vt_tape_init(&tapes[k], m, B, TC, k * TC), 0);
    vt_tape_link(tapes, C);
    assert_int_equal(vt_bwd_init(&bw, m, B, TC, T), 0);
    float *x = malloc(sizeof(float) * rows * d), *teach = malloc(sizeof(float) * rows * V);
    float *dl = calloc(rows * V, sizeof(float)), *lc = malloc(sizeof(float) * rc * V);
    vt_embed(m, tok, (int)rows, x);
    vt_layers_forward(m, &f, 0, c->n_layers, x, B, T, 0);
    vt_head_forward(m, &f, x, (int)rows, teach);
    assert_int_equal(vt_model_packs_init(&f.packs, m, 0), 0);
    assert_int_equal(vt_model_packs_init(&bw.packs, m, 1), 0);
    vt_gates g = {mk, z, n};
    for (int k = 0; k < C; k++) {
        for (int b = 0; b < B; b++) memcpy(tokc + b * TC, tok + b * T + k * TC, sizeof(int32_t) * TC);
        vt_embed_gated(m, tokc, B, TC, &g, x);
        vt_layers_forward_ex(m, &f, 0, c->n_layers, x, B, TC, k * TC, &g, &tapes[k]);
        vt_head_forward_ex(m, &f, x, (int)rc, lc, &tapes[k]);
        for (int b = 0; b < B; b++)
            memcpy(o->logits + ((size_t)b * T + k * TC) * V, lc + (size_t)b * TC * V, sizeof(float) * TC * V);
    }
    o->loss[0] = vt_loss_distill(o->logits, teach, (int)rows, c->vocab, 2.0f, 1.0f, dl);
    o->loss[1] = vt_loss_ce(o->logits, tgt, (int)rows, c->vocab, 0.5f, dl);
    vt_model dw;
    assert_int_equal(vt_model_alloc(&dw, c, vt_load_all()), 0);
    memset(o->dz, 0, sizeof(float) * B * n);
    for (int k = C - 1; k >= 0; k--) {
        for (int b = 0; b < B; b++) {
            memcpy(tokc + b * TC, tok + b * T + k * TC, sizeof(int32_t) * TC);
            memcpy(lc + (size_t)b * TC * V, dl + ((size_t)b * T + k * TC) * V, sizeof(float) * TC * V);
        }
        vt_head_backward(m, &bw, &tapes[k], lc, (int)rc, x, &dw);
        vt_layers_backward(m, &f, &bw, 0, c->n_layers, x, B, TC, &g, &tapes[k], o->dz, &dw);
        vt_embed_backward(m, tokc, B, TC, x, o->dz, n);
    }
    memcpy(o->dw, dw.arena, sizeof(float) * dw.arena_floats);
    vt_model_free(&dw);
    for (int k = 0; k < C; k++) vt_tape_free(&tapes[k]);
    vt_bwd_free(&bw);
    vt_fwd_free(&f);
    free(x), free(teach), free(dl), free(lc), free(z), free(eps);
}

static void test_step(void **st) {
    (void)st;
    vt_config c;
    tu_stories_config(&c); /* 8 heads sharing 4 key/value heads: the threads split key/value heads */
    vt_config_free(&c);
    c.n_layers = 2;
    assert_int_equal(vt_config_init_dense(&c), 0);
    vt_threads_grain_set(0); /* every loop on the threads, however small */
    vt_model m;
    tu_random_model(&m, &c, 31);
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 3), 0);
    unsigned s = 9;
    for (size_t i = 0; i < mk.n; i++) {
        mk.mu[i] = (float)(1.0 + 0.6 * tu_urand(&s));
        mk.logvar[i] = (float)(-3.0 + tu_urand(&s));
    }
    size_t nl = (size_t)B * T * c.vocab;
    step_out o[2];
    for (int t = 0; t < 2; t++) {
        o[t].logits = malloc(sizeof(float) * nl);
        o[t].dz = malloc(sizeof(float) * B * mk.n);
        o[t].dw = malloc(sizeof(float) * m.arena_floats);
        run_step(&m, &mk, t + 1, &o[t]);
        assert_memory_equal(o[t].logits, o[0].logits, sizeof(float) * nl);
        assert_memory_equal(o[t].loss, o[0].loss, sizeof o[t].loss);
        assert_memory_equal(o[t].dz, o[0].dz, sizeof(float) * B * mk.n);
        assert_memory_equal(o[t].dw, o[0].dw, sizeof(float) * m.arena_floats);
    }
    double mag = 0.0; /* the step did something: gradients reached the gates */
    for (size_t i = 0; i < B * mk.n; i++) mag += o[0].dz[i] * o[0].dz[i];
    assert_true(mag > 0.0);
    for (int t = 0; t < 2; t++) free(o[t].logits), free(o[t].dz), free(o[t].dw);
    vt_threads_grain_set(VT_THREAD_GRAIN);
    vt_masks_free(&mk);
    vt_model_free(&m);
    vt_config_free(&c);
    assert_int_equal(vt_threads_set(1), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmuls),
        cmocka_unit_test(test_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
