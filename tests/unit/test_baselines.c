/* test_baselines.c — baseline scores: group costs, magnitude reacts to a unit's weights, random is seeded and
 * uniform, Taylor importance is zero for a unit without output and equals a finite difference of the loss, and a
 * baseline prune lands at the budget with a model that runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune/baselines.h"
#include "prune/budget.h"
#include "data/calib.h"
#include "util/error.h"
#include "nn/forward.h"
#include "nn/loss.h"
#include "nn/masks.h"
#include "testutil.h"
#include "util/rng.h"

/* tu_small_config: dim 16, 2 layers, 4 heads / 2 KV heads of 4 dims, ffn 24, vocab 32. */
enum { D = 16, HD = 4, F = 24, V = 32 };


static void random_tokens(int32_t *tok, int n, int vocab, unsigned seed) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)((vt_lcg32(&seed) >> 8) % (unsigned)vocab);
}

/* Scores of `kind` for model m with a fresh layout (returned in mk). */
static float *scores_of(const vt_model *m, vt_masks *mk, vt_score_kind kind, const vt_calib *calib, int batches,
                        int bs, uint64_t seed) {
    assert_int_equal(vt_masks_init(mk, &m->cfg, 1), 0);
    float *s = malloc(sizeof(float) * mk->n);
    if (vt_baseline_scores(m, mk, kind, calib, batches, bs, seed, s)) fail_msg("scores failed: %s", vt_error());
    for (size_t j = 0; j < mk->n; j++)
        if (!isfinite(s[j])) fail_msg("%s score of gate %zu is %g", vt_score_kind_name(kind), j, s[j]);
    return s;
}

static void test_costs(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 1), 0);
    double *cost = malloc(sizeof(double) * mk.n);
    vt_baseline_costs(&c, &mk, cost);
    /* hidden: embedding column, final norm; per layer two norms, q/k/v column (16+8+8), o row (16),
     * gate/up column (48), down row (24). */
    double hidden = V + 1 + 2 * (1 + 32 + 16 + 1 + 48 + 24);
    for (int i = 0; i < D; i++) assert_true(cost[i] == hidden);
    for (int l = 0; l < 2; l++) {
        assert_true(cost[vt_gate_heads(&mk, l)] == 2 * HD * D + 2 * HD * D / 2.0); /* q, o; half of k, v */
        assert_true(cost[vt_gate_ffn(&mk, l) + 7] == 3 * D);
        assert_true(cost[vt_gate_blocks(&mk, l)] == D + D * (2 * 16 + 2 * 8));
        assert_true(cost[vt_gate_blocks(&mk, l) + 1] == D + 3 * F * D);
    }
    /* The two blocks and the final norm are every parameter but the embedding. */
    double blocks = 0;
    for (int l = 0; l < 2; l++) blocks += cost[vt_gate_blocks(&mk, l)] + cost[vt_gate_blocks(&mk, l) + 1];
    assert_true(blocks + D + (double)V * D == (double)vt_params_total(&c));
    free(cost);
    vt_masks_free(&mk);
    vt_config_free(&c);
}

/* Index of the lowest (best) score among gates [a, b). */
static size_t best_in(const float *s, size_t a, size_t b) {
    size_t k = a;
    for (size_t j = a; j < b; j++) k = s[j] < s[k] ? j : k;
    return k;
}

static void test_magnitude_scaled_head_is_best(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 3);
    vt_layer_weights *w = &m.layers[1];
    int h = 2;
    for (int r = h * HD; r < (h + 1) * HD; r++)
        for (int i = 0; i < D; i++) w->wq[r * D + i] *= 10.0f;
    for (int i = 0; i < D; i++)
        for (int k = h * HD; k < (h + 1) * HD; k++) w->wo[i * 16 + k] *= 10.0f;
    vt_masks mk;
    float *s = scores_of(&m, &mk, VT_SCORE_MAGNITUDE, NULL, 0, 0, 0);
    size_t best = vt_gate_heads(&mk, 0);
    for (int l = 0; l < 2; l++) {
        size_t k = best_in(s, vt_gate_heads(&mk, l), vt_gate_heads(&mk, l) + 4);
        best = s[k] < s[best] ? k : best;
    }
    assert_int_equal(best, vt_gate_heads(&mk, 1) + (size_t)h);
    /* A neuron's score is minus the mean square of its gate row, up row and down column. */
    int j = 5;
    const vt_layer_weights *w0 = &m.layers[0];
    double ss = 0;
    for (int i = 0; i < D; i++) {
        double g = w0->w_gate[j * D + i], u = w0->w_up[j * D + i], dn = w0->w_down[i * F + j];
        ss += g * g + u * u + dn * dn;
    }
    assert_float_equal(s[vt_gate_ffn(&mk, 0) + (size_t)j], -ss / (3 * D), 1e-7);
    free(s);
    vt_masks_free(&mk);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* Every weight of a tied model belongs to exactly one hidden-dim group and one block group (or the embedding and
 * final norm); every matrix weight of a layer to exactly one head or neuron group (k/v rows shared out). */
static void test_magnitude_groups_partition_weights(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 13);
    vt_masks mk;
    float *s = scores_of(&m, &mk, VT_SCORE_MAGNITUDE, NULL, 0, 0, 0);
    double *cost = malloc(sizeof(double) * mk.n);
    vt_baseline_costs(&c, &mk, cost);
    double all = 0, units = 0, hidden = 0, blocks = 0, heads_neurons = 0;
    for (size_t i = 0; i < m.arena_floats; i++) all += (double)m.arena[i] * m.arena[i];
    for (int l = 0; l < 2; l++) {
        const vt_layer_weights *w = &m.layers[l];
        const float *mats[] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        const int len[] = {16 * D, 8 * D, 8 * D, 16 * D, F * D, F * D, F * D};
        for (int k = 0; k < 7; k++)
            for (int i = 0; i < len[k]; i++) units += (double)mats[k][i] * mats[k][i];
    }
    for (size_t j = 0; j < mk.n; j++) {
        double ss = -(double)s[j] * cost[j];
        if (mk.group[j] == VT_GROUP_HIDDEN) hidden += ss;
        if (mk.group[j] == VT_GROUP_BLOCKS) blocks += ss;
        if (mk.group[j] == VT_GROUP_HEADS || mk.group[j] == VT_GROUP_FFN) heads_neurons += ss;
    }
    double embed_final = 0;
    for (int i = 0; i < V * D; i++) embed_final += (double)m.embed[i] * m.embed[i];
    for (int i = 0; i < D; i++) embed_final += (double)m.final_norm[i] * m.final_norm[i];
    assert_float_equal(hidden, all, 1e-5 * all);
    assert_float_equal(blocks + embed_final, all, 1e-5 * all);
    assert_float_equal(heads_neurons, units, 1e-5 * units);
    free(cost);
    free(s);
    vt_masks_free(&mk);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_magnitude_zero_neuron_is_worst(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 4);
    vt_layer_weights *w = &m.layers[0];
    int j = 11;
    for (int i = 0; i < D; i++) w->w_gate[j * D + i] = w->w_up[j * D + i] = w->w_down[i * F + j] = 0.0f;
    vt_masks mk;
    float *s = scores_of(&m, &mk, VT_SCORE_MAGNITUDE, NULL, 0, 0, 0);
    size_t z = vt_gate_ffn(&mk, 0) + (size_t)j;
    assert_true(s[z] == 0.0f);
    for (size_t k = 0; k < mk.n; k++)
        if (k != z && !(s[k] < s[z])) fail_msg("gate %zu scores %g, not better than the zeroed neuron", k, s[k]);
    free(s);
    vt_masks_free(&mk);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_random_scores(void **state) {
    (void)state;
    vt_config c;
    tu_stories_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 5);
    vt_masks mk, mk2, mk3;
    float *a = scores_of(&m, &mk, VT_SCORE_RANDOM, NULL, 0, 0, 42);
    float *b = scores_of(&m, &mk2, VT_SCORE_RANDOM, NULL, 0, 0, 42);
    float *o = scores_of(&m, &mk3, VT_SCORE_RANDOM, NULL, 0, 0, 43);
    size_t n = mk.n, same = 0;
    assert_memory_equal(a, b, sizeof(float) * n);
    int bins[10] = {0};
    double mean = 0;
    for (size_t j = 0; j < n; j++) {
        same += a[j] == o[j];
        assert_true(a[j] >= 0.0f && a[j] < 1.0f);
        bins[(int)(a[j] * 10)]++;
        mean += a[j] / n;
    }
    assert_true(same < n / 100);
    if (fabs(mean - 0.5) > 0.03) fail_msg("mean of %zu random scores is %g", n, mean);
    for (int k = 0; k < 10; k++)
        if (bins[k] < (int)n / 20 || bins[k] > (int)n * 3 / 20) fail_msg("bin %d holds %d of %zu scores", k, bins[k], n);
    free(a);
    free(b);
    free(o);
    vt_masks_free(&mk);
    vt_masks_free(&mk2);
    vt_masks_free(&mk3);
    vt_model_free(&m);
    vt_config_free(&c);
}

enum { NSEQ = 4, T = 12 };

static void test_taylor_zero_output_unit(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 6);
    int j = 9;
    for (int i = 0; i < D; i++) m.layers[1].w_down[i * F + j] = 0.0f;
    int32_t tok[NSEQ * T];
    random_tokens(tok, NSEQ * T, V, 77);
    vt_calib cal;
    assert_int_equal(vt_calib_init(&cal, tok, NSEQ * T, 1.0, T, 0), 0);
    vt_masks mk;
    float *s = scores_of(&m, &mk, VT_SCORE_TAYLOR, &cal, 2, 2, 9);
    size_t z = vt_gate_ffn(&mk, 1) + (size_t)j;
    assert_true(s[z] == 0.0f);
    for (size_t k = 0; k < mk.n; k++)
        if (k != z && !(s[k] < 0.0f)) fail_msg("taylor score of gate %zu is %g, want < 0", k, s[k]);
    free(s);
    vt_masks_free(&mk);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* Mean next-token cross-entropy of m over the NSEQ sequences with the one gate row z. */
static double loss_with_gates(const vt_model *m, const vt_masks *mk, const float *z, const int32_t *tok) {
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, m, NSEQ, T, T), 0);
    int rows = NSEQ * T;
    float *x = malloc(sizeof(float) * rows * D), *logits = malloc(sizeof(float) * rows * V);
    float *dl = calloc((size_t)rows * V, sizeof(float));
    int32_t tgt[NSEQ * T];
    for (int r = 0; r < rows; r++) tgt[r] = r % T + 1 < T ? tok[r + 1] : -1;
    vt_gates g = {mk, z, 0};
    vt_embed_gated(m, tok, NSEQ, T, &g, x);
    vt_layers_forward_ex(m, &f, 0, m->cfg.n_layers, x, NSEQ, T, 0, &g, NULL);
    vt_head_forward(m, &f, x, rows, logits);
    double loss = vt_loss_ce(logits, tgt, rows, V, 1.0f, dl);
    vt_fwd_free(&f);
    free(x);
    free(logits);
    free(dl);
    return loss;
}

/* Two batches of two sequences cover the four calibration sequences once, so the Taylor loss is the
 * mean cross-entropy over all four: its gate gradient must match a central difference of it. */
static void test_taylor_matches_finite_difference(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 7);
    int32_t tok[NSEQ * T];
    random_tokens(tok, NSEQ * T, V, 78);
    vt_calib cal;
    assert_int_equal(vt_calib_init(&cal, tok, NSEQ * T, 1.0, T, 0), 0);
    vt_masks mk;
    float *s = scores_of(&m, &mk, VT_SCORE_TAYLOR, &cal, 2, 2, 10);
    double *cost = malloc(sizeof(double) * mk.n);
    vt_baseline_costs(&c, &mk, cost);
    float *z = malloc(sizeof(float) * mk.n);
    /* The most important gate of each kind (large gradients, well above float noise), and some others. */
    size_t check[8] = {best_in(s, 0, D),
                       best_in(s, vt_gate_heads(&mk, 0), vt_gate_heads(&mk, 0) + 4),
                       best_in(s, vt_gate_ffn(&mk, 1), vt_gate_ffn(&mk, 1) + F),
                       best_in(s, vt_gate_blocks(&mk, 0), vt_gate_blocks(&mk, 0) + 2),
                       best_in(s, vt_gate_blocks(&mk, 1), vt_gate_blocks(&mk, 1) + 2),
                       3,
                       vt_gate_heads(&mk, 1) + 1,
                       vt_gate_ffn(&mk, 0) + 4};
    const double h = 1e-2;
    for (int k = 0; k < 8; k++) {
        size_t j = check[k];
        for (size_t i = 0; i < mk.n; i++) z[i] = 1.0f;
        z[j] = (float)(1 + h);
        double lp = loss_with_gates(&m, &mk, z, tok);
        z[j] = (float)(1 - h);
        double lm = loss_with_gates(&m, &mk, z, tok);
        double fd = fabs(lp - lm) / (2 * h), imp = -(double)s[j] * cost[j];
        if (fabs(fd - imp) > 1e-2 * fd)
            fail_msg("gate %zu: taylor importance %.6g, finite difference %.6g", j, imp, fd);
    }
    free(z);
    free(cost);
    free(s);
    vt_masks_free(&mk);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_prune_half_budget(void **state) {
    (void)state;
    vt_config c;
    tu_stories_config(&c);
    vt_model m, out;
    tu_random_model(&m, &c, 8);
    double total = (double)vt_params_total(&c), budget = 0.5 * total;
    if (vt_baseline_prune(&m, VT_SCORE_MAGNITUDE, NULL, 0, 0, 1, VT_BUDGET_PARAMS, budget, (c.seq_len + 1) / 2.0, 1, 0,
                          &out, NULL))
        fail_msg("prune failed: %s", vt_error());
    double kept = (double)vt_params_total(&out.cfg);
    if (kept > budget || kept < 0.98 * budget) fail_msg("kept %.0f parameters for a budget of %.0f", kept, budget);
    assert_int_equal(vt_config_validate(&out.cfg, "pruned"), 0);
    enum { B = 2, TT = 16 };
    int32_t tok[B * TT];
    random_tokens(tok, B * TT, c.vocab, 5);
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, &out, B, TT, TT), 0);
    float *x = malloc(sizeof(float) * B * TT * out.cfg.dim), *logits = malloc(sizeof(float) * B * TT * c.vocab);
    vt_embed(&out, tok, B * TT, x);
    vt_layers_forward(&out, &f, 0, out.cfg.n_layers, x, B, TT, 0);
    vt_head_forward(&out, &f, x, B * TT, logits);
    for (int i = 0; i < B * TT * c.vocab; i++)
        if (!isfinite(logits[i])) fail_msg("logit %d of the pruned model is %g", i, logits[i]);
    free(x);
    free(logits);
    vt_fwd_free(&f);
    vt_model_free(&out);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* A Taylor prune on the small model also fits its (FLOPs) budget. */
static void test_prune_taylor_flops(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m, out;
    tu_random_model(&m, &c, 9);
    int32_t tok[NSEQ * T];
    random_tokens(tok, NSEQ * T, V, 79);
    vt_calib cal;
    assert_int_equal(vt_calib_init(&cal, tok, NSEQ * T, 1.0, T, 0), 0);
    double ctx = (T + 1) / 2.0, budget = 0.6 * vt_structure_size(&c, VT_BUDGET_FLOPS, ctx);
    vt_slice_map map;
    if (vt_baseline_prune(&m, VT_SCORE_TAYLOR, &cal, 2, 2, 1, VT_BUDGET_FLOPS, budget, ctx, 1, 0, &out, &map))
        fail_msg("prune failed: %s", vt_error());
    /* the map for the re-fit: one dense dim per kept dim, in order */
    assert_int_equal(map.n, out.cfg.dim);
    for (int i = 1; i < map.n; i++) assert_true(map.dims[i] > map.dims[i - 1]);
    assert_true(map.dims[map.n - 1] < m.cfg.dim);
    vt_slice_map_free(&map);
    double kept = vt_structure_size(&out.cfg, VT_BUDGET_FLOPS, ctx);
    assert_true(kept <= budget && kept > 0.8 * budget);
    vt_model_free(&out);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_bad_input(void **state) {
    (void)state;
    vt_config c, c2;
    tu_small_config(&c);
    tu_stories_config(&c2);
    vt_model m;
    tu_random_model(&m, &c, 10);
    vt_masks mk, other;
    assert_int_equal(vt_masks_init(&mk, &c, 1), 0);
    assert_int_equal(vt_masks_init(&other, &c2, 1), 0);
    float *s = malloc(sizeof(float) * other.n);
    assert_int_equal(vt_baseline_scores(&m, &other, VT_SCORE_MAGNITUDE, NULL, 0, 0, 0, s), -1);
    assert_non_null(strstr(vt_error(), "does not match the model"));
    assert_int_equal(vt_baseline_scores(&m, &mk, VT_SCORE_TAYLOR, NULL, 1, 1, 0, s), -1);
    assert_non_null(strstr(vt_error(), "calibration"));
    int32_t tok[2 * T];
    random_tokens(tok, 2 * T, V, 1);
    tok[5] = V; /* outside the vocabulary */
    vt_calib cal;
    assert_int_equal(vt_calib_init(&cal, tok, 2 * T, 1.0, T, 0), 0);
    assert_int_equal(vt_baseline_scores(&m, &mk, VT_SCORE_TAYLOR, &cal, 1, 1, 0, s), -1);
    assert_non_null(strstr(vt_error(), "token 5"));
    vt_score_kind k;
    assert_int_equal(vt_score_kind_parse("taylor", &k), 0);
    assert_int_equal(k, VT_SCORE_TAYLOR);
    assert_int_equal(vt_score_kind_parse("wanda", &k), -1);
    assert_non_null(strstr(vt_error(), "wanda"));
    vt_model out;
    assert_int_equal(vt_baseline_prune(&m, VT_SCORE_RANDOM, NULL, 0, 0, 1, VT_BUDGET_PARAMS, 10.0, 8.0, 1, 0, &out, NULL), -1);
    assert_non_null(strstr(vt_error(), "random baseline"));
    free(s);
    vt_masks_free(&mk);
    vt_masks_free(&other);
    vt_model_free(&m);
    vt_config_free(&c);
    vt_config_free(&c2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_costs),
        cmocka_unit_test(test_magnitude_scaled_head_is_best),
        cmocka_unit_test(test_magnitude_groups_partition_weights),
        cmocka_unit_test(test_magnitude_zero_neuron_is_worst),
        cmocka_unit_test(test_random_scores),
        cmocka_unit_test(test_taylor_zero_output_unit),
        cmocka_unit_test(test_taylor_matches_finite_difference),
        cmocka_unit_test(test_prune_half_budget),
        cmocka_unit_test(test_prune_taylor_flops),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
