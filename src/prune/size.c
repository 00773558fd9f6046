/* size.c — model size accounting: exact sizes of structures, expected sizes from soft gates with
 * their gradients, the structure a keep vector describes (see size.h). */
#include "prune/size.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

double vt_structure_size(const vt_config *c, vt_budget_kind kind, double ctx) {
    return kind == VT_BUDGET_FLOPS ? vt_flops_per_token(c, ctx) : (double)vt_params_total(c);
}

/* ---- expected size ------------------------------------------------------------------------- */

/* Size per unit of each structural term, following vt_params_total / vt_flops_per_token:
 * emb and fnorm per hidden dim; per layer a_norm*D (attention norm), qo*D per query head,
 * kv*D per KV head, ctx_h per query head (attention scores and values), m_norm*D (MLP norm),
 * f*D per neuron. */
typedef struct {
    double emb, fnorm, a_norm, qo, kv, ctx_h, m_norm, f;
} size_coeffs;

static size_coeffs coeffs_for(const vt_config *c, vt_budget_kind kind, double ctx) {
    double hd = c->head_dim;
    size_coeffs s;
    if (kind == VT_BUDGET_FLOPS) {
        s = (size_coeffs){2.0 * c->vocab, 0.0, 0.0, 4.0 * hd, 4.0 * hd, 4.0 * hd * ctx, 0.0, 6.0};
    } else {
        s = (size_coeffs){(double)c->vocab * (c->tied ? 1 : 2), 1.0, 1.0, 2.0 * hd, 2.0 * hd, 0.0, 1.0, 3.0};
    }
    return s;
}

/* p = sigmoid(-k * log_alpha) and q = 1 - p, both computed without cancellation; dla_dmu is
 * d(log_alpha)/d(mu) (d(log_alpha)/d(logvar) is 1). */
static void keep_prob(float mu, float logvar, double k, double *p, double *q, double *dla_dmu) {
    double m = mu, m2 = m * m + 1e-30;
    double x = -k * ((double)logvar - log(m2));
    if (x >= 0) {
        double e = exp(-x);
        *p = 1.0 / (1.0 + e);
        *q = e / (1.0 + e);
    } else {
        double e = exp(x);
        *p = e / (1.0 + e);
        *q = 1.0 / (1.0 + e);
    }
    if (dla_dmu) *dla_dmu = -2.0 * m / m2;
}

static double prob(const vt_masks *mk, size_t j, double k) {
    double p, q;
    keep_prob(mk->mu[j], mk->logvar[j], k, &p, &q, NULL);
    return p;
}

/* prod_i (1 - p_i) over n consecutive gates, kept as the product of the non-zero factors and the
 * number of zero factors, so each derivative prod_{i != j} (1 - p_i) stays exact. */
typedef struct {
    double prod;
    int zeros;
} none_kept;

static none_kept prod_none_kept(const vt_masks *mk, size_t first, int n, double k) {
    none_kept r = {1.0, 0};
    for (int i = 0; i < n; i++) {
        double p, q;
        keep_prob(mk->mu[first + i], mk->logvar[first + i], k, &p, &q, NULL);
        if (q == 0.0) r.zeros++;
        else r.prod *= q;
    }
    return r;
}

/* 1 - prod (1 - p_i): the probability that any of the gates is kept. */
static double any_kept(none_kept r) { return r.zeros ? 1.0 : 1.0 - r.prod; }

/* d(any_kept)/d(p_j) = prod_{i != j} (1 - p_i), for the gate whose 1 - p is q_j. */
static double d_any_kept(none_kept r, double q_j) {
    if (r.zeros == 0) return r.prod / q_j;
    if (r.zeros == 1) return q_j == 0.0 ? r.prod : 0.0;
    return 0.0;
}

/* One layer's soft quantities. */
typedef struct {
    double pa, pm;       /* block keep probabilities */
    double sh, skv;      /* expected kept query heads, KV heads */
    double any_h, any_f; /* probability the block keeps any head / neuron */
    double sf;           /* expected kept neurons */
    none_kept all_h, all_f;
} layer_soft;

static layer_soft layer_terms(const vt_masks *mk, const vt_config *c, int l, double k) {
    layer_soft t;
    memset(&t, 0, sizeof t);
    int nh = mk->heads[l], nf = mk->ffn[l];
    size_t hb = vt_gate_heads(mk, l), fb = vt_gate_ffn(mk, l), bb = vt_gate_blocks(mk, l);
    t.pa = prob(mk, bb, k);
    t.pm = prob(mk, bb + 1, k);
    if (nh > 0) {
        int G = nh / c->layers[l].n_kv_heads;
        for (int h = 0; h < nh; h++) t.sh += prob(mk, hb + (size_t)h, k);
        for (int g = 0; g < nh / G; g++) t.skv += any_kept(prod_none_kept(mk, hb + (size_t)(g * G), G, k));
        t.all_h = prod_none_kept(mk, hb, nh, k);
        t.any_h = any_kept(t.all_h);
    }
    if (nf > 0) {
        for (int j = 0; j < nf; j++) t.sf += prob(mk, fb + (size_t)j, k);
        t.all_f = prod_none_kept(mk, fb, nf, k);
        t.any_f = any_kept(t.all_f);
    }
    return t;
}

/* Adds scale * ds_dp * dp/d(mu, logvar) of gate j. */
static void add_grad(const vt_masks *mk, size_t j, double ds_dp, double k, double scale, float *g_mu,
                     float *g_logvar) {
    double p, q, dla_dmu;
    keep_prob(mk->mu[j], mk->logvar[j], k, &p, &q, &dla_dmu);
    double g = scale * ds_dp * (-k * p * q); /* d/d(log_alpha) */
    g_logvar[j] += (float)g;
    g_mu[j] += (float)(g * dla_dmu);
}

int vt_gates_check_layout(const vt_masks *mk, const vt_config *c) {
    if (mk->n_layers != c->n_layers || mk->dim != c->dim)
        return vt_fail("gates (%d layers, hidden %d) do not match the model (%d layers, hidden %d)", mk->n_layers,
                       mk->dim, c->n_layers, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        if (mk->heads[l] != s->n_heads || mk->ffn[l] != s->ffn)
            return vt_fail("layer %d: gates cover %d heads and %d neurons but the model has %d and %d", l,
                           mk->heads[l], mk->ffn[l], s->n_heads, s->ffn);
        if (s->n_heads && (s->n_kv_heads <= 0 || s->n_heads % s->n_kv_heads))
            return vt_fail("layer %d: %d query heads is not a multiple of %d key/value heads", l, s->n_heads,
                           s->n_kv_heads);
    }
    return 0;
}

double vt_expected_size(const vt_masks *mk, const vt_config *c, vt_budget_kind kind, double ctx, double k,
                        double scale, float *g_mu, float *g_logvar) {
    if (vt_gates_check_layout(mk, c)) return NAN;
    size_coeffs w = coeffs_for(c, kind, ctx);
    double ed = 0.0;
    for (int i = 0; i < mk->dim; i++) ed += prob(mk, (size_t)i, k);

    /* Pass 1: the size, and d(size)/d(E_D) which every hidden gate shares. */
    double ds_ded = w.emb + w.fnorm, size = 0.0;
    for (int l = 0; l < c->n_layers; l++) {
        layer_soft t = layer_terms(mk, c, l, k);
        double attn_per_d = w.a_norm * t.any_h + w.qo * t.sh + w.kv * t.skv;
        double mlp_per_d = w.m_norm * t.any_f + w.f * t.sf;
        size += t.pa * (ed * attn_per_d + w.ctx_h * t.sh) + t.pm * ed * mlp_per_d;
        ds_ded += t.pa * attn_per_d + t.pm * mlp_per_d;
    }
    size += ed * (w.emb + w.fnorm);
    if (!g_mu || !g_logvar) return size;

    /* Pass 2: gradients. */
    for (int i = 0; i < mk->dim; i++) add_grad(mk, (size_t)i, ds_ded, k, scale, g_mu, g_logvar);
    for (int l = 0; l < c->n_layers; l++) {
        layer_soft t = layer_terms(mk, c, l, k);
        int nh = mk->heads[l], nf = mk->ffn[l];
        size_t hb = vt_gate_heads(mk, l), fb = vt_gate_ffn(mk, l), bb = vt_gate_blocks(mk, l);
        add_grad(mk, bb, ed * (w.a_norm * t.any_h + w.qo * t.sh + w.kv * t.skv) + w.ctx_h * t.sh, k, scale, g_mu,
                 g_logvar);
        add_grad(mk, bb + 1, ed * (w.m_norm * t.any_f + w.f * t.sf), k, scale, g_mu, g_logvar);
        int G = nh ? nh / c->layers[l].n_kv_heads : 1;
        for (int g = 0; g < nh / G; g++) {
            size_t gb = hb + (size_t)(g * G);
            none_kept grp = prod_none_kept(mk, gb, G, k);
            for (int h = 0; h < G; h++) {
                double p, q;
                keep_prob(mk->mu[gb + h], mk->logvar[gb + h], k, &p, &q, NULL);
                double d = ed * (w.a_norm * d_any_kept(t.all_h, q) + w.qo + w.kv * d_any_kept(grp, q)) + w.ctx_h;
                add_grad(mk, gb + (size_t)h, t.pa * d, k, scale, g_mu, g_logvar);
            }
        }
        for (int j = 0; j < nf; j++) {
            double p, q;
            keep_prob(mk->mu[fb + j], mk->logvar[fb + j], k, &p, &q, NULL);
            add_grad(mk, fb + (size_t)j, t.pm * ed * (w.m_norm * d_any_kept(t.all_f, q) + w.f), k, scale, g_mu,
                     g_logvar);
        }
    }
    return size;
}

/* ---- structure of a keep vector, the smallest structure ------------------------------------- */

double vt_budget_min_size(const vt_config *c, vt_budget_kind kind, double ctx, int round_to) {
    vt_config m = *c; /* no layers: the same size as every layer removed */
    m.n_layers = 0;
    m.dim = round_to > 1 ? round_to : 1;
    return vt_structure_size(&m, kind, ctx);
}

int vt_keep_structure(const vt_masks *mk, const vt_config *c, const uint8_t *keep, vt_config *out_cfg) {
    memset(out_cfg, 0, sizeof *out_cfg);
    if (vt_gates_check_layout(mk, c)) return -1;
    int dim = 0;
    for (int i = 0; i < mk->dim; i++) dim += keep[i] != 0;
    if (dim == 0) return vt_fail("the keep decision keeps no hidden dim");
    vt_config out;
    if (vt_config_copy(&out, c)) return -1;
    out.dim = dim;
    for (int l = 0; l < c->n_layers; l++) {
        vt_layer_shape *s = &out.layers[l];
        size_t hb = vt_gate_heads(mk, l), fb = vt_gate_ffn(mk, l), bb = vt_gate_blocks(mk, l);
        int nh = s->n_heads, nf = s->ffn, heads = 0, kv = 0, per_kv = 0;
        if (nh && keep[bb]) {
            int G = nh / s->n_kv_heads;
            for (int g = 0; g < nh / G; g++) {
                int n = 0;
                for (int h = 0; h < G; h++) n += keep[hb + (size_t)(g * G + h)] != 0;
                if (!n) continue;
                if (per_kv && n != per_kv) {
                    vt_config_free(&out);
                    return vt_fail("layer %d: kept key/value heads serve different numbers of kept query heads (%d "
                                   "and %d); not a valid grouped-query layer",
                                   l, per_kv, n);
                }
                per_kv = n;
                kv++;
                heads += n;
            }
        }
        int neurons = 0;
        if (nf && keep[bb + 1])
            for (int j = 0; j < nf; j++) neurons += keep[fb + (size_t)j] != 0;
        s->n_heads = heads;
        s->n_kv_heads = kv;
        s->ffn = neurons;
    }
    *out_cfg = out;
    return 0;
}

int vt_keep_kv_heads(const vt_masks *mk, const vt_config *c, const uint8_t *keep, int l, int *kv) {
    int nh = c->layers[l].n_heads, n = 0;
    if (!nh || !keep[vt_gate_blocks(mk, l)]) return 0;
    int G = nh / c->layers[l].n_kv_heads;
    size_t hb = vt_gate_heads(mk, l);
    for (int g = 0; g < nh / G; g++) {
        int any = 0;
        for (int h = 0; h < G; h++) any |= keep[hb + (size_t)(g * G + h)] != 0;
        if (any) kv[n++] = g;
    }
    return n;
}

