/* test_refit.c — the least-squares re-fit (prune/refit.h): nothing pruned gives the weights back,
 * re-fitting lowers every block's output error on held-back sequences, and the error it reports
 * equals a fresh measurement of the re-fitted model. (The ridge policy and the ScaLAPACK solve
 * have tests of their own: test_spd_solve_ridge, tests/mpi/test_spd_solve.c.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "lapack_solver.h"

#include "nn/masks.h"
#include "prune/refit.h"
#include "prune/slice.h"

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

static void check_identity(vt_refit_target target) {
    vt_config c;
    tu_small_config(&c);
    vt_model m, p;
    tu_random_model(&m, &c, 3);
    vt_slice_map map;
    copy_model(&m, &p, &map);
    enum { N = 12, T = 16 };
    int32_t tok[N * T];
    random_tokens(tok, N * T, c.vocab, 11);
    vt_refit_params prm = {target, 0, 1e-10, 5, 1};
    vt_spd_solver lapack = tu_lapack_solver();
    vt_refit_ops ops = vt_refit_ops_local(&lapack);
    vt_refit_stat st[VT_REFIT_SLOTS * 8];
    assert_int_equal(vt_refit_model(&m, &p, &map, tok, N, T, &prm, &ops, st), 0);
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
    check_identity(VT_REFIT_LAYER);
}

static void test_nothing_pruned_residual(void **state) {
    (void)state;
    check_identity(VT_REFIT_RESIDUAL);
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

static void check_lowers_error(vt_refit_target target, int inputs) {
    pruned_pair pp;
    make_pair(&pp);
    const vt_config *c = &pp.dense.cfg;
    enum { N = 24, H = 8, T = 32 };
    int32_t *tok = malloc(sizeof(int32_t) * (N + H) * T);
    random_tokens(tok, (N + H) * T, c->vocab, 5);
    const int32_t *held = tok + N * T;
    vt_refit_params prm = {target, 1, 1e-3, 8, inputs};
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
    check_lowers_error(VT_REFIT_LAYER, 0);
}

static void test_lowers_error_residual(void **state) {
    (void)state;
    check_lowers_error(VT_REFIT_RESIDUAL, 0);
}

static void test_lowers_error_inputs(void **state) {
    (void)state;
    check_lowers_error(VT_REFIT_RESIDUAL, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_pruned_layer),   cmocka_unit_test(test_nothing_pruned_residual),
        cmocka_unit_test(test_lowers_error_layer),     cmocka_unit_test(test_lowers_error_residual),
        cmocka_unit_test(test_lowers_error_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
