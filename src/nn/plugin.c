/* plugin.c — Variator plugins: the merged FFN of a prompt's groups with its adapter, their backward
 * pass, the plugged prefill over a model's layers, parameter and FLOP counts. */
#include "nn/plugin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "nn/matmul.h"

size_t vt_plugin_layer_params(int dim, int r) {
    size_t d = (size_t)dim, rr = (size_t)r;
    return d + rr * 2 * d + rr + d * rr + d; /* w, W1, b1, W2, b2 */
}

size_t vt_plugin_params(const vt_config *c, int r) {
    size_t n = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (vt_plugin_has_layer(c, l)) n += vt_plugin_layer_params(c->dim, r);
    return n;
}

int vt_plugin_alloc(vt_plugin *p, const vt_config *c, int k, int r) {
    memset(p, 0, sizeof *p);
    if (k < 1 || r < 1) return vt_fail("plugin: group size k = %d and adapter width r = %d must be at least 1", k, r);
    p->k = k;
    p->r = r;
    p->tail = 1;
    p->dim = c->dim;
    p->n_layers = c->n_layers;
    p->arena_floats = vt_plugin_params(c, r);
    p->layers = vt_calloc((size_t)c->n_layers, sizeof *p->layers, "plugin layers");
    p->arena = vt_calloc(p->arena_floats ? p->arena_floats : 1, sizeof(float), "plugin parameters");
    if (!p->layers || !p->arena) {
        vt_plugin_free(p);
        return -1;
    }
    float *q = p->arena;
    size_t d = (size_t)c->dim, rr = (size_t)r;
    for (int l = 0; l < c->n_layers; l++) {
        if (!vt_plugin_has_layer(c, l)) continue;
        vt_plugin_layer *L = &p->layers[l];
        L->w = q, q += d;
        L->w1 = q, q += rr * 2 * d;
        L->b1 = q, q += rr;
        L->w2 = q, q += d * rr;
        L->b2 = q, q += d;
    }
    return 0;
}

size_t vt_plugin_region(const vt_plugin *p, int l0, int l1, size_t *off) {
    const float *lo = NULL, *hi = NULL;
    for (int l = l0; l < l1; l++) {
        const vt_plugin_layer *L = &p->layers[l];
        if (!L->w) continue;
        if (!lo) lo = L->w;
        hi = L->b2 + p->dim;
    }
    *off = lo ? (size_t)(lo - p->arena) : 0;
    return lo ? (size_t)(hi - lo) : 0;
}

void vt_plugin_free(vt_plugin *p) {
    free(p->layers);
    free(p->arena);
    memset(p, 0, sizeof *p);
}

void vt_plugin_init(vt_plugin *p, uint64_t seed) {
    memset(p->arena, 0, p->arena_floats * sizeof(float));
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    float bound = 1.0f / sqrtf(2.0f * (float)p->dim);
    for (int l = 0; l < p->n_layers; l++) {
        float *w1 = p->layers[l].w1;
        if (!w1) continue;
        for (size_t i = 0; i < (size_t)p->r * 2 * p->dim; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17; /* xorshift64 */
            w1[i] = ((float)(s >> 40) / (float)(1u << 24) * 2.0f - 1.0f) * bound;
        }
    }
}

double vt_prefill_flops(const vt_config *c, int P, int k, int r, int tail) {
    int G = k >= 1 ? vt_plugin_groups(P, k, tail) : 0, E = P - G * (k >= 1 ? k : 0);
    double d = c->dim, total = 0.0;
    for (int l = 0; l < c->n_layers; l++) {
        double ffn = 6.0 * d * c->layers[l].ffn;
        /* vt_layer_flops is linear in the context: P positions at contexts 1..P sum to P times the mean */
        total += P * (vt_layer_flops(c, l, (P + 1) / 2.0) - ffn);
        if (!c->layers[l].ffn) continue;
        if (k < 1)
            total += P * ffn;
        else if (l == c->n_layers - 1) /* the last-layer rule: the prompt's last row only */
            total += ffn;
        else /* FFN rows, scores and merge, adapter per grouped position and per group */
            total += (G + E) * ffn + (double)G * k * (4.0 * d + 4.0 * d * r) + G * 2.0 * d * r;
    }
    return total;
}

/* Lays tape buffers out from q for B prompts of `m_rows` FFN rows and `n_rows` grouped positions in
 * all; returns the floats taken (q NULL: only counts). */
static size_t tape_layout(vt_plugin_tape_layer *t, float *q, size_t n_rows, size_t m_rows, size_t d, size_t ffn,
                          size_t r) {
    size_t sizes[5] = {n_rows, m_rows * d, m_rows * 2 * ffn, m_rows * d, n_rows * r}, total = 0;
    vt_plugin_tape_layer unused; /* counting only: no layer to point into */
    if (!t) t = &unused;
    float **dst[5] = {&t->a, &t->c, &t->gu, &t->f, &t->h};
    for (int i = 0; i < 5; i++) {
        if (q) *dst[i] = q + total;
        total += sizes[i];
    }
    return total;
}

int vt_plugin_tape_init(vt_plugin_tape *t, const vt_model *m, const vt_plugin *p, int B, int P) {
    memset(t, 0, sizeof *t);
    const vt_config *c = &m->cfg;
    t->B = B;
    t->P = P;
    t->G = vt_plugin_groups(P, p->k, p->tail);
    t->E = P - t->G * p->k;
    size_t n = (size_t)B * t->G * p->k, mr = (size_t)B * (t->G + t->E), total = 0;
    for (int l = m->layer_begin; l < m->layer_end; l++)
        if (c->layers[l].ffn) total += tape_layout(NULL, NULL, n, mr, c->dim, c->layers[l].ffn, p->r);
    t->layers = vt_calloc((size_t)c->n_layers, sizeof *t->layers, "plugin tape");
    t->arena = vt_malloc((total ? total : 1) * sizeof(float), "plugin tape");
    t->bytes = total * sizeof(float);
    if (!t->layers || !t->arena) {
        vt_plugin_tape_free(t);
        return -1;
    }
    float *q = t->arena;
    for (int l = m->layer_begin; l < m->layer_end; l++)
        if (c->layers[l].ffn) q += tape_layout(&t->layers[l], q, n, mr, c->dim, c->layers[l].ffn, p->r);
    return 0;
}

void vt_plugin_tape_free(vt_plugin_tape *t) {
    free(t->layers);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

int vt_plugin_work_init(vt_plugin_work *w, const vt_model *m, const vt_plugin *p, int B, int P) {
    memset(w, 0, sizeof *w);
    int ffn = 0;
    for (int l = m->layer_begin; l < m->layer_end; l++)
        if (m->cfg.layers[l].ffn > ffn) ffn = m->cfg.layers[l].ffn;
    /* bounds for every prompt length up to P: G k <= P grouped positions, G + E <= P FFN rows */
    size_t rows = (size_t)B * P, d = (size_t)m->cfg.dim, r = (size_t)p->r;
    size_t fwd = tape_layout(&w->fwd, NULL, rows, rows, d, (size_t)ffn, r);
    size_t total = fwd + rows * (r + d + d + d + r + r);
    w->B = B;
    w->P = P;
    w->arena = vt_malloc(total * sizeof(float), "plugin scratch");
    if (!w->arena) return -1;
    w->bytes = total * sizeof(float);
    float *q = w->arena + tape_layout(&w->fwd, w->arena, rows, rows, d, (size_t)ffn, r);
    w->u = q, q += rows * r;
    w->y = q, q += rows * d;
    w->dc = q, q += rows * d;
    w->df = q, q += rows * d;
    w->dh = q, q += rows * r;
    w->dhs = q;
    return 0;
}

void vt_plugin_work_free(vt_plugin_work *w) {
    free(w->arena);
    memset(w, 0, sizeof *w);
}

/* The FFN inputs of B prompts: per prompt its G merged vectors (softmax of w . x_i within each group
 * into a), then its E exact positions' rows of xn. */
static void merge(const float *xn, const float *sw, float *c, float *a, int B, int P, int G, int k, int d) {
    int E = P - G * k;
    for (int b = 0; b < B; b++) {
        for (int g = 0; g < G; g++) {
            const float *x0 = xn + ((size_t)b * P + (size_t)g * k) * d;
            float *ag = a + ((size_t)b * G + g) * k, *cg = c + ((size_t)b * (G + E) + g) * d, mx = -INFINITY, sum = 0;
            for (int i = 0; i < k; i++) {
                double s = 0;
                for (int j = 0; j < d; j++) s += (double)sw[j] * x0[(size_t)i * d + j];
                ag[i] = (float)s;
                mx = ag[i] > mx ? ag[i] : mx;
            }
            for (int i = 0; i < k; i++) sum += (ag[i] = expf(ag[i] - mx));
            for (int i = 0; i < k; i++) ag[i] /= sum;
            for (int j = 0; j < d; j++) cg[j] = 0.0f;
            for (int i = 0; i < k; i++)
                for (int j = 0; j < d; j++) cg[j] += ag[i] * x0[(size_t)i * d + j];
        }
        memcpy(c + ((size_t)b * (G + E) + G) * d, xn + ((size_t)b * P + (size_t)G * k) * d,
               (size_t)E * d * sizeof(float));
    }
}

/* f[M, dim] = SwiGLU FFN of layer l on c[M, dim] with the model's matmuls (gate/up saved in gu). */
static void ffn_rows(const vt_model *m, vt_fwd *fw, int l, const float *c, float *gu, float *f, int M) {
    const vt_config *cf = &m->cfg;
    const vt_layer_weights *wt = &m->layers[l];
    int ffn = cf->layers[l].ffn;
    const vt_layer_packs *pk = vt_model_packs_layer(&fw->packs, l);
    vt_linear(gu, c, wt->w_gate, pk ? &pk->gate_up : NULL, M, cf->dim, 2 * ffn, 0.0f); /* gate, up contiguous */
    vt_add_bias(gu, wt->b_gate_up, M, 2 * ffn);
    for (int r = 0; r < M; r++) {
        const float *gt = gu + (size_t)r * 2 * ffn, *u = gt + ffn;
        float *a = fw->ffn_act + (size_t)r * ffn;
        for (int i = 0; i < ffn; i++) a[i] = gt[i] / (1.0f + expf(-gt[i])) * u[i]; /* as the dense MLP block */
    }
    vt_linear(f, fw->ffn_act, wt->w_down, pk ? &pk->down : NULL, M, ffn, cf->dim, 0.0f);
    vt_add_bias(f, wt->b_down, M, cf->dim);
}

/* y_i = f_g + W2 silu(W1 [x_i ; f_g] + b1) + b2 at grouped positions, y_i = f_i at exact ones. */
static void adapter_forward(const vt_plugin_layer *L, const float *xn, const float *fo, float *h, float *u, float *y,
                            int B, int P, int G, int k, int d, int r) {
    int E = P - G * k, n = G * k;
    for (int b = 0; b < B; b++) {
        const float *xb = xn + (size_t)b * P * d, *fb = fo + (size_t)b * (G + E) * d;
        float *hb = h + (size_t)b * n * r, *ub = u + (size_t)b * n * r, *yb = y + (size_t)b * P * d;
        if (n) {
            vt_sgemm(0, 1, n, r, d, 1.0f, xb, d, L->w1, 2 * d, 0.0f, hb, r);    /* W1x x_i */
            vt_sgemm(0, 1, G, r, d, 1.0f, fb, d, L->w1 + d, 2 * d, 0.0f, ub, r); /* W1f f_g, once per group */
            for (int i = 0; i < n; i++)
                for (int j = 0; j < r; j++) hb[(size_t)i * r + j] += ub[(size_t)(i / k) * r + j] + L->b1[j];
            for (size_t i = 0; i < (size_t)n * r; i++) ub[i] = hb[i] / (1.0f + expf(-hb[i]));
            vt_sgemm(0, 1, n, d, r, 1.0f, ub, r, L->w2, r, 0.0f, yb, d);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < d; j++) yb[(size_t)i * d + j] = fb[(size_t)(i / k) * d + j] + L->b2[j] + yb[(size_t)i * d + j];
        }
        memcpy(yb + (size_t)n * d, fb + (size_t)G * d, (size_t)E * d * sizeof(float));
    }
}

void vt_plugged_ffn_forward(const vt_model *m, vt_fwd *f, const vt_plugin *p, vt_plugin_work *w, int l,
                            const float *xn, float *y, int B, int P, vt_plugin_tape_layer *tl) {
    const vt_plugin_layer *L = &p->layers[l];
    int d = m->cfg.dim, k = p->k, G = vt_plugin_groups(P, k, p->tail), E = P - G * k;
    vt_plugin_tape_layer *t = tl ? tl : &w->fwd;
    merge(xn, L->w, t->c, t->a, B, P, G, k, d);
    ffn_rows(m, f, l, t->c, t->gu, t->f, B * (G + E));
    adapter_forward(L, xn, t->f, t->h, w->u, y, B, P, G, k, d, p->r);
}

/* Adapter backward for prompt b: dh (and u recomputed), df of its FFN rows (overwritten), the direct
 * gradient at its grouped xn rows (overwritten), the adapter's parameter gradients into dL. */
static void adapter_backward(const vt_plugin_layer *L, vt_plugin_layer *dL, vt_plugin_work *w,
                             const vt_plugin_tape_layer *t, const float *xn, const float *dy, float *dxn, int b, int P,
                             int G, int k, int d, int r) {
    int E = P - G * k, n = G * k;
    const float *xb = xn + (size_t)b * P * d, *dyb = dy + (size_t)b * P * d, *fb = t->f + (size_t)b * (G + E) * d;
    const float *hb = t->h + (size_t)b * n * r;
    float *dfb = w->df + (size_t)b * (G + E) * d, *dhb = w->dh + (size_t)b * n * r, *ub = w->u + (size_t)b * n * r;
    memcpy(dfb + (size_t)G * d, dyb + (size_t)n * d, (size_t)E * d * sizeof(float)); /* exact rows: y = f */
    if (!n) return;
    vt_sgemm(0, 0, n, r, d, 1.0f, dyb, d, L->w2, r, 0.0f, dhb, r); /* du = dy W2 */
    for (size_t i = 0; i < (size_t)n * r; i++) {
        float s = 1.0f / (1.0f + expf(-hb[i]));
        ub[i] = hb[i] * s;
        dhb[i] *= s * (1.0f + hb[i] * (1.0f - s)); /* silu' */
    }
    float *dhs = w->dhs;
    memset(dhs, 0, (size_t)G * r * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < r; j++) dhs[(size_t)(i / k) * r + j] += dhb[(size_t)i * r + j];
    if (dL) {
        vt_sgemm(1, 0, d, r, n, 1.0f, dyb, d, ub, r, 1.0f, dL->w2, r);         /* dW2 += dy^T u */
        vt_sgemm(1, 0, r, d, n, 1.0f, dhb, r, xb, d, 1.0f, dL->w1, 2 * d);     /* dW1x += dh^T x */
        vt_sgemm(1, 0, r, d, G, 1.0f, dhs, r, fb, d, 1.0f, dL->w1 + d, 2 * d); /* dW1f += dhs^T f */
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < d; j++) dL->b2[j] += dyb[(size_t)i * d + j];
            for (int j = 0; j < r; j++) dL->b1[j] += dhb[(size_t)i * r + j];
        }
    }
    vt_sgemm(0, 0, G, d, r, 1.0f, dhs, r, L->w1 + d, 2 * d, 0.0f, dfb, d); /* df_g = dhs_g W1f + sum_i dy_i */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) dfb[(size_t)(i / k) * d + j] += dyb[(size_t)i * d + j];
    vt_sgemm(0, 0, n, d, r, 1.0f, dhb, r, L->w1, 2 * d, 0.0f, dxn + (size_t)b * P * d, d); /* dx_i = dh_i W1x */
}

/* The merge's backward for prompt b: dxn rows of its groups gain a_i dc_g + ds_i w, its exact rows
 * take dc; the score vector's gradient goes to dsw when not NULL. */
static void merge_backward(const float *xn, const float *sw, const float *a, const float *dc, float *dxn, float *dsw,
                           int b, int P, int G, int k, int d) {
    int E = P - G * k;
    for (int g = 0; g < G; g++) {
        const float *x0 = xn + ((size_t)b * P + (size_t)g * k) * d, *ag = a + ((size_t)b * G + g) * k;
        const float *dcg = dc + ((size_t)b * (G + E) + g) * d;
        float *dx0 = dxn + ((size_t)b * P + (size_t)g * k) * d, da[k];
        double dot = 0;
        for (int i = 0; i < k; i++) {
            double s = 0;
            for (int j = 0; j < d; j++) s += (double)dcg[j] * x0[(size_t)i * d + j];
            da[i] = (float)s;
            dot += s * ag[i];
        }
        for (int i = 0; i < k; i++) {
            float ds = ag[i] * (da[i] - (float)dot);
            for (int j = 0; j < d; j++) dx0[(size_t)i * d + j] += ag[i] * dcg[j] + ds * sw[j];
            if (dsw)
                for (int j = 0; j < d; j++) dsw[j] += ds * x0[(size_t)i * d + j];
        }
    }
    memcpy(dxn + ((size_t)b * P + (size_t)G * k) * d, dc + ((size_t)b * (G + E) + G) * d, (size_t)E * d * sizeof(float));
}

void vt_plugged_ffn_backward(const vt_model *m, vt_bwd *bw, const vt_plugin *p, vt_plugin_work *w, int l,
                             const float *xn, const float *dy, float *dxn, int B, int P,
                             const vt_plugin_tape_layer *tl, vt_plugin *dp) {
    const vt_plugin_layer *L = &p->layers[l];
    vt_plugin_layer *dL = dp ? &dp->layers[l] : NULL;
    const vt_layer_weights *wt = &m->layers[l];
    int d = m->cfg.dim, k = p->k, r = p->r, ffn = m->cfg.layers[l].ffn, G = vt_plugin_groups(P, k, p->tail);
    int M = B * (G + P - G * k);
    for (int b = 0; b < B; b++) adapter_backward(L, dL, w, tl, xn, dy, dxn, b, P, G, k, d, r);
    const vt_layer_packs *pk = vt_model_packs_layer(&bw->packs, l);
    vt_linear_backward(bw->dpre, NULL, w->df, NULL, wt->w_down, pk ? &pk->down : NULL, M, ffn, d, 0.0f);
    for (int i = 0; i < M; i++) { /* act = silu(gate) * up */
        const float *gt = tl->gu + (size_t)i * 2 * ffn, *u = gt + ffn, *da = bw->dpre + (size_t)i * ffn;
        float *dg = bw->dqkv + (size_t)i * 2 * ffn, *du = dg + ffn;
        for (int j = 0; j < ffn; j++) {
            float sg = 1.0f / (1.0f + expf(-gt[j]));
            du[j] = da[j] * gt[j] * sg;
            dg[j] = da[j] * u[j] * sg * (1.0f + gt[j] * (1.0f - sg));
        }
    }
    vt_linear_backward(w->dc, NULL, bw->dqkv, NULL, wt->w_gate, pk ? &pk->gate_up : NULL, M, d, 2 * ffn, 0.0f);
    for (int b = 0; b < B; b++) merge_backward(xn, L->w, tl->a, w->dc, dxn, dL ? dL->w : NULL, b, P, G, k, d);
}

/* The last-layer rule's forward: the FFN on each prompt's last row (the plugged FFN of a prompt
 * of one position is exact), added to x there; the other rows keep x. */
static void last_ffn_forward(const vt_model *m, vt_fwd *f, const vt_plugin *p, vt_plugin_work *w, int l,
                             const float *xn, float *x, int B, int P, vt_plugin_tape_layer *tl) {
    size_t d = (size_t)m->cfg.dim;
    float *xg = w->dc, *yg = w->df; /* free in the forward pass */
    for (int b = 0; b < B; b++) memcpy(xg + b * d, xn + ((size_t)b * P + P - 1) * d, d * sizeof(float));
    vt_plugged_ffn_forward(m, f, p, w, l, xg, yg, B, 1, tl);
    for (int b = 0; b < B; b++)
        for (size_t j = 0; j < d; j++) x[((size_t)b * P + P - 1) * d + j] += yg[b * d + j];
}

/* Its backward: dxn (overwritten) is the FFN's at the last rows, zero at the others. */
static void last_ffn_backward(const vt_model *m, vt_bwd *bw, const vt_plugin *p, vt_plugin_work *w, int l,
                              const float *xn, const float *dy, float *dxn, int B, int P,
                              const vt_plugin_tape_layer *tl) {
    size_t d = (size_t)m->cfg.dim;
    float *xg = w->y, *dyg = w->y + B * d, *dxg = w->fwd.c; /* free in the backward pass; P >= 2 */
    for (int b = 0; b < B; b++) {
        memcpy(xg + b * d, xn + ((size_t)b * P + P - 1) * d, d * sizeof(float));
        memcpy(dyg + b * d, dy + ((size_t)b * P + P - 1) * d, d * sizeof(float));
    }
    vt_plugged_ffn_backward(m, bw, p, w, l, xg, dyg, dxg, B, 1, tl, NULL);
    memset(dxn, 0, (size_t)B * P * d * sizeof(float));
    for (int b = 0; b < B; b++) memcpy(dxn + ((size_t)b * P + P - 1) * d, dxg + b * d, d * sizeof(float));
}

void vt_plugged_forward(const vt_model *m, vt_fwd *f, const vt_plugin *p, vt_plugin_work *w, int l0, int l1,
                        float *x, int B, int P, vt_tape *tape, vt_plugin_tape *pt) {
    const vt_config *c = &m->cfg;
    size_t n = (size_t)B * P * c->dim;
    for (int l = l0; l < l1; l++) {
        vt_tape_layer *tp = tape ? &tape->layers[l] : NULL;
        if (c->layers[l].n_heads) vt_attention_forward(m, f, l, x, B, P, 0, NULL, tp);
        if (!c->layers[l].ffn) continue;
        float *xn = tp ? tp->xn_mlp : f->xn;
        if (tp) memcpy(tp->x_mlp, x, n * sizeof(float));
        vt_rmsnorm(xn, x, m->layers[l].ffn_norm, B * P, c->dim, c->norm_eps, tp ? tp->inv_rms_mlp : NULL);
        if (l == c->n_layers - 1 && P > 1) {
            last_ffn_forward(m, f, p, w, l, xn, x, B, P, pt ? &pt->layers[l] : NULL);
            continue;
        }
        vt_plugged_ffn_forward(m, f, p, w, l, xn, w->y, B, P, pt ? &pt->layers[l] : NULL);
        for (size_t i = 0; i < n; i++) x[i] += w->y[i];
    }
}

void vt_plugged_backward(const vt_model *m, const vt_fwd *f, vt_bwd *bw, const vt_plugin *p, vt_plugin_work *w,
                         int l0, int l1, float *dx, int B, int P, const vt_tape *tape, const vt_plugin_tape *pt,
                         vt_plugin *dp) {
    const vt_config *c = &m->cfg;
    for (int l = l1 - 1; l >= l0; l--) {
        const vt_tape_layer *tl = &tape->layers[l];
        if (c->layers[l].ffn) { /* x_out = x + y(norm(x)): dx gains the path through the plugged FFN */
            if (l == c->n_layers - 1 && P > 1)
                last_ffn_backward(m, bw, p, w, l, tl->xn_mlp, dx, bw->dxn, B, P, &pt->layers[l]);
            else
                vt_plugged_ffn_backward(m, bw, p, w, l, tl->xn_mlp, dx, bw->dxn, B, P, &pt->layers[l], dp);
            vt_rmsnorm_backward(dx, NULL, bw->dxn, tl->x_mlp, m->layers[l].ffn_norm, tl->inv_rms_mlp, B * P, c->dim,
                                1);
        }
        if (c->layers[l].n_heads) vt_attention_backward(m, f, bw, l, dx, B, P, NULL, tape, NULL, NULL);
    }
}
