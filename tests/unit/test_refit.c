/* test_refit.c — the least-squares re-fit (prune/refit.h): nothing pruned gives the weights back,
 * re-fitting lowers every block's output error on held-back sequences, and the error it reports
 * equals a fresh measurement of the re-fitted model; the final norm's re-fit (head) restores
 * perturbed gains and lowers the held-back logit error; reconstruct.seq_len re-cuts the same
 * calibration tokens into longer sequences. (The ridge policy and the ScaLAPACK solve
 * have tests of their own: test_spd_solve_ridge, tests/mpi/test_spd_solve.c.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "lapack_solver.h"

#include "nn/forward.h"
#include "nn/masks.h"
#include "prune/refit.h"
#include "prune/slice.h"
#include "run/prune_refit.h"

static void random_tokens(int32_t *tok, int n, int vocab, unsigned seed) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(((seed = seed * 1103515245u + 12345u) >> 8) % (unsigned)vocab);
}

/* A copy of m made by slicing with every unit kept (weights bit-identical), and its map. */
static void copy_model(const vt_model *m, vt_model *out, vt_slice_map *map) {
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &m->cfg, 1), 0);
    uint8_t *keep = malloc(mk.n);
    memset(keep, 1, mk.n);
    assert_int_equal(vt_slice_model(m, &mk, NULL, keep, 0, out), 0);
    assert_int_equal(vt_slice_map_build(map, &mk, &m->cfg, NULL, keep), 0);
    free(keep);
    vt_masks_free(&mk);
}

static void check_identity(vt_refit_target target, int bias) {
    vt_config c;
    tu_small_config(&c);
    vt_model m, p;
    tu_random_model(&m, &c, 3);
    vt_slice_map map;
    copy_model(&m, &p, &map);
    enum { N = 12, T = 16 };
    int32_t tok[N * T];
    random_tokens(tok, N * T, c.vocab, 11);
    vt_refit_params prm = {target, 0, 1e-10, 5, 1, 0, bias};
    vt_spd_solver lapack = tu_lapack_solver();
    vt_refit_ops ops = vt_refit_ops_local(&lapack);
    vt_refit_stat st[VT_REFIT_SLOTS * 8];
    assert_int_equal(vt_refit_model(&m, &p, &map, tok, N, T, &prm, &ops, st), 0);
    assert_int_equal(p.cfg.attn_bias, bias);
    assert_int_equal(p.cfg.mlp_bias, bias);
    for (int l = 0; bias && l < c.n_layers; l++) /* nothing to correct: the output biases stay 0 */
        for (int i = 0; i < c.dim; i++)
            if (fabsf(p.layers[l].bo[i]) > 1e-5f || fabsf(p.layers[l].b_down[i]) > 1e-5f)
                fail_msg("layer %d dim %d: bias %g / %g instead of 0", l, i, p.layers[l].bo[i], p.layers[l].b_down[i]);
    for (int l = 0; l < c.n_layers; l++) {
        const vt_layer_shape *s = &c.layers[l];
        int hd = c.head_dim, q = s->n_heads * hd, kv = s->n_kv_heads * hd;
        double eq = tu_rel_diff(p.layers[l].wq, m.layers[l].wq, (size_t)c.dim * (q + 2 * kv));
        double eo = tu_rel_diff(p.layers[l].wo, m.layers[l].wo, (size_t)c.dim * q);
        double eg = tu_rel_diff(p.layers[l].w_gate, m.layers[l].w_gate, (size_t)c.dim * 2 * s->ffn);
        double ed = tu_rel_diff(p.layers[l].w_down, m.layers[l].w_down, (size_t)c.dim * s->ffn);
        if (eq > 1e-5 || eo > 1e-5 || eg > 1e-5 || ed > 1e-5)
            fail_msg("target %d layer %d: qkv differs by %g, o_proj %g, gate/up %g, down_proj %g", target, l, eq, eo,
                     eg, ed);
        for (int k = 0; k < VT_REFIT_SLOTS; k++) {
            assert_true(st[VT_REFIT_SLOTS * l + k].done);
            assert_true(st[VT_REFIT_SLOTS * l + k].err_before < 1e-9);
            assert_true(st[VT_REFIT_SLOTS * l + k].err_after < 1e-6);
        }
    }
    vt_slice_map_free(&map);
    vt_model_free(&p);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_nothing_pruned_layer(void **state) {
    (void)state;
    check_identity(VT_REFIT_LAYER, 0);
}

static void test_nothing_pruned_residual(void **state) {
    (void)state;
    check_identity(VT_REFIT_RESIDUAL, 0);
}

static void test_nothing_pruned_bias(void **state) {
    (void)state;
    check_identity(VT_REFIT_RESIDUAL, 1);
}

/* The stories260K model (a real one: its blocks' outputs have structure) or, without the fixture,
 * a random stories-shaped one, pruned: every second query head, 40% of the neurons, a quarter of
 * the hidden dims, layer 2's attention; kept gates between 0.8 and 1.2 folded in. */
typedef struct {
    vt_model dense, pruned;
    vt_slice_map map;
} pruned_pair;

static void make_pair(pruned_pair *pp) {
    if (tu_have_fixture("stories260K/stories260K.bin")) {
        assert_int_equal(vt_model_load(&pp->dense, tu_fixture("stories260K/stories260K.bin"), vt_load_all()), 0);
    } else {
        vt_config c;
        tu_stories_config(&c);
        tu_random_model(&pp->dense, &c, 8);
        vt_config_free(&c);
    }
    const vt_config *c = &pp->dense.cfg;
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, c, 2), 0);
    float *z = malloc(sizeof(float) * mk.n);
    uint8_t *keep = malloc(mk.n);
    uint32_t s = 99;
    for (size_t i = 0; i < mk.n; i++) {
        s = s * 1103515245u + 12345u;
        z[i] = 0.8f + 0.4f * (float)(s >> 8) / (float)(1u << 24);
        keep[i] = 1;
    }
    for (int i = 0; i < c->dim; i += 4) keep[i] = 0;
    for (int l = 0; l < c->n_layers; l++) {
        for (int h = 1; h < c->layers[l].n_heads; h += 2) keep[vt_gate_heads(&mk, l) + h] = 0;
        for (int j = 0; j < c->layers[l].ffn; j++) keep[vt_gate_ffn(&mk, l) + j] = (j * 7 % 10) >= 4;
    }
    keep[vt_gate_blocks(&mk, 2)] = 0;
    for (size_t i = 0; i < mk.n; i++)
        if (!keep[i]) z[i] = 0.0f;
    assert_int_equal(vt_slice_model(&pp->dense, &mk, z, keep, 1, &pp->pruned), 0);
    assert_int_equal(vt_slice_map_build(&pp->map, &mk, c, z, keep), 0);
    assert_int_equal(pp->map.n, pp->pruned.cfg.dim);
    assert_int_equal(pp->pruned.cfg.layers[2].n_heads, 0);
    free(z);
    free(keep);
    vt_masks_free(&mk);
}

static void free_pair(pruned_pair *pp) {
    vt_slice_map_free(&pp->map);
    vt_model_free(&pp->pruned);
    vt_model_free(&pp->dense);
}

/* Re-fits a fresh pair with prm and returns layer 0's o_proj's err_after (its inputs and targets
 * do not depend on earlier re-fits); bias_nonzero: checks that its bias came out non-zero. */
static double first_o_proj_error(const vt_refit_params *prm, int bias_nonzero) {
    pruned_pair pp;
    make_pair(&pp);
    enum { N = 24, T = 32 };
    int32_t *tok = malloc(sizeof(int32_t) * N * T);
    random_tokens(tok, N * T, pp.dense.cfg.vocab, 5);
    vt_spd_solver lapack = tu_lapack_solver();
    vt_refit_ops ops = vt_refit_ops_local(&lapack);
    vt_refit_stat *fit = calloc(VT_REFIT_SLOTS * pp.dense.cfg.n_layers, sizeof *fit);
    assert_int_equal(vt_refit_model(&pp.dense, &pp.pruned, &pp.map, tok, N, T, prm, &ops, fit), 0);
    double e = fit[VT_REFIT_O].err_after, b = 0.0;
    for (int i = 0; bias_nonzero && i < pp.pruned.cfg.dim; i++) b += fabsf(pp.pruned.layers[0].bo[i]);
    if (bias_nonzero) assert_true(b > 1e-6);
    free(fit);
    free(tok);
    free_pair(&pp);
    return e;
}

/* The bias is one more input column: the fitted error can only go down (same inputs, same targets). */
static void test_bias_fits_better(void **state) {
    (void)state;
    vt_refit_params with = {VT_REFIT_RESIDUAL, 1, 1e-3, 8, 0, 0, 1}, without = with;
    without.bias = 0;
    double eb = first_o_proj_error(&with, 1), e0 = first_o_proj_error(&without, 0);
    print_message("layer 0 o_proj calibration error: %.5f without bias, %.5f with\n", e0, eb);
    assert_true(eb <= e0 * (1 + 1e-6));
}

static void check_lowers_error(vt_refit_target target, int inputs, int bias) {
    pruned_pair pp;
    make_pair(&pp);
    const vt_config *c = &pp.dense.cfg;
    enum { N = 24, H = 8, T = 32 };
    int32_t *tok = malloc(sizeof(int32_t) * (N + H) * T);
    random_tokens(tok, (N + H) * T, c->vocab, 5);
    const int32_t *held = tok + N * T;
    vt_refit_params prm = {target, 1, 1e-3, 8, inputs, 0, bias};
    vt_spd_solver lapack = tu_lapack_solver();
    vt_refit_ops ops = vt_refit_ops_local(&lapack);
    int L = c->n_layers;
    vt_refit_stat *before = calloc(VT_REFIT_SLOTS * L, sizeof *before),
                  *after = calloc(VT_REFIT_SLOTS * L, sizeof *after), *fit = calloc(VT_REFIT_SLOTS * L, sizeof *fit),
                  *again = calloc(VT_REFIT_SLOTS * L, sizeof *again);
    assert_int_equal(vt_refit_measure(&pp.dense, &pp.pruned, &pp.map, held, H, T, &prm, before), 0);
    assert_int_equal(vt_refit_model(&pp.dense, &pp.pruned, &pp.map, tok, N, T, &prm, &ops, fit), 0);
    assert_int_equal(vt_refit_measure(&pp.dense, &pp.pruned, &pp.map, held, H, T, &prm, after), 0);
    assert_int_equal(vt_refit_measure(&pp.dense, &pp.pruned, &pp.map, tok, N, T, &prm, again), 0);
    for (int i = 0; i < VT_REFIT_SLOTS * L; i++) {
        if (!fit[i].done) {
            /* layer 2's attention is removed; input projections only when asked */
            assert_true(i / 2 == VT_REFIT_SLOTS * 2 / 2 || (!inputs && i % 2 == 0));
            continue;
        }
        static const char *slot[] = {"qkv", "o_proj", "gate/up", "down_proj"};
        print_message("target %d inputs %d layer %d %s: held-back error %.4f -> %.4f (calibration %.4f -> %.4f)\n",
                      target, inputs, i / VT_REFIT_SLOTS, slot[i % VT_REFIT_SLOTS], before[i].err_before, after[i].err_before,
                      fit[i].err_before, fit[i].err_after);
        if (after[i].err_before >= before[i].err_before)
            fail_msg("layer %d slot %d: the re-fit did not lower the held-back error (%g -> %g)", i / VT_REFIT_SLOTS,
                     i % VT_REFIT_SLOTS,
                     before[i].err_before, after[i].err_before);
        assert_true(fit[i].err_after < fit[i].err_before);
        /* the error the re-fit reports (from the normal equations) is the re-fitted model's */
        assert_true(fabs(again[i].err_before - fit[i].err_after) <= 1e-3 * fit[i].err_before + 1e-7);
    }
    free(before);
    free(after);
    free(fit);
    free(again);
    free(tok);
    free_pair(&pp);
}

static void test_lowers_error_layer(void **state) {
    (void)state;
    check_lowers_error(VT_REFIT_LAYER, 0, 0);
}

static void test_lowers_error_residual(void **state) {
    (void)state;
    check_lowers_error(VT_REFIT_RESIDUAL, 0, 0);
}

static void test_lowers_error_inputs(void **state) {
    (void)state;
    check_lowers_error(VT_REFIT_RESIDUAL, 1, 0);
}

/* With output biases: the reported error is again the re-fitted (biased) model's, so the forward
 * pass adds the biases the solve found. */
static void test_lowers_error_bias(void **state) {
    (void)state;
    check_lowers_error(VT_REFIT_RESIDUAL, 1, 1);
}

/* Logits of n sequences of T tokens, [n T, vocab]. */
static float *logits_of(const vt_model *m, const int32_t *tok, int n, int T) {
    int rows = n * T, V = m->cfg.vocab;
    float *x = malloc(sizeof(float) * rows * m->cfg.dim), *lg = malloc(sizeof(float) * rows * V);
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, m, n, T, T), 0);
    vt_embed(m, tok, rows, x);
    vt_layers_forward(m, &f, 0, m->cfg.n_layers, x, n, T, 0);
    vt_head_forward(m, &f, x, rows, lg);
    vt_fwd_free(&f);
    free(x);
    return lg;
}

/* sum ||centred pruned logits - centred dense logits||^2 / sum ||centred dense logits||^2 (what
 * reconstruct.head fits; a shift over the vocabulary changes no probability). */
static double centred_logit_error(const vt_model *dense, const vt_model *pruned, const int32_t *tok, int n, int T) {
    float *ld = logits_of(dense, tok, n, T), *lp = logits_of(pruned, tok, n, T);
    int V = dense->cfg.vocab;
    double e = 0, y = 0;
    for (int r = 0; r < n * T; r++) {
        double md = 0, mp = 0;
        for (int v = 0; v < V; v++) md += ld[(size_t)r * V + v], mp += lp[(size_t)r * V + v];
        for (int v = 0; v < V; v++) {
            double a = ld[(size_t)r * V + v] - md / V, b = lp[(size_t)r * V + v] - mp / V;
            e += (a - b) * (a - b), y += a * a;
        }
    }
    free(ld);
    free(lp);
    return e / y;
}

/* reconstruct.head with nothing pruned: final_norm's gains scaled per dim by 0.5..1.5 come back to
 * the dense ones, and the logits with them; without head they stay where they were. */
static void test_head_restores_final_norm(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m, p;
    tu_random_model(&m, &c, 3);
    vt_slice_map map;
    copy_model(&m, &p, &map);
    for (int i = 0; i < c.dim; i++) p.final_norm[i] *= (float)(0.5 + (i * 37 % 11) / 10.0);
    enum { N = 12, T = 16 };
    int32_t tok[N * T];
    random_tokens(tok, N * T, c.vocab, 11);
    vt_spd_solver lapack = tu_lapack_solver();
    vt_refit_ops ops = vt_refit_ops_local(&lapack);
    vt_refit_stat head = {0};
    ops.head = &head;
    for (int on = 0; on <= 1; on++) {
        vt_refit_params prm = {VT_REFIT_RESIDUAL, 0, 1e-10, 5, 1, on, 0};
        double before = centred_logit_error(&m, &p, tok, N, T);
        assert_int_equal(vt_refit_model(&m, &p, &map, tok, N, T, &prm, &ops, NULL), 0);
        double gains = tu_rel_diff(p.final_norm, m.final_norm, (size_t)c.dim);
        double after = centred_logit_error(&m, &p, tok, N, T);
        print_message("head %d: final_norm off by %.3g, logit error %.3g -> %.3g\n", on, gains, before, after);
        if (!on) {
            assert_true(gains > 0.1 && !head.done);
            continue;
        }
        if (gains > 1e-4 || after > 1e-8) fail_msg("head re-fit: gains off by %g, logit error %g", gains, after);
        assert_true(head.done && head.err_before > 1e-2 && head.err_after < 1e-8);
        assert_true(fabs(head.err_before - before) < 1e-3 * before);
    }
    vt_slice_map_free(&map);
    vt_model_free(&p);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* reconstruct.head on a pruned model: the same re-fit without and with it (two copies); the head
 * lowers the centred-logit error on held-back sequences, and the error it reports on the
 * calibration ones is the re-fitted model's. */
static void test_head_lowers_logit_error(void **state) {
    (void)state;
    pruned_pair pp[2];
    enum { N = 24, H = 8, T = 32 };
    int32_t *tok = malloc(sizeof(int32_t) * (N + H) * T);
    double held[2];
    vt_refit_stat head = {0};
    for (int on = 0; on <= 1; on++) {
        make_pair(&pp[on]);
        if (on == 0) random_tokens(tok, (N + H) * T, pp[0].dense.cfg.vocab, 5);
        vt_refit_params prm = {VT_REFIT_RESIDUAL, 1, 1e-3, 8, 1, on, 0};
        vt_spd_solver lapack = tu_lapack_solver();
        vt_refit_ops ops = vt_refit_ops_local(&lapack);
        ops.head = &head;
        assert_int_equal(vt_refit_model(&pp[on].dense, &pp[on].pruned, &pp[on].map, tok, N, T, &prm, &ops, NULL), 0);
        held[on] = centred_logit_error(&pp[on].dense, &pp[on].pruned, tok + N * T, H, T);
    }
    double fit_after = centred_logit_error(&pp[1].dense, &pp[1].pruned, tok, N, T);
    print_message("head: held-back logit error %.4f -> %.4f; calibration %.4f -> %.4f\n", held[0], held[1],
                  head.err_before, head.err_after);
    assert_true(head.done && head.err_after < head.err_before && held[1] < held[0]);
    assert_true(fabs(fit_after - head.err_after) < 1e-3 * head.err_after);
    free(tok);
    free_pair(&pp[0]);
    free_pair(&pp[1]);
}

/* reconstruct.seq_len: the re-fit's sequences are the calibration tokens data.* selected, cut anew
 * (the remainder dropped); 0 or data.seq_len leaves the calibration sequences as they are. */
static void test_refit_sequences(void **state) {
    (void)state;
    int32_t tok[1000];
    random_tokens(tok, 1000, 32, 5);
    vt_calib calib, view;
    assert_int_equal(vt_calib_init(&calib, tok, 1000, 1.0, 128, 5), 0); /* 5 x 128 = 640 tokens */
    vt_reconstruct_spec spec = {.sequences = 256, .seq_len = 0};
    assert_int_equal(vt_prune_refit_sequences(&calib, &spec, &view), 0);
    assert_true(view.tokens == tok && view.n_seq == 5 && view.seq_len == 128);
    spec.seq_len = 256;
    assert_int_equal(vt_prune_refit_sequences(&calib, &spec, &view), 0);
    assert_true(view.tokens == tok && view.n_seq == 2 && view.seq_len == 256); /* 640 / 256, not 1000 / 256 */
    assert_ptr_equal(vt_calib_seq(&view, 1), vt_calib_seq(&calib, 2));
    spec.seq_len = 641;
    assert_int_not_equal(vt_prune_refit_sequences(&calib, &spec, &view), 0);
    spec.seq_len = 1;
    assert_int_not_equal(vt_prune_refit_sequences(&calib, &spec, &view), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_pruned_layer),   cmocka_unit_test(test_nothing_pruned_residual),
        cmocka_unit_test(test_lowers_error_layer),     cmocka_unit_test(test_lowers_error_residual),
        cmocka_unit_test(test_lowers_error_inputs),     cmocka_unit_test(test_head_restores_final_norm),
        cmocka_unit_test(test_head_lowers_logit_error), cmocka_unit_test(test_nothing_pruned_bias),
        cmocka_unit_test(test_bias_fits_better),        cmocka_unit_test(test_lowers_error_bias),
        cmocka_unit_test(test_refit_sequences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
