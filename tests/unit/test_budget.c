/* test_budget.c — exact and expected sizes, their gradients, the Lagrangian, the ramp and the keep decision. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune/budget.h"
#include "util/error.h"
#include "nn/masks.h"
#include "testutil.h"
#include "util/rng.h"

static double urand(unsigned *s) {
    vt_lcg32(s);
    return ((*s >> 8) & 0xFFFFFF) / (double)0x1000000;
}


/* Gate j hard kept (log_alpha -60) or dropped (+60): p is 0 or 1 to double precision. */
static void set_hard(vt_masks *mk, size_t j, int kept) {
    mk->mu[j] = 1.0f;
    mk->logvar[j] = kept ? -60.0f : 60.0f;
}

static void set_all_hard(vt_masks *mk, const uint8_t *keep) {
    for (size_t j = 0; j < mk->n; j++) set_hard(mk, j, keep[j]);
}

static void assert_rel(double a, double b, double tol, const char *what) {
    if (fabs(a - b) > tol * fmax(1.0, fabs(b))) fail_msg("%s: %.12g vs %.12g", what, a, b);
}

/* expected size of hard gates == exact size of the structure vt_keep_structure gives. */
static void check_expected_matches(const vt_masks *mk, const vt_config *c, const uint8_t *keep) {
    vt_config pruned;
    assert_int_equal(vt_keep_structure(mk, c, keep, &pruned), 0);
    for (int kind = 0; kind < 2; kind++) {
        double ctx = 17.5;
        double e = vt_expected_size(mk, c, (vt_budget_kind)kind, ctx, 10.0, 1.0, NULL, NULL);
        double s = vt_structure_size(&pruned, (vt_budget_kind)kind, ctx);
        assert_rel(e, s, 1e-12, kind ? "flops" : "params");
    }
    vt_config_free(&pruned);
}

static void test_structure_size(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    assert_true(vt_structure_size(&c, VT_BUDGET_PARAMS, 3.0) == (double)vt_params_total(&c));
    assert_true(vt_structure_size(&c, VT_BUDGET_FLOPS, 3.0) == vt_flops_per_token(&c, 3.0));
    /* the minimum: one hidden dim (or round_to), no layers: embedding + final norm, or the classifier */
    assert_true(vt_budget_min_size(&c, VT_BUDGET_PARAMS, 3.0, 1) == 32.0 + 1.0);
    assert_true(vt_budget_min_size(&c, VT_BUDGET_PARAMS, 3.0, 8) == 8.0 * 33.0);
    assert_true(vt_budget_min_size(&c, VT_BUDGET_FLOPS, 3.0, 8) == 2.0 * 8 * 32);
    vt_config_free(&c);
}

static void test_expected_equals_exact(void **st) {
    (void)st;
    for (int tied = 0; tied < 2; tied++) {
        vt_config c;
        tu_small_config(&c); /* dim 16, 2 layers, 4 heads in 2 KV groups, ffn 24 */
        c.tied = tied;
        vt_masks mk;
        assert_int_equal(vt_masks_init(&mk, &c, 7), 0);
        uint8_t *keep = calloc(mk.n, 1);
        unsigned s = 11;

        /* everything kept: the dense size */
        memset(keep, 1, mk.n);
        set_all_hard(&mk, keep);
        double dense = vt_expected_size(&mk, &c, VT_BUDGET_PARAMS, 5, 10, 1, NULL, NULL);
        assert_rel(dense, (double)vt_params_total(&c), 1e-12, "dense params");
        check_expected_matches(&mk, &c, keep);

        /* random hidden dims and neurons; layer 0: one head per KV group; layer 1: attention block off */
        for (int i = 0; i < c.dim; i++) keep[i] = urand(&s) < 0.6;
        keep[3] = 1;
        for (int l = 0; l < 2; l++)
            for (int j = 0; j < 24; j++) keep[vt_gate_ffn(&mk, l) + j] = urand(&s) < 0.5;
        size_t h0 = vt_gate_heads(&mk, 0), h1 = vt_gate_heads(&mk, 1);
        keep[h0 + 0] = 1, keep[h0 + 1] = 0, keep[h0 + 2] = 0, keep[h0 + 3] = 1;
        keep[vt_gate_blocks(&mk, 1)] = 0;
        set_all_hard(&mk, keep);
        check_expected_matches(&mk, &c, keep);

        /* layer 0: a whole KV group dropped; layer 1: attention on, MLP block off */
        keep[h0 + 0] = 1, keep[h0 + 1] = 1, keep[h0 + 2] = 0, keep[h0 + 3] = 0;
        keep[vt_gate_blocks(&mk, 1)] = 1;
        keep[vt_gate_blocks(&mk, 1) + 1] = 0;
        set_all_hard(&mk, keep);
        check_expected_matches(&mk, &c, keep);

        /* block gates kept but no head / no neuron kept: the blocks go, norms included */
        for (int h = 0; h < 4; h++) keep[h1 + h] = 0;
        for (int j = 0; j < 24; j++) keep[vt_gate_ffn(&mk, 0) + j] = 0;
        set_all_hard(&mk, keep);
        vt_config pruned;
        assert_int_equal(vt_keep_structure(&mk, &c, keep, &pruned), 0);
        assert_int_equal(pruned.layers[1].n_heads, 0);
        assert_int_equal(pruned.layers[0].ffn, 0);
        vt_config_free(&pruned);
        check_expected_matches(&mk, &c, keep);

        free(keep);
        vt_masks_free(&mk);
        vt_config_free(&c);
    }
}

/* An already pruned structure (layer 0 without attention, layer 1 with 2 heads on 1 KV head). */
static void test_expected_on_pruned_layout(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    c.dim = 12;
    c.layers[0] = (vt_layer_shape){0, 0, 10};
    c.layers[1] = (vt_layer_shape){2, 1, 7};
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 3), 0);
    uint8_t *keep = malloc(mk.n);
    unsigned s = 5;
    for (size_t j = 0; j < mk.n; j++) keep[j] = urand(&s) < 0.7;
    keep[0] = 1;
    keep[vt_gate_heads(&mk, 1)] = 1; /* one head of the pair */
    keep[vt_gate_heads(&mk, 1) + 1] = 0;
    set_all_hard(&mk, keep);
    check_expected_matches(&mk, &c, keep);
    free(keep);
    vt_masks_free(&mk);
    vt_config_free(&c);
}

/* Central differences of the double size in each float mu / logvar (using the step actually
 * taken in float) against the analytic gradient. */
static void check_gradient(vt_masks *mk, const vt_config *c, vt_budget_kind kind, const char *what) {
    double ctx = 9.5, k = 10.0, scale = 0.37;
    vt_masks_zero_grad(mk);
    vt_expected_size(mk, c, kind, ctx, k, scale, mk->g_mu, mk->g_logvar);
    double worst = 0, gmax = 0;
    for (size_t j = 0; j < mk->n; j++) gmax = fmax(gmax, fmax(fabs(mk->g_mu[j]), fabs(mk->g_logvar[j])));
    for (size_t j = 0; j < mk->n; j++) {
        for (int which = 0; which < 2; which++) {
            float *x = which ? &mk->logvar[j] : &mk->mu[j], x0 = *x;
            float xp = x0 + 1e-3f, xm = x0 - 1e-3f;
            *x = xp;
            double fp = vt_expected_size(mk, c, kind, ctx, k, 1, NULL, NULL);
            *x = xm;
            double fm = vt_expected_size(mk, c, kind, ctx, k, 1, NULL, NULL);
            *x = x0;
            double fd = scale * (fp - fm) / ((double)xp - (double)xm);
            double an = which ? mk->g_logvar[j] : mk->g_mu[j];
            double err = fabs(fd - an) / (1e-4 * gmax + 2e-4 * fabs(fd));
            if (err > 1.0)
                fail_msg("%s: gate %zu (group %d) d/d%s: analytic %.9g vs finite difference %.9g", what, j,
                         mk->group[j], which ? "logvar" : "mu", an, fd);
            worst = fmax(worst, err);
        }
    }
    assert_true(worst <= 1.0);
}

static void test_expected_gradient(void **st) {
    (void)st;
    for (int tied = 0; tied < 2; tied++) {
        vt_config c;
        tu_small_config(&c);
        c.tied = tied;
        vt_masks mk;
        assert_int_equal(vt_masks_init(&mk, &c, 9), 0);
        unsigned s = 21 + (unsigned)tied;
        /* log_alpha in [-0.3, 0.3]: p far from 0 and 1 at k = 10 */
        for (size_t j = 0; j < mk.n; j++) {
            mk.mu[j] = (float)(0.6 + 0.8 * urand(&s)) * (urand(&s) < 0.2 ? -1.0f : 1.0f);
            mk.logvar[j] = (float)(log((double)mk.mu[j] * mk.mu[j]) + 0.6 * (urand(&s) - 0.5));
        }
        /* layer 1: most neurons nearly off so the MLP norm's "any neuron kept" term matters */
        for (int j = 3; j < 24; j++) mk.logvar[vt_gate_ffn(&mk, 1) + j] += 2.0f;
        check_gradient(&mk, &c, VT_BUDGET_PARAMS, "params");
        check_gradient(&mk, &c, VT_BUDGET_FLOPS, "flops");

        /* the gradient is added (not stored) and scaled */
        vt_masks_zero_grad(&mk);
        vt_expected_size(&mk, &c, VT_BUDGET_PARAMS, 4, 10, 1.0, mk.g_mu, mk.g_logvar);
        float g0 = mk.g_logvar[0], g1 = mk.g_mu[vt_gate_heads(&mk, 0)];
        vt_expected_size(&mk, &c, VT_BUDGET_PARAMS, 4, 10, 2.0, mk.g_mu, mk.g_logvar);
        assert_float_equal(mk.g_logvar[0], 3 * g0, 1e-5 * fabsf(g0));
        assert_float_equal(mk.g_mu[vt_gate_heads(&mk, 0)], 3 * g1, 1e-5 * fabsf(g1));
        assert_true(g0 < 0); /* raising logvar (noisier gate) lowers the expected size */
        vt_masks_free(&mk);
        vt_config_free(&c);
    }
}

static void test_layout_mismatch(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 1), 0);
    c.layers[1].ffn = 20;
    assert_true(isnan(vt_expected_size(&mk, &c, VT_BUDGET_PARAMS, 1, 10, 1, NULL, NULL)));
    assert_non_null(strstr(vt_error(), "layer 1"));
    vt_masks_free(&mk);
    vt_config_free(&c);
}

static void test_lagrangian_and_ramp(void **st) {
    (void)st;
    vt_lagrangian lg = {0.5, 2.0};
    double ds, dl1, dl2;
    double v = vt_budget_term(0.7, 0.5, &lg, &ds, &dl1, &dl2);
    assert_float_equal(v, 0.5 * 0.2 + 2.0 * 0.04, 1e-12);
    assert_float_equal(ds, 0.5 + 2 * 2.0 * 0.2, 1e-12);
    assert_float_equal(dl1, 0.2, 1e-12);
    assert_float_equal(dl2, 0.04, 1e-12);
    /* derivatives against central differences */
    double h = 1e-6;
    assert_float_equal(ds, (vt_budget_term(0.7 + h, 0.5, &lg, NULL, NULL, NULL) -
                            vt_budget_term(0.7 - h, 0.5, &lg, NULL, NULL, NULL)) / (2 * h), 1e-6);
    vt_lagrangian a = {0.5 + h, 2.0}, b = {0.5 - h, 2.0};
    assert_float_equal(dl1, (vt_budget_term(0.7, 0.5, &a, NULL, NULL, NULL) -
                             vt_budget_term(0.7, 0.5, &b, NULL, NULL, NULL)) / (2 * h), 1e-6);
    /* under the target, lambda1 ascent lowers lambda1 and the s-gradient can turn negative */
    vt_budget_term(0.3, 0.5, &lg, &ds, &dl1, &dl2);
    assert_true(dl1 < 0 && dl2 > 0);
    assert_float_equal(ds, 0.5 + 4.0 * -0.2, 1e-12);

    assert_float_equal(vt_budget_target(0.5, 0, 100), 1.0, 1e-15);
    assert_float_equal(vt_budget_target(0.5, 50, 100), 0.75, 1e-15);
    assert_float_equal(vt_budget_target(0.5, 100, 100), 0.5, 1e-15);
    assert_float_equal(vt_budget_target(0.5, 1000, 100), 0.5, 1e-15);
    assert_float_equal(vt_budget_target(0.2, 25, 100), 0.8, 1e-15);
    assert_float_equal(vt_budget_target(0.5, 0, 0), 0.5, 1e-15);
}

/* ---- the decision ---- */

/* keep and cfg agree, blocks and GQA groups are valid, sizes are exact. */
static void check_decision(const vt_masks *mk, const vt_config *c, const uint8_t *keep, const vt_config *out,
                           vt_budget_kind kind, double ctx, double size) {
    assert_true(size == vt_structure_size(out, kind, ctx));
    assert_int_equal(vt_config_validate(out, "decision"), 0);
    int dim = 0;
    for (int i = 0; i < mk->dim; i++) dim += keep[i];
    assert_int_equal(out->dim, dim);
    for (int l = 0; l < c->n_layers; l++) {
        size_t hb = vt_gate_heads(mk, l), fb = vt_gate_ffn(mk, l), bb = vt_gate_blocks(mk, l);
        int nh = c->layers[l].n_heads, G = nh ? nh / c->layers[l].n_kv_heads : 1;
        int heads = 0, kv = 0, per = 0, neurons = 0;
        for (int g = 0; g < nh / G; g++) {
            int n = 0;
            for (int h = 0; h < G; h++) n += keep[hb + (size_t)(g * G + h)];
            if (n && per) assert_int_equal(n, per); /* every kept KV head serves as many query heads */
            if (n) per = n, kv++;
            heads += n;
        }
        for (int j = 0; j < c->layers[l].ffn; j++) neurons += keep[fb + (size_t)j];
        assert_int_equal(out->layers[l].n_heads, heads);
        assert_int_equal(out->layers[l].n_kv_heads, kv);
        assert_int_equal(out->layers[l].ffn, neurons);
        assert_int_equal(keep[bb], heads > 0); /* block gate kept iff the block remains */
        assert_int_equal(keep[bb + 1], neurons > 0);
        int kvs[64];
        assert_int_equal(vt_keep_kv_heads(mk, c, keep, l, kvs), kv);
        for (int i = 0; i < kv; i++) {
            int any = 0;
            for (int h = 0; h < G; h++) any |= keep[hb + (size_t)(kvs[i] * G + h)];
            assert_true(any);
        }
    }
    vt_config again;
    assert_int_equal(vt_keep_structure(mk, c, keep, &again), 0);
    assert_true(vt_structure_size(&again, kind, ctx) == size);
    vt_config_free(&again);
}

/* Every kept unit of a segment scores lower than every dropped one of it. */
static void check_best_kept(const uint8_t *keep, const float *score, size_t first, int n, const char *what) {
    float worst_kept = -INFINITY, best_dropped = INFINITY;
    for (int i = 0; i < n; i++) {
        float s = score[first + (size_t)i];
        if (keep[first + (size_t)i]) worst_kept = fmaxf(worst_kept, s);
        else best_dropped = fminf(best_dropped, s);
    }
    if (worst_kept > best_dropped)
        fail_msg("%s: a kept unit scores %g, a dropped one %g", what, worst_kept, best_dropped);
}

static void check_preference(const vt_masks *mk, const vt_config *c, const uint8_t *keep, const float *score) {
    check_best_kept(keep, score, 0, mk->dim, "hidden");
    for (int l = 0; l < c->n_layers; l++) {
        if (keep[vt_gate_blocks(mk, l) + 1]) check_best_kept(keep, score, vt_gate_ffn(mk, l), mk->ffn[l], "ffn");
        int nh = c->layers[l].n_heads, G = nh ? nh / c->layers[l].n_kv_heads : 1;
        for (int g = 0; g < nh / G; g++) {
            size_t gb = vt_gate_heads(mk, l) + (size_t)(g * G);
            int any = 0;
            for (int h = 0; h < G; h++) any |= keep[gb + (size_t)h];
            if (any) check_best_kept(keep, score, gb, G, "heads of a KV group");
        }
    }
}

static void decide_and_check(const vt_config *c, unsigned seed, vt_budget_kind kind, double fraction, int round_to,
                             double tightness) {
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, c, seed), 0);
    float *score = malloc(mk.n * sizeof *score);
    uint8_t *keep = malloc(mk.n);
    unsigned s = seed;
    for (size_t j = 0; j < mk.n; j++) score[j] = (float)urand(&s);
    double ctx = (c->seq_len + 1) / 2.0;
    double full = vt_structure_size(c, kind, ctx), budget = fraction * full, size = 0;
    vt_config out;
    if (vt_budget_decide(&mk, c, kind, ctx, budget, round_to, score, keep, &out, &size))
        fail_msg("decide failed: %s", vt_error());
    check_decision(&mk, c, keep, &out, kind, ctx, size);
    check_preference(&mk, c, keep, score);
    assert_true(size <= budget);
    if (size < (1.0 - tightness) * budget)
        fail_msg("seed %u kind %d fraction %.2f round %d: size %.0f is %.2f%% under the budget %.0f", seed, kind,
                 fraction, round_to, size, 100 * (1 - size / budget), budget);
    if (round_to > 1) {
        assert_int_equal(out.dim % round_to, 0);
        for (int l = 0; l < c->n_layers; l++) assert_int_equal(out.layers[l].ffn % round_to, 0);
    }
    vt_config_free(&out);
    free(score);
    free(keep);
    vt_masks_free(&mk);
}

static void test_decide_budgets(void **st) {
    (void)st;
    vt_config small, stories;
    tu_small_config(&small);
    tu_stories_config(&stories);
    for (unsigned seed = 1; seed <= 6; seed++)
        for (int kind = 0; kind < 2; kind++)
            for (int b = 0; b < 2; b++) {
                double fraction = b ? 0.5 : 0.8;
                decide_and_check(&small, seed, (vt_budget_kind)kind, fraction, 1, 0.02);
                decide_and_check(&stories, seed, (vt_budget_kind)kind, fraction, 1, 0.02);
                decide_and_check(&stories, seed, (vt_budget_kind)kind, fraction, 8, 0.05);
            }
    vt_config_free(&small);
    vt_config_free(&stories);
}

static void test_decide_prefers_best(void **st) {
    (void)st;
    vt_config c;
    tu_stories_config(&c);
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 4), 0);
    float *score = malloc(mk.n * sizeof *score);
    uint8_t *keep = malloc(mk.n);
    unsigned s = 77;
    for (size_t j = 0; j < mk.n; j++) score[j] = (float)urand(&s);
    /* the globally best unit is a neuron of layer 3, the next its MLP block gate; a head of layer 2
     * and its attention block gate follow. All must survive a 50% budget. */
    size_t neuron = vt_gate_ffn(&mk, 3) + 100, head = vt_gate_heads(&mk, 2) + 5;
    score[neuron] = -4, score[vt_gate_blocks(&mk, 3) + 1] = -3;
    score[head] = -2, score[vt_gate_blocks(&mk, 2)] = -1;
    /* the worst: layer 4's attention block gate; its heads must all go with it */
    score[vt_gate_blocks(&mk, 4)] = 5;
    double ctx = 256.5, budget = 0.5 * vt_structure_size(&c, VT_BUDGET_PARAMS, ctx), size;
    vt_config out;
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_PARAMS, ctx, budget, 1, score, keep, &out, &size), 0);
    assert_true(keep[neuron] && keep[head]);
    assert_int_equal(out.layers[4].n_heads, 0);
    for (int h = 0; h < 8; h++) assert_int_equal(keep[vt_gate_heads(&mk, 4) + h], 0);
    vt_config_free(&out);

    /* NULL scores: ranked by log_alpha, the same as passing log_alpha explicitly */
    for (size_t j = 0; j < mk.n; j++) {
        mk.logvar[j] = (float)(urand(&s) * 4 - 2);
        score[j] = vt_log_alpha(mk.mu[j], mk.logvar[j]);
    }
    uint8_t *keep2 = malloc(mk.n);
    double size2;
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_FLOPS, ctx, 0.6 * vt_flops_per_token(&c, ctx), 1, score,
                                      keep, &out, &size), 0);
    vt_config_free(&out);
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_FLOPS, ctx, 0.6 * vt_flops_per_token(&c, ctx), 1, NULL, keep2,
                                      &out, &size2), 0);
    vt_config_free(&out);
    assert_memory_equal(keep, keep2, mk.n);
    assert_true(size == size2);
    free(keep2);
    free(score);
    free(keep);
    vt_masks_free(&mk);
    vt_config_free(&c);
}

static void test_decide_edges(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 2), 0);
    uint8_t *keep = malloc(mk.n);
    vt_config out;
    double size, ctx = 32.5, full = vt_structure_size(&c, VT_BUDGET_PARAMS, ctx);

    /* a budget at or above the dense size keeps everything */
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_PARAMS, ctx, full, 1, NULL, keep, &out, &size), 0);
    for (size_t j = 0; j < mk.n; j++) assert_int_equal(keep[j], 1);
    assert_true(size == full);
    vt_config_free(&out);
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_FLOPS, ctx, 1e30, 1, NULL, keep, &out, &size), 0);
    assert_true(size == vt_flops_per_token(&c, ctx));
    vt_config_free(&out);

    /* an impossible budget names the minimum as a fraction */
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_PARAMS, ctx, 1e-6 * full, 1, NULL, keep, &out, &size), -1);
    assert_non_null(strstr(vt_error(), "below the smallest structure"));
    char frac[32];
    snprintf(frac, sizeof frac, "%.6f", 33.0 / full);
    assert_non_null(strstr(vt_error(), frac));
    /* exactly the minimum is allowed: one hidden dim, every layer removed */
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_PARAMS, ctx, 33.0, 1, NULL, keep, &out, &size), 0);
    assert_int_equal(out.dim, 1);
    for (int l = 0; l < 2; l++) assert_true(out.layers[l].n_heads == 0 && out.layers[l].ffn == 0);
    vt_config_free(&out);
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_PARAMS, ctx, full, 0, NULL, keep, &out, &size), -1);
    assert_non_null(strstr(vt_error(), "rounding"));
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_PARAMS, ctx, full, 32, NULL, keep, &out, &size), -1);
    assert_non_null(strstr(vt_error(), "hidden size 16"));

    /* an already pruned structure: layer 0 without attention, layer 1 with one KV head */
    vt_masks_free(&mk);
    c.layers[0] = (vt_layer_shape){0, 0, 24};
    c.layers[1] = (vt_layer_shape){2, 1, 20};
    assert_int_equal(vt_masks_init(&mk, &c, 2), 0);
    full = vt_structure_size(&c, VT_BUDGET_PARAMS, ctx);
    assert_int_equal(vt_budget_decide(&mk, &c, VT_BUDGET_PARAMS, ctx, 0.7 * full, 1, NULL, keep, &out, &size), 0);
    check_decision(&mk, &c, keep, &out, VT_BUDGET_PARAMS, ctx, size);
    assert_int_equal(out.layers[0].n_heads, 0);
    assert_true(size <= 0.7 * full && size >= 0.68 * full);
    vt_config_free(&out);

    free(keep);
    vt_masks_free(&mk);
    vt_config_free(&c);
}

static void test_keep_structure_rejects_invalid_gqa(void **st) {
    (void)st;
    vt_config c, out;
    tu_small_config(&c);
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 2), 0);
    uint8_t *keep = malloc(mk.n);
    memset(keep, 1, mk.n);
    keep[vt_gate_heads(&mk, 1) + 3] = 0; /* group 0 keeps 2 heads, group 1 keeps 1 */
    assert_int_equal(vt_keep_structure(&mk, &c, keep, &out), -1);
    assert_non_null(strstr(vt_error(), "layer 1"));
    keep[vt_gate_heads(&mk, 1) + 2] = 0; /* group 1 gone: one KV head serving 2 */
    assert_int_equal(vt_keep_structure(&mk, &c, keep, &out), 0);
    assert_int_equal(out.layers[1].n_heads, 2);
    assert_int_equal(out.layers[1].n_kv_heads, 1);
    int kv[2];
    assert_int_equal(vt_keep_kv_heads(&mk, &c, keep, 1, kv), 1);
    assert_int_equal(kv[0], 0);
    vt_config_free(&out);
    memset(keep, 0, (size_t)c.dim);
    assert_int_equal(vt_keep_structure(&mk, &c, keep, &out), -1);
    assert_non_null(strstr(vt_error(), "no hidden dim"));
    free(keep);
    vt_masks_free(&mk);
    vt_config_free(&c);
}

/* ---- budget.uniform ---- */

/* The uniform decision: a valid structure, every layer with layer 0's sizes and both blocks, the
 * budget met within tightness, and in every layer the kept neurons and the kept heads of a kept
 * group its own best-scored ones. */
static void uniform_and_check(const vt_config *c, unsigned seed, vt_budget_kind kind, double fraction, int round_to,
                              double tightness) {
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, c, seed), 0);
    float *score = malloc(mk.n * sizeof *score);
    uint8_t *keep = malloc(mk.n);
    unsigned s = seed;
    for (size_t j = 0; j < mk.n; j++) score[j] = (float)urand(&s);
    for (int j = 0; j < mk.ffn[0]; j++) score[vt_gate_ffn(&mk, 0) + (size_t)j] -= 1.0f; /* layer 0 matters more */
    double ctx = (c->seq_len + 1) / 2.0;
    double full = vt_structure_size(c, kind, ctx), budget = fraction * full, size = 0;
    vt_config out;
    if (vt_budget_decide_uniform(&mk, c, kind, ctx, budget, round_to, score, keep, &out, &size))
        fail_msg("uniform decide failed: %s", vt_error());
    check_decision(&mk, c, keep, &out, kind, ctx, size);
    for (int l = 0; l < c->n_layers; l++) {
        if (out.layers[l].n_heads != out.layers[0].n_heads || out.layers[l].n_kv_heads != out.layers[0].n_kv_heads ||
            out.layers[l].ffn != out.layers[0].ffn || out.layers[l].n_heads == 0 || out.layers[l].ffn == 0)
            fail_msg("seed %u: layer %d keeps %d/%d heads, %d neurons; layer 0 %d/%d, %d", seed, l,
                     out.layers[l].n_heads, out.layers[l].n_kv_heads, out.layers[l].ffn, out.layers[0].n_heads,
                     out.layers[0].n_kv_heads, out.layers[0].ffn);
        assert_int_equal(out.layers[l].ffn % round_to, 0);
    }
    assert_int_equal(out.dim % round_to, 0);
    check_preference(&mk, c, keep, score);
    assert_true(size <= budget);
    if (size < (1.0 - tightness) * budget)
        fail_msg("seed %u kind %d fraction %.2f round %d: uniform size %.0f is %.2f%% under the budget %.0f", seed,
                 kind, fraction, round_to, size, 100 * (1 - size / budget), budget);
    vt_config_free(&out);
    free(score);
    free(keep);
    vt_masks_free(&mk);
}

static void test_decide_uniform(void **st) {
    (void)st;
    vt_config small, stories;
    tu_small_config(&small);
    tu_stories_config(&stories);
    for (unsigned seed = 1; seed <= 6; seed++)
        for (int kind = 0; kind < 2; kind++)
            for (int b = 0; b < 3; b++) {
                double fraction = b == 0 ? 0.8 : b == 1 ? 0.5 : 0.3;
                uniform_and_check(&small, seed, (vt_budget_kind)kind, fraction, 1, 0.05);
                uniform_and_check(&stories, seed, (vt_budget_kind)kind, fraction, 1, 0.02);
                uniform_and_check(&stories, seed, (vt_budget_kind)kind, fraction, 8, 0.05);
            }
    vt_config_free(&small);
    vt_config_free(&stories);
}

/* Refused: a source whose layers differ, and a budget below one head and round_to neurons per layer. */
static void test_decide_uniform_refusals(void **st) {
    (void)st;
    vt_config c;
    tu_stories_config(&c);
    double ctx = (c.seq_len + 1) / 2.0, full = vt_structure_size(&c, VT_BUDGET_PARAMS, ctx), size;
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 3), 0);
    uint8_t *keep = malloc(mk.n);
    vt_config out;
    assert_int_equal(vt_budget_decide_uniform(&mk, &c, VT_BUDGET_PARAMS, ctx, 0.001 * full, 1, NULL, keep, &out, &size), -1);
    assert_non_null(strstr(vt_error(), "smallest uniform structure"));
    vt_masks_free(&mk);
    c.layers[2].ffn = 100;
    assert_int_equal(vt_masks_init(&mk, &c, 3), 0);
    assert_int_equal(vt_budget_decide_uniform(&mk, &c, VT_BUDGET_PARAMS, ctx, 0.5 * full, 1, NULL, keep, &out, &size), -1);
    assert_non_null(strstr(vt_error(), "layer 2 has 8 heads, 4 KV heads, 100 FFN neurons"));
    free(keep);
    vt_masks_free(&mk);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure_size),
        cmocka_unit_test(test_expected_equals_exact),
        cmocka_unit_test(test_expected_on_pruned_layout),
        cmocka_unit_test(test_expected_gradient),
        cmocka_unit_test(test_layout_mismatch),
        cmocka_unit_test(test_lagrangian_and_ramp),
        cmocka_unit_test(test_decide_budgets),
        cmocka_unit_test(test_decide_prefers_best),
        cmocka_unit_test(test_decide_edges),
        cmocka_unit_test(test_keep_structure_rejects_invalid_gqa),
        cmocka_unit_test(test_decide_uniform),
        cmocka_unit_test(test_decide_uniform_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
