/* test_slice.c — slicing a gated model: the sliced model's logits equal the gated model's, pruned
 * rows and columns are really gone, the result round-trips through an HF directory, sliced gates
 * continue training, pipeline stages slice their own parts, and invalid GQA choices are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "nn/forward.h"
#include "io/hf_writer.h"
#include "nn/masks.h"
#include "prune/slice.h"
#include "testutil.h"
#include "util/rng.h"

/* The test model: tu_small_config (dim 16, 4 heads / 2 KV heads of 4 dims, ffn 24, vocab 32)
 * with 4 layers. Pruned: hidden dims 1,4,7,10,13; layer 0 heads 2,3 (so KV head 1 goes) and
 * neurons with j % 10 in {0,3,6}; layer 1 its attention block gate and the same neurons; layer 2
 * both block gates; layer 3 heads 0,2 (each KV head keeps one) and every neuron. RMSNorm epsilon
 * 1e-2. */
enum { D = 16, HD = 4, F = 24, V = 32, D_KEPT = 11, F_KEPT = 16 };
static const int kept_dims[D_KEPT] = {0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15};
static const int kept_neurons[F_KEPT] = {1, 2, 4, 5, 7, 8, 9, 11, 12, 14, 15, 17, 18, 19, 21, 22};

static void make_config(vt_config *c, vt_rope_layout rope, int tied) {
    tu_small_config(c);
    vt_config_free(c);
    c->n_layers = 4;
    c->rope = rope;
    c->tied = tied;
    c->norm_eps = 1e-2f; /* large, so the epsilon fold visibly matters */
    assert_int_equal(vt_config_init_dense(c), 0);
}

static int neuron_pruned(int j) { return j % 10 == 0 || j % 10 == 3 || j % 10 == 6; }

/* prune[mk->n] for the pattern above. */
static void prune_pattern(const vt_masks *mk, uint8_t *prune) {
    memset(prune, 0, mk->n);
    for (int i = 1; i < D; i += 3) prune[i] = 1;
    uint8_t *h0 = prune + vt_gate_heads(mk, 0), *h3 = prune + vt_gate_heads(mk, 3);
    h0[2] = h0[3] = 1;
    h3[0] = h3[2] = 1;
    for (int j = 0; j < F; j++) {
        prune[vt_gate_ffn(mk, 0) + j] = (uint8_t)neuron_pruned(j);
        prune[vt_gate_ffn(mk, 1) + j] = (uint8_t)neuron_pruned(j);
        prune[vt_gate_ffn(mk, 3) + j] = 1;
    }
    prune[vt_gate_blocks(mk, 1)] = 1;
    prune[vt_gate_blocks(mk, 2)] = prune[vt_gate_blocks(mk, 2) + 1] = 1;
}

/* Gates with mu = 1 +- 0.4 and log_alpha = +1 for pruned units, -2 for kept ones; z are their
 * deterministic values and keep = (z != 0). */
static void make_gates(vt_masks *mk, const vt_config *c, float *z, uint8_t *keep) {
    assert_int_equal(vt_masks_init(mk, c, 5), 0);
    uint8_t *prune = malloc(mk->n);
    prune_pattern(mk, prune);
    uint32_t s = 12345;
    for (size_t i = 0; i < mk->n; i++) {
        vt_lcg32(&s);
        float mu = 1.0f + 0.4f * ((float)(s >> 8) / (float)(1u << 24) * 2.0f - 1.0f);
        mk->mu[i] = mu;
        mk->logvar[i] = logf(mu * mu) + (prune[i] ? 1.0f : -2.0f);
    }
    vt_masks_deterministic(mk, 0.0f, z);
    for (size_t i = 0; i < mk->n; i++) {
        keep[i] = z[i] != 0.0f;
        assert_int_equal(keep[i], !prune[i]);
    }
    free(prune);
}

static void random_tokens(int32_t *tok, int n, unsigned seed) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(vt_lcg32(&seed) >> 8) % V;
}

/* Logits [B*T, vocab] of m, gated by g when not NULL. */
static float *logits_of(const vt_model *m, const vt_gates *g, const int32_t *tok, int B, int T) {
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, m, B, T, T), 0);
    float *x = malloc(sizeof(float) * B * T * m->cfg.dim), *logits = malloc(sizeof(float) * B * T * m->cfg.vocab);
    vt_embed_gated(m, tok, B, T, g, x);
    vt_layers_forward_ex(m, &f, 0, m->cfg.n_layers, x, B, T, 0, g, NULL);
    vt_head_forward(m, &f, x, B * T, logits);
    vt_fwd_free(&f);
    free(x);
    return logits;
}

enum { B = 2, T = 8 };

/* Folded slice == deterministic gated model, for both RoPE layouts and both classifier kinds. */
static void check_exact(vt_rope_layout rope, int tied) {
    vt_config c;
    make_config(&c, rope, tied);
    vt_model m, sl;
    tu_random_model(&m, &c, 21);
    vt_masks mk;
    float *z = malloc(sizeof(float) * 4096);
    uint8_t keep[4096];
    make_gates(&mk, &c, z, keep);
    assert_int_equal(vt_slice_model(&m, &mk, z, keep, 1, &sl), 0);
    int32_t tok[B * T];
    random_tokens(tok, B * T, 7);
    vt_gates g = {&mk, z, 0};
    float *gated = logits_of(&m, &g, tok, B, T), *dense = logits_of(&m, NULL, tok, B, T);
    float *sliced = logits_of(&sl, NULL, tok, B, T);
    size_t n = (size_t)B * T * V;
    assert_true(tu_rel_diff(dense, gated, n) > 0.05); /* the gates matter, so the check can fail */
    double err = tu_rel_diff(sliced, gated, n);
    if (err > 1e-4) fail_msg("rope %d tied %d: sliced logits differ from the gated model by %g", rope, tied, err);
    free(gated);
    free(dense);
    free(sliced);
    free(z);
    vt_masks_free(&mk);
    vt_model_free(&sl);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_exact_interleaved_tied(void **s) { (void)s; check_exact(VT_ROPE_INTERLEAVED, 1); }
static void test_exact_interleaved_untied(void **s) { (void)s; check_exact(VT_ROPE_INTERLEAVED, 0); }
static void test_exact_half_tied(void **s) { (void)s; check_exact(VT_ROPE_HALF, 1); }
static void test_exact_half_untied(void **s) { (void)s; check_exact(VT_ROPE_HALF, 0); }

static void assert_near(float got, double want) {
    if (fabs(got - want) > 1e-6 * fmax(1.0, fabs(want))) fail_msg("got %.9g, want %.9g", got, want);
}

/* Sizes shrink, the parameter count is what the kept units add up to, and each sliced tensor holds
 * exactly the kept rows/columns of the original, scaled as specified. */
static void check_tensors(int fold) {
    vt_config c;
    make_config(&c, VT_ROPE_INTERLEAVED, 0);
    vt_model m, sl;
    tu_random_model(&m, &c, 23);
    vt_masks mk;
    float *z = malloc(sizeof(float) * 4096);
    uint8_t keep[4096];
    make_gates(&mk, &c, z, keep);
    assert_int_equal(vt_slice_model(&m, &mk, z, keep, fold, &sl), 0);
    const vt_config *o = &sl.cfg;
    assert_int_equal(o->dim, D_KEPT);
    int want[4][3] = {{2, 1, F_KEPT}, {0, 0, F_KEPT}, {0, 0, 0}, {2, 2, 0}};
    for (int l = 0; l < 4; l++) {
        assert_int_equal(o->layers[l].n_heads, want[l][0]);
        assert_int_equal(o->layers[l].n_kv_heads, want[l][1]);
        assert_int_equal(o->layers[l].ffn, want[l][2]);
    }
    assert_true(sl.layers[1].wq == NULL && sl.layers[2].wq == NULL && sl.layers[2].w_gate == NULL &&
                sl.layers[3].w_gate == NULL);
    assert_int_equal(vt_config_validate(o, "sliced"), 0);
    assert_near(o->norm_eps, (double)c.norm_eps * D / D_KEPT);
    /* Counted by hand: embedding + classifier, final norm; layer 0 attention (norm, q of 2 heads,
     * k and v of 1 KV head, o) and MLP (norm, gate/up/down of 16 neurons), layer 1 MLP, layer 3
     * attention (2 heads, 2 KV heads). */
    size_t d = D_KEPT, mlp = d + 3 * F_KEPT * d;
    size_t expect = 2 * V * d + d + (d + 2 * 8 * d + 2 * 4 * d) + mlp + mlp + (d + 4 * 8 * d);
    assert_int_equal(vt_params_total(o), expect);
    assert_int_equal(sl.arena_floats, expect);

    float rs = sqrtf((float)D / D_KEPT);
    const int q_heads[4][2] = {{0, 1}, {0}, {0}, {1, 3}}, kv_heads[4][2] = {{0}, {0}, {0}, {0, 1}};
    for (int l = 0; l < 4; l += 3) {
        const vt_layer_weights *a = &m.layers[l], *b = &sl.layers[l];
        const float *zh = z + vt_gate_heads(&mk, l), zb = z[vt_gate_blocks(&mk, l)];
        for (int j = 0; j < D_KEPT; j++) {
            int dj = kept_dims[j];
            assert_near(b->attn_norm[j], a->attn_norm[dj] * rs);
            for (int i = 0; i < 2; i++)
                for (int r = 0; r < HD; r++) {
                    int h = q_heads[l][i], src = h * HD + r, dst = i * HD + r;
                    assert_near(b->wq[dst * D_KEPT + j], a->wq[src * D + dj]);
                    double scale = fold ? (double)zh[h] * zb * z[dj] : 1.0;
                    assert_near(b->wo[j * 8 + dst], a->wo[dj * 16 + src] * scale);
                }
            for (int k = 0; k < want[l][1]; k++)
                for (int r = 0; r < HD; r++) {
                    int src = kv_heads[l][k] * HD + r, dst = k * HD + r;
                    assert_near(b->wk[dst * D_KEPT + j], a->wk[src * D + dj]);
                    assert_near(b->wv[dst * D_KEPT + j], a->wv[src * D + dj]);
                }
        }
    }
    const vt_layer_weights *a = &m.layers[0], *b = &sl.layers[0];
    const float *zf = z + vt_gate_ffn(&mk, 0), zb1 = z[vt_gate_blocks(&mk, 0) + 1];
    for (int i = 0; i < F_KEPT; i++)
        for (int j = 0; j < D_KEPT; j++) {
            int n = kept_neurons[i], dj = kept_dims[j];
            assert_near(b->w_gate[i * D_KEPT + j], a->w_gate[n * D + dj]);
            assert_near(b->w_up[i * D_KEPT + j], a->w_up[n * D + dj]);
            assert_near(b->w_down[j * F_KEPT + i], a->w_down[dj * F + n] * (fold ? (double)zf[n] * zb1 * z[dj] : 1.0));
        }
    for (int v = 0; v < V; v++)
        for (int j = 0; j < D_KEPT; j++) {
            int dj = kept_dims[j];
            assert_near(sl.embed[v * D_KEPT + j], m.embed[v * D + dj] * (fold ? z[dj] : 1.0f));
            assert_near(sl.lm_head[v * D_KEPT + j], m.lm_head[v * D + dj]); /* untied: never scaled */
        }
    for (int j = 0; j < D_KEPT; j++) assert_near(sl.final_norm[j], m.final_norm[kept_dims[j]] * rs);
    free(z);
    vt_masks_free(&mk);
    vt_model_free(&sl);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_tensors_folded(void **s) { (void)s; check_tensors(1); }
static void test_tensors_unfolded(void **s) { (void)s; check_tensors(0); }

/* The sliced model written as an HF directory and loaded back gives the same logits. */
static void check_roundtrip(vt_rope_layout rope, int tied) {
    vt_config c;
    make_config(&c, rope, tied);
    vt_model m, sl, back;
    tu_random_model(&m, &c, 29);
    vt_masks mk;
    float *z = malloc(sizeof(float) * 4096);
    uint8_t keep[4096];
    make_gates(&mk, &c, z, keep);
    assert_int_equal(vt_slice_model(&m, &mk, z, keep, 1, &sl), 0);
    char *dir = tu_tempdir(), path[4200];
    snprintf(path, sizeof path, "%s/pruned", dir);
    if (vt_hf_write(&sl, path, VT_F32, 0, NULL)) fail_msg("%s", vt_error());
    if (vt_model_load(&back, path, vt_load_all())) fail_msg("%s", vt_error());
    assert_int_equal(back.cfg.dim, D_KEPT);
    assert_int_equal(back.cfg.tied, tied);
    assert_true(back.cfg.norm_eps == sl.cfg.norm_eps);
    for (int l = 0; l < 4; l++)
        assert_memory_equal(&back.cfg.layers[l], &sl.cfg.layers[l], sizeof(vt_layer_shape));
    assert_int_equal(back.arena_floats, sl.arena_floats);
    int32_t tok[B * T];
    random_tokens(tok, B * T, 11);
    float *want = logits_of(&sl, NULL, tok, B, T), *got = logits_of(&back, NULL, tok, B, T);
    double err = tu_rel_diff(got, want, (size_t)B * T * V);
    if (err > 1e-5) fail_msg("reloaded logits differ by %g", err);
    free(want);
    free(got);
    tu_tempdir_remove(dir);
    free(z);
    vt_masks_free(&mk);
    vt_model_free(&back);
    vt_model_free(&sl);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_roundtrip_interleaved_tied(void **s) { (void)s; check_roundtrip(VT_ROPE_INTERLEAVED, 1); }
static void test_roundtrip_half_untied(void **s) { (void)s; check_roundtrip(VT_ROPE_HALF, 0); }

/* Model a with gates ma (units with dead[i] held at 0) and model b with gates mb give the same
 * logits, for sampled gates (noisy, one row per sequence) and deterministic ones (stride 0). */
static void assert_same_gated(const vt_model *a, const vt_masks *ma, const uint8_t *dead, const vt_model *b,
                              const vt_masks *mb) {
    int32_t tok[B * T];
    random_tokens(tok, B * T, 13);
    int64_t ids[B] = {40, 41};
    float *za = malloc(sizeof(float) * B * ma->n), *ea = malloc(sizeof(float) * B * ma->n);
    float *zb = malloc(sizeof(float) * B * mb->n), *eb = malloc(sizeof(float) * B * mb->n);
    for (int det = 0; det < 2; det++) {
        if (det) {
            vt_masks_deterministic(ma, 0.0f, za);
            vt_masks_deterministic(mb, 0.0f, zb);
        } else {
            vt_masks_sample(ma, 9, 3, ids, B, za, ea);
            vt_masks_sample(mb, 9, 3, ids, B, zb, eb);
        }
        for (int r = 0; r < (det ? 1 : B); r++)
            for (size_t i = 0; i < ma->n; i++)
                if (dead[i]) za[r * ma->n + i] = 0.0f;
        vt_gates ga = {ma, za, det ? 0 : ma->n}, gb = {mb, zb, det ? 0 : mb->n};
        float *want = logits_of(a, &ga, tok, B, T), *got = logits_of(b, &gb, tok, B, T);
        double err = tu_rel_diff(got, want, (size_t)B * T * V);
        if (err > 1e-4) fail_msg("%s gates: sliced model differs by %g", det ? "deterministic" : "sampled", err);
        free(want);
        free(got);
    }
    free(za); free(ea); free(zb); free(eb);
}

/* Iterative pruning: the unfolded slice run with the sliced gates equals the original run with
 * the original gates and the pruned ones at 0; and again after a second round of slicing. */
static void test_sliced_gates_continue(void **s) {
    (void)s;
    vt_config c;
    make_config(&c, VT_ROPE_HALF, 1);
    vt_model m, sl, sl2;
    tu_random_model(&m, &c, 31);
    vt_masks mk, smk, smk2;
    float *z = malloc(sizeof(float) * 4096);
    uint8_t keep[4096], dead[4096];
    make_gates(&mk, &c, z, keep);
    assert_int_equal(vt_slice_model(&m, &mk, NULL, keep, 0, &sl), 0);
    assert_int_equal(vt_slice_masks(&mk, keep, &smk), 0);

    /* The sliced gates' layout is the sliced model's. */
    assert_int_equal(smk.dim, sl.cfg.dim);
    assert_int_equal(smk.n_layers, 4);
    size_t n = D_KEPT;
    for (int l = 0; l < 4; l++) {
        assert_int_equal(smk.heads[l], sl.cfg.layers[l].n_heads);
        assert_int_equal(smk.ffn[l], sl.cfg.layers[l].ffn);
        assert_int_equal(smk.off[l], n);
        n += (size_t)(smk.heads[l] + smk.ffn[l] + 2);
    }
    assert_int_equal(smk.n, n);
    /* Spot checks: layer 3's second head is original head 3; layer 0's MLP block gate. */
    assert_true(smk.mu[vt_gate_heads(&smk, 3) + 1] == mk.mu[vt_gate_heads(&mk, 3) + 3]);
    assert_true(smk.unit_id[vt_gate_heads(&smk, 3) + 1] == mk.unit_id[vt_gate_heads(&mk, 3) + 3]);
    assert_true(smk.logvar[vt_gate_blocks(&smk, 0) + 1] == mk.logvar[vt_gate_blocks(&mk, 0) + 1]);
    assert_int_equal(smk.group[vt_gate_ffn(&smk, 1)], VT_GROUP_FFN);
    assert_int_equal(smk.layer[vt_gate_ffn(&smk, 1)], 1);
    for (size_t i = 0; i < mk.n; i++) dead[i] = !keep[i];
    assert_same_gated(&m, &mk, dead, &sl, &smk);

    /* Round 2 on the sliced model: drop its hidden dim 0 (original 0) and layer 1's first neuron
     * (original 1). Gate ids now differ from gate positions, so the ids must travel. */
    uint8_t keep2[4096];
    memset(keep2, 1, smk.n);
    keep2[0] = 0;
    keep2[vt_gate_ffn(&smk, 1)] = 0;
    assert_int_equal(vt_slice_model(&sl, &smk, NULL, keep2, 0, &sl2), 0);
    assert_int_equal(vt_slice_masks(&smk, keep2, &smk2), 0);
    assert_int_equal(sl2.cfg.dim, D_KEPT - 1);
    assert_int_equal(sl2.cfg.layers[1].ffn, F_KEPT - 1);
    assert_true(smk2.unit_id[vt_gate_ffn(&smk2, 1)] == mk.unit_id[vt_gate_ffn(&mk, 1) + 2]);
    dead[0] = dead[vt_gate_ffn(&mk, 1) + 1] = 1;
    assert_same_gated(&m, &mk, dead, &sl2, &smk2);

    /* The map of round 2 rewritten into the dense indices is the map of one slice of the dense
     * model with both rounds' units gone (the re-fit maps dense targets with it). */
    uint8_t keep_all[4096];
    for (size_t i = 0; i < mk.n; i++) keep_all[i] = !dead[i];
    vt_slice_map direct, composed;
    assert_int_equal(vt_slice_map_build(&direct, &mk, &c, NULL, keep_all), 0);
    assert_int_equal(vt_slice_map_build(&composed, &smk, &sl.cfg, NULL, keep2), 0);
    vt_slice_map_to_dense(&composed, &smk, &sl.cfg, &sl2.cfg, &c);
    assert_int_equal(composed.n, direct.n);
    assert_memory_equal(composed.dims, direct.dims, sizeof(int) * (size_t)direct.n);
    for (int l = 0; l < 4; l++) {
        const vt_layer_shape *sh = &sl2.cfg.layers[l];
        assert_true((composed.qkv_rows[l] == NULL) == (direct.qkv_rows[l] == NULL));
        assert_true((composed.gate_up_rows[l] == NULL) == (direct.gate_up_rows[l] == NULL));
        if (direct.qkv_rows[l])
            assert_memory_equal(composed.qkv_rows[l], direct.qkv_rows[l],
                                sizeof(int) * (size_t)((sh->n_heads + 2 * sh->n_kv_heads) * HD));
        if (direct.gate_up_rows[l])
            assert_memory_equal(composed.gate_up_rows[l], direct.gate_up_rows[l], sizeof(int) * (size_t)(2 * sh->ffn));
    }
    assert_non_null(direct.qkv_rows[3]); /* layer 3: one query head per KV head, KV heads found by their heads */
    vt_slice_map_free(&direct);
    vt_slice_map_free(&composed);

    free(z);
    vt_masks_free(&smk2);
    vt_masks_free(&smk);
    vt_masks_free(&mk);
    vt_model_free(&sl2);
    vt_model_free(&sl);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* A model holding part of the layers (a pipeline stage) with its own copy of the weights. */
static void take_part(vt_model *part, const vt_model *m, vt_load_parts parts) {
    assert_int_equal(vt_model_alloc(part, &m->cfg, parts), 0);
    size_t vd = (size_t)m->cfg.vocab * m->cfg.dim;
    if (parts.embed) memcpy(part->embed, m->embed, vd * sizeof(float));
    if (parts.head) {
        memcpy(part->final_norm, m->final_norm, (size_t)m->cfg.dim * sizeof(float));
        if (part->lm_head != part->embed) memcpy(part->lm_head, m->lm_head, vd * sizeof(float));
    }
    for (int l = parts.layer_begin; l < parts.layer_end; l++) {
        const float *from = m->layers[l].attn_norm ? m->layers[l].attn_norm : m->layers[l].ffn_norm;
        float *to = part->layers[l].attn_norm ? part->layers[l].attn_norm : part->layers[l].ffn_norm;
        memcpy(to, from, vt_layer_params(&m->cfg, l) * sizeof(float)); /* a layer is contiguous */
    }
}

/* Stages slice only what they hold and get the same tensors as slicing the whole model; a tied
 * classifier held without the embedding gets the folded embedding. */
static void test_stage_slices(void **s) {
    (void)s;
    vt_config c;
    make_config(&c, VT_ROPE_INTERLEAVED, 1);
    vt_model m, whole;
    tu_random_model(&m, &c, 37);
    vt_masks mk;
    float *z = malloc(sizeof(float) * 4096);
    uint8_t keep[4096];
    make_gates(&mk, &c, z, keep);
    assert_int_equal(vt_slice_model(&m, &mk, z, keep, 1, &whole), 0);
    vt_load_parts stages[2] = {{0, 2, 1, 0}, {2, 4, 0, 1}};
    size_t vd = (size_t)V * D_KEPT;
    for (int st = 0; st < 2; st++) {
        vt_model part, sl;
        take_part(&part, &m, stages[st]);
        assert_int_equal(vt_slice_model(&part, &mk, z, keep, 1, &sl), 0);
        assert_int_equal(sl.layer_begin, stages[st].layer_begin);
        assert_int_equal(sl.layer_end, stages[st].layer_end);
        assert_int_equal(sl.cfg.dim, D_KEPT);
        for (int l = 0; l < 4; l++)
            assert_memory_equal(&sl.cfg.layers[l], &whole.cfg.layers[l], sizeof(vt_layer_shape));
        assert_true(sl.cfg.norm_eps == whole.cfg.norm_eps);
        if (st == 0) {
            assert_memory_equal(sl.embed, whole.embed, vd * sizeof(float));
            assert_null(sl.final_norm);
        } else {
            assert_null(sl.embed);
            assert_memory_equal(sl.final_norm, whole.final_norm, D_KEPT * sizeof(float));
            assert_memory_equal(sl.lm_head, whole.embed, vd * sizeof(float));
        }
        for (int l = sl.layer_begin; l < sl.layer_end; l++) {
            size_t nl = vt_layer_params(&sl.cfg, l);
            if (!nl) continue;
            const float *a = sl.layers[l].attn_norm ? sl.layers[l].attn_norm : sl.layers[l].ffn_norm;
            const float *b = whole.layers[l].attn_norm ? whole.layers[l].attn_norm : whole.layers[l].ffn_norm;
            assert_memory_equal(a, b, nl * sizeof(float));
        }
        vt_model_free(&sl);
        vt_model_free(&part);
    }
    free(z);
    vt_masks_free(&mk);
    vt_model_free(&whole);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* Keeping 2 query heads of KV head 0 and 1 of KV head 1 is not a grouped-query layer. */
static void test_inconsistent_gqa(void **s) {
    (void)s;
    vt_config c;
    make_config(&c, VT_ROPE_HALF, 1);
    vt_model m, sl;
    tu_random_model(&m, &c, 41);
    vt_masks mk;
    float *z = malloc(sizeof(float) * 4096);
    uint8_t keep[4096];
    make_gates(&mk, &c, z, keep);
    keep[vt_gate_heads(&mk, 3) + 0] = 1; /* layer 3 keeps heads 0, 1, 3 */
    vt_error_clear();
    assert_int_equal(vt_slice_model(&m, &mk, z, keep, 1, &sl), -1);
    if (strncmp(vt_error(), "slicing: layer 3:", 17) || !strstr(vt_error(), "key/value head"))
        fail_msg("error does not name the layer: %s", vt_error());
    assert_null(sl.arena);
    free(z);
    vt_masks_free(&mk);
    vt_model_free(&m);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_interleaved_tied),     cmocka_unit_test(test_exact_interleaved_untied),
        cmocka_unit_test(test_exact_half_tied),            cmocka_unit_test(test_exact_half_untied),
        cmocka_unit_test(test_tensors_folded),             cmocka_unit_test(test_tensors_unfolded),
        cmocka_unit_test(test_roundtrip_interleaved_tied), cmocka_unit_test(test_roundtrip_half_untied),
        cmocka_unit_test(test_sliced_gates_continue),      cmocka_unit_test(test_stage_slices),
        cmocka_unit_test(test_inconsistent_gqa),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
