/* test_lora.c — low-rank adapters: finite-difference checks of every adapter's gradient and of the
 * RMSNorm gains' (on the double reference with the adapters merged in double), the merge against the unmerged logits,
 * and an adapter-free pass unchanged by the hooks; a pipeline stage's adapters as a run of the whole model's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "nn/forward.h"
#include "nn/lora.h"
#include "nn/loss.h"
#include "ref_model.h"
#include "testutil.h"
#include "util/rng.h"

enum { B = 2, T = 5 };

/* B random too (it starts at zero), so every term of the gradient is exercised. */
static void randomise_b(vt_lora *lo, uint64_t seed, double amplitude) {
    for (size_t i = 0; i < (size_t)lo->n_layers * VT_LORA_PROJS; i++) {
        vt_lora_pair *ad = &lo->ad[i];
        if (!ad->a) continue;
        for (size_t k = 0; k < (size_t)ad->out * lo->rank; k++)
            ad->b[k] = (float)(amplitude * (vt_uniform(seed, i * 100000 + k) - 0.5));
    }
}

/* The adapted model's loss in double: base weights base[], adapters par[] (at the offsets of the
 * arena of lo) merged in double, then distillation at T = 1 plus 0.5 x cross-entropy. */
static double ref_adapted_loss(ref_model *r, const double *base, const vt_lora *lo, const double *par,
                               const int32_t *tok, const int32_t *tgt, const double *teacher) {
    const vt_model *m = r->m;
    memcpy(r->w, base, m->arena_floats * sizeof(double));
    for (int l = lo->layer_begin; l < lo->layer_end; l++) {
        const vt_layer_weights *w = &m->layers[l];
        const float *ws[VT_LORA_PROJS] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        for (int p = 0; p < VT_LORA_PROJS; p++) {
            const vt_lora_pair *ad = vt_lora_at(lo, l, p);
            if (!ad->a) continue;
            const double *A = par + (ad->a - lo->arena), *Bm = par + (ad->b - lo->arena);
            double *W = r->w + ref_offset(r, ws[p]);
            for (int o = 0; o < ad->out; o++)
                for (int i = 0; i < ad->in; i++) {
                    double s = 0;
                    for (int k = 0; k < lo->rank; k++) s += Bm[o * lo->rank + k] * A[k * ad->in + i];
                    W[(size_t)o * ad->in + i] += lo->scale * s;
                }
        }
    }
    int rows = B * T, V = m->cfg.vocab;
    double *lg = malloc(sizeof(double) * rows * V), ce = 0;
    ref_forward(r, NULL, NULL, tok, B, T, lg, NULL);
    double L = ref_distill(lg, teacher, rows, V, 1.0, 1.0);
    int scored = 0;
    for (int i = 0; i < rows; i++) {
        if (tgt[i] < 0) continue;
        double mx = lg[i * V], s = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, lg[i * V + v]);
        for (int v = 0; v < V; v++) s += exp(lg[i * V + v] - mx);
        ce += mx + log(s) - lg[i * V + tgt[i]];
        scored++;
    }
    free(lg);
    return L + 0.5 * ce / scored;
}

/* The norm gains' gradients (vt_bwd.norm_grad, laid out as vt_norm_grad_at says) against central
 * differences of the reference loss in the base weights' gains; every third gain of every norm. */
static void check_norm_gradients(ref_model *r, double *base, const vt_lora *lo, const double *par, const int32_t *tok,
                                 const int32_t *tgt, const double *teacher, float *ng) {
    const vt_model *m = r->m;
    int D = m->cfg.dim, K = 2 * m->cfg.n_layers + 1, n = 0;
    double *an = malloc(sizeof(double) * K * D), *fd = malloc(sizeof(double) * K * D), h = 1e-5;
    for (int k = 0; k < K; k++) {
        int l = k / 2, which = k % 2;
        const float *gain = l == m->cfg.n_layers ? m->final_norm : which ? m->layers[l].ffn_norm : m->layers[l].attn_norm;
        if (!gain) continue; /* a block pruned away has no norm */
        for (int i = k % 3; i < D; i += 3) {
            double *w = base + ref_offset(r, gain) + i, keep = *w;
            *w = keep + h;
            double up = ref_adapted_loss(r, base, lo, par, tok, tgt, teacher);
            *w = keep - h;
            fd[n] = (up - ref_adapted_loss(r, base, lo, par, tok, tgt, teacher)) / (2 * h);
            *w = keep;
            an[n++] = vt_norm_grad_at(ng, l, which, D)[i];
        }
    }
    tu_assert_grad("RMSNorm gain", an, fd, (size_t)n, 1e-3);
    free(an);
    free(fd);
}

static void check_adapter_gradients(vt_config *c, unsigned targets) {
    vt_model m;
    tu_random_model(&m, c, 5);
    vt_lora lo, gr;
    assert_int_equal(vt_lora_init(&lo, &m, 2, 3.0f, targets, 9, B * T), 0);
    assert_int_equal(vt_lora_init_like(&gr, &lo), 0);
    randomise_b(&lo, 11, 0.4);
    int rows = B * T, V = c->vocab;
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < rows; i++) tok[i] = (int32_t)((unsigned)(i * 5 + 1) % (unsigned)V);
    for (int i = 0; i < rows; i++) tgt[i] = i % T == T - 1 ? -1 : tok[i + 1];
    float *x = malloc(sizeof(float) * rows * c->dim), *teach = malloc(sizeof(float) * rows * V);
    float *lg = malloc(sizeof(float) * rows * V), *dl = calloc((size_t)rows * V, sizeof(float));
    vt_fwd f;
    vt_tape tp;
    vt_bwd bw;
    assert_int_equal(vt_fwd_init(&f, &m, B, T, T), 0);
    assert_int_equal(vt_tape_init(&tp, &m, B, T, 0), 0);
    assert_int_equal(vt_bwd_init(&bw, &m, B, T, T), 0);
    vt_embed(&m, tok, rows, x); /* the teacher: the base model, no adapters */
    vt_layers_forward(&m, &f, 0, c->n_layers, x, B, T, 0);
    vt_head_forward(&m, &f, x, rows, teach);
    f.lora = &lo;
    vt_embed(&m, tok, rows, x);
    vt_layers_forward_ex(&m, &f, 0, c->n_layers, x, B, T, 0, NULL, &tp);
    vt_head_forward_ex(&m, &f, x, rows, lg, &tp);
    double L = vt_loss_distill(lg, teach, rows, V, 1.0f, 1.0f, dl) + vt_loss_ce(lg, tgt, rows, V, 0.5f, dl);
    bw.lora = &lo;
    bw.lora_grad = &gr;
    float *ng = calloc((size_t)(2 * c->n_layers + 1) * c->dim, sizeof(float));
    bw.norm_grad = ng; /* recover.norms: the RMSNorm gains train next to the adapters */
    vt_head_backward(&m, &bw, &tp, dl, rows, x, NULL);
    vt_layers_backward(&m, &f, &bw, 0, c->n_layers, x, B, T, NULL, &tp, NULL, NULL);

    ref_model r;
    ref_model_init(&r, &m);
    double *base = malloc(sizeof(double) * m.arena_floats), *par = malloc(sizeof(double) * lo.n_params);
    double *teacher = malloc(sizeof(double) * rows * V), h = 1e-5;
    memcpy(base, r.w, sizeof(double) * m.arena_floats);
    for (size_t i = 0; i < lo.n_params; i++) par[i] = lo.arena[i];
    for (int i = 0; i < rows * V; i++) teacher[i] = teach[i];
    double Lref = ref_adapted_loss(&r, base, &lo, par, tok, tgt, teacher);
    if (fabs(L - Lref) > 1e-4 * fmax(1e-3, fabs(Lref))) fail_msg("loss %.9g vs reference %.9g", L, Lref);
    double err = 0, scale = 1e-8;
    size_t worst = 0;
    for (size_t i = 0; i < lo.n_params; i += 3) {
        double keep = par[i];
        par[i] = keep + h;
        double up = ref_adapted_loss(&r, base, &lo, par, tok, tgt, teacher);
        par[i] = keep - h;
        double fd = (up - ref_adapted_loss(&r, base, &lo, par, tok, tgt, teacher)) / (2 * h);
        par[i] = keep;
        scale = fmax(scale, fabs(fd));
        if (fabs(fd - gr.arena[i]) > err) err = fabs(fd - gr.arena[i]), worst = i;
    }
    if (err > 1e-3 * scale)
        fail_msg("adapter parameter %zu: analytic %.8g, max error %.3g against finite differences (scale %.3g)", worst,
                 gr.arena[worst], err, scale);
    check_norm_gradients(&r, base, &lo, par, tok, tgt, teacher, ng);
    free(ng);
    ref_model_free(&r);
    free(base); free(par); free(teacher); free(x); free(teach); free(lg); free(dl);
    vt_bwd_free(&bw);
    vt_tape_free(&tp);
    vt_fwd_free(&f);
    vt_lora_free(&gr);
    vt_lora_free(&lo);
    vt_model_free(&m);
}

static void test_gradients_all_targets(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    check_adapter_gradients(&c, VT_LORA_ALL);
    vt_config_free(&c);
}

/* Pruned shapes: a layer without attention, one narrower; only some targets. */
static void test_gradients_pruned_some_targets(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    c.layers[0] = (vt_layer_shape){0, 0, 10};
    c.layers[1] = (vt_layer_shape){2, 1, 0};
    unsigned t;
    assert_int_equal(vt_lora_parse_targets("k,o, up", &t), 0);
    assert_int_equal(t, (1u << VT_LORA_K) | (1u << VT_LORA_O) | (1u << VT_LORA_UP));
    check_adapter_gradients(&c, t | (1u << VT_LORA_DOWN) | (1u << VT_LORA_GATE));
    assert_int_equal(vt_lora_parse_targets("q,bias", &t), -1);
    vt_config_free(&c);
}

static void logits_of(const vt_model *m, vt_lora *lo, const int32_t *tok, int rows, float *lg) {
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, m, 1, rows, rows), 0);
    f.lora = lo;
    float *x = malloc(sizeof(float) * rows * m->cfg.dim);
    vt_embed(m, tok, rows, x);
    vt_layers_forward(m, &f, 0, m->cfg.n_layers, x, 1, rows, 0);
    vt_head_forward(m, &f, x, rows, lg);
    free(x);
    vt_fwd_free(&f);
}

/* W + (alpha/r) B A written into the weights gives the unmerged model's logits. */
static void test_merge_equals_unmerged(void **st) {
    (void)st;
    vt_config c;
    tu_stories_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 3);
    vt_lora lo;
    assert_int_equal(vt_lora_init(&lo, &m, 8, 16.0f, VT_LORA_ALL, 1, 40), 0);
    randomise_b(&lo, 2, 0.1); /* B as small as training leaves it: |logit| changes of O(1) */
    enum { R = 40 };
    int32_t tok[R];
    for (int i = 0; i < R; i++) tok[i] = (int32_t)((i * 37 + 11) % c.vocab);
    float *a = malloc(sizeof(float) * R * c.vocab), *b = malloc(sizeof(float) * R * c.vocab);
    float *base = malloc(sizeof(float) * R * c.vocab);
    logits_of(&m, NULL, tok, R, base);
    logits_of(&m, &lo, tok, R, a);
    vt_lora_merge(&lo, &m);
    logits_of(&m, NULL, tok, R, b);
    double diff = 0, moved = 0, top = 1.0;
    for (int i = 0; i < R * c.vocab; i++) {
        diff = fmax(diff, fabs(a[i] - b[i]));
        moved = fmax(moved, fabs(a[i] - base[i]));
        top = fmax(top, fabs(a[i]));
    }
    if (diff > 1e-5 * top) fail_msg("merged logits differ from the unmerged by %.3g (largest logit %.3g)", diff, top);
    if (moved < 1e-2) fail_msg("the adapters changed the logits by only %.3g: the test checks nothing", moved);
    free(a); free(b); free(base);
    vt_lora_free(&lo);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* A pipeline stage's adapters (layers [l0, l1) of a part) are the run of the whole model's at
 * vt_lora_count's offset, value for value (the same initial draws whatever the stages), on pruned
 * shapes with a block removed. */
static void test_stage_adapters_are_a_run(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    c.layers[0] = (vt_layer_shape){0, 0, 10};
    unsigned t = VT_LORA_ALL & ~(1u << VT_LORA_V);
    vt_model whole;
    assert_int_equal(vt_model_alloc(&whole, &c, vt_load_all()), 0);
    vt_lora all;
    assert_int_equal(vt_lora_init(&all, &whole, 3, 3.0f, t, 7, 4), 0);
    assert_int_equal(vt_lora_count(&c, 3, t, 0, c.n_layers, NULL), all.n_params);
    for (int l0 = 0; l0 < c.n_layers; l0++) {
        vt_model part;
        assert_int_equal(vt_model_alloc(&part, &c, (vt_load_parts){l0, c.n_layers, l0 == 0, 1}), 0);
        vt_lora lo;
        assert_int_equal(vt_lora_init(&lo, &part, 3, 3.0f, t, 7, 4), 0);
        size_t off = vt_lora_count(&c, 3, t, 0, l0, NULL);
        assert_int_equal(off + lo.n_params, all.n_params);
        assert_true(lo.n_params > 0);
        assert_memory_equal(lo.arena, all.arena + off, sizeof(float) * lo.n_params);
        vt_lora_free(&lo);
        vt_model_free(&part);
    }
    vt_lora_free(&all);
    vt_model_free(&whole);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_all_targets),
        cmocka_unit_test(test_gradients_pruned_some_targets),
        cmocka_unit_test(test_merge_equals_unmerged),
        cmocka_unit_test(test_stage_adapters_are_a_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
