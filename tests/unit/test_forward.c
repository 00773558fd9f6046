/* test_forward.c — the batched forward pass against a naive double-precision reference, the KV
 * cache against full windows, batching, and the two RoPE layouts against each other. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "forward.h"
#include "testutil.h"

/* Naive reference: one sequence, every op written out in double. logits[T, vocab]. */
static void naive_forward(const vt_model *m, const int32_t *tok, int T, double *logits) {
    const vt_config *c = &m->cfg;
    int d = c->dim, hd = c->head_dim;
    double *x = calloc((size_t)T * d, sizeof *x), *xn = calloc((size_t)T * d, sizeof *xn);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) x[t * d + i] = m->embed[(size_t)tok[t] * d + i];
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        const vt_layer_weights *w = &m->layers[l];
        for (int pass = 0; pass < 2; pass++) {
            const float *nw = pass ? w->ffn_norm : w->attn_norm;
            if (!nw) continue;
            for (int t = 0; t < T; t++) {
                double ss = 0;
                for (int i = 0; i < d; i++) ss += x[t * d + i] * x[t * d + i];
                double sc = 1.0 / sqrt(ss / d + c->norm_eps);
                for (int i = 0; i < d; i++) xn[t * d + i] = x[t * d + i] * sc * nw[i];
            }
            if (pass == 0) {
                int nh = s->n_heads, nkv = s->n_kv_heads, qd = nh * hd, kvd = nkv * hd;
                double *q = calloc((size_t)T * qd, 8), *k = calloc((size_t)T * kvd, 8), *v = calloc((size_t)T * kvd, 8);
                double *o = calloc((size_t)T * qd, 8);
                for (int t = 0; t < T; t++) {
                    for (int r = 0; r < qd; r++)
                        for (int i = 0; i < d; i++) q[t * qd + r] += w->wq[(size_t)r * d + i] * xn[t * d + i];
                    for (int r = 0; r < kvd; r++)
                        for (int i = 0; i < d; i++) {
                            k[t * kvd + r] += w->wk[(size_t)r * d + i] * xn[t * d + i];
                            v[t * kvd + r] += w->wv[(size_t)r * d + i] * xn[t * d + i];
                        }
                    for (int h = 0; h < nh + nkv; h++) {
                        double *vec = h < nh ? q + t * qd + h * hd : k + t * kvd + (h - nh) * hd;
                        for (int j = 0; j < hd / 2; j++) {
                            double ang = t * pow(c->rope_theta, -2.0 * j / hd);
                            int a = c->rope == VT_ROPE_INTERLEAVED ? 2 * j : j;
                            int b = c->rope == VT_ROPE_INTERLEAVED ? 2 * j + 1 : j + hd / 2;
                            double x0 = vec[a], x1 = vec[b];
                            vec[a] = x0 * cos(ang) - x1 * sin(ang);
                            vec[b] = x0 * sin(ang) + x1 * cos(ang);
                        }
                    }
                }
                for (int h = 0; h < nh; h++) {
                    int kh = h / (nh / nkv);
                    for (int t = 0; t < T; t++) {
                        double sc[256], mx = -1e300, sum = 0;
                        for (int j = 0; j <= t; j++) {
                            sc[j] = 0;
                            for (int i = 0; i < hd; i++) sc[j] += q[t * qd + h * hd + i] * k[j * kvd + kh * hd + i];
                            sc[j] /= sqrt((double)hd);
                            mx = sc[j] > mx ? sc[j] : mx;
                        }
                        for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
                        for (int j = 0; j <= t; j++)
                            for (int i = 0; i < hd; i++) o[t * qd + h * hd + i] += sc[j] / sum * v[j * kvd + kh * hd + i];
                    }
                }
                for (int t = 0; t < T; t++)
                    for (int r = 0; r < d; r++)
                        for (int i = 0; i < qd; i++) x[t * d + r] += w->wo[(size_t)r * qd + i] * o[t * qd + i];
                free(q); free(k); free(v); free(o);
            } else {
                int f = s->ffn;
                double *a = calloc((size_t)f, 8);
                for (int t = 0; t < T; t++) {
                    for (int r = 0; r < f; r++) {
                        double g = 0, u = 0;
                        for (int i = 0; i < d; i++) {
                            g += w->w_gate[(size_t)r * d + i] * xn[t * d + i];
                            u += w->w_up[(size_t)r * d + i] * xn[t * d + i];
                        }
                        a[r] = g / (1 + exp(-g)) * u;
                    }
                    for (int r = 0; r < d; r++)
                        for (int i = 0; i < f; i++) x[t * d + r] += w->w_down[(size_t)r * f + i] * a[i];
                }
                free(a);
            }
        }
    }
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < d; i++) ss += x[t * d + i] * x[t * d + i];
        double sc = 1.0 / sqrt(ss / d + c->norm_eps);
        for (int i = 0; i < d; i++) xn[t * d + i] = x[t * d + i] * sc * m->final_norm[i];
        for (int v = 0; v < c->vocab; v++) {
            double acc = 0;
            for (int i = 0; i < d; i++) acc += m->lm_head[(size_t)v * d + i] * xn[t * d + i];
            logits[(size_t)t * c->vocab + v] = acc;
        }
    }
    free(x);
    free(xn);
}

/* Our forward over B sequences of T tokens: logits[B*T, vocab]. */
static float *our_forward(const vt_model *m, const int32_t *tok, int B, int T) {
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, m, B, T, T), 0);
    float *x = malloc(sizeof(float) * B * T * m->cfg.dim), *logits = malloc(sizeof(float) * B * T * m->cfg.vocab);
    vt_embed(m, tok, B * T, x);
    vt_layers_forward(m, &f, 0, m->cfg.n_layers, x, B, T, 0);
    vt_head_forward(m, &f, x, B * T, logits);
    vt_fwd_free(&f);
    free(x);
    return logits;
}

static void random_tokens(int32_t *tok, int n, int vocab, unsigned seed) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)((seed = seed * 1103515245u + 12345u) >> 8) % vocab;
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
    float *ours = our_forward(&m, tok, 1, T);
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
    float *full = our_forward(&m, tok, 1, T);
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
    float *batched = our_forward(&m, tok, B, T);
    for (int b = 0; b < B; b++) {
        float *one = our_forward(&m, tok + b * T, 1, T);
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
    assert_int_equal(vt_eval_stream(&m, tok, 23, 8, 0, &r, NULL, NULL), 0);
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
    assert_int_equal(vt_eval_stream(&m, tok25, 25, 8, 0, &r, NULL, NULL), 0);
    assert_int_equal(r.tokens, 21);
    /* Out-of-vocabulary id is an error. */
    tok25[3] = c.vocab;
    assert_int_equal(vt_eval_stream(&m, tok25, 25, 8, 0, &r, NULL, NULL), -1);
    free(ref);
    vt_model_free(&m);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_naive_interleaved), cmocka_unit_test(test_matches_naive_rotate_half),
        cmocka_unit_test(test_matches_naive_pruned),      cmocka_unit_test(test_kv_cache_matches_window),
        cmocka_unit_test(test_batch_and_stage_split),     cmocka_unit_test(test_eval_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
