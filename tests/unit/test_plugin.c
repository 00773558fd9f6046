/* test_plugin.c — Variator plugins: the plugged FFN and the plugged prefill against an independent
 * double-precision reference, their gradients by finite differences, k = 1 exactness, causality,
 * parameter and prefill FLOP counts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "nn/forward.h"
#include "nn/plugin.h"
#include "ref_model.h"
#include "testutil.h"

/* ---- the double-precision reference ---- */

/* A plugin's parameters in double at the offsets of p->arena (perturbed by the FD checks). */
typedef struct {
    const vt_plugin *p;
    double *w;
} ref_plugin;

static const double *PW(const ref_plugin *rp, const float *q) { return rp->w + (q - rp->p->arena); }

static void matvec(double *y, const double *w, const double *x, int n_out, int n_in, int ld) {
    for (int o = 0; o < n_out; o++) {
        double a = 0;
        for (int i = 0; i < n_in; i++) a += w[(size_t)o * ld + i] * x[i];
        y[o] = a;
    }
}

static double silu(double v) { return v / (1 + exp(-v)); }

/* y[d] = SwiGLU FFN of layer l on x[d]. */
static void ref_ffn(const ref_model *r, int l, const double *x, double *y) {
    const vt_model *m = r->m;
    int d = m->cfg.dim, f = m->cfg.layers[l].ffn;
    double *g = malloc(sizeof(double) * 2 * f);
    matvec(g, r->w + ref_offset(r, m->layers[l].w_gate), x, 2 * f, d, d); /* gate then up rows */
    for (int j = 0; j < f; j++) g[j] = silu(g[j]) * g[f + j];
    matvec(y, r->w + ref_offset(r, m->layers[l].w_down), g, d, f, f);
    free(g);
}

/* y[P, d] = the plugged FFN of layer l on one prompt's xn[P, d], written out from the definition. */
static void ref_plugged_ffn(const ref_model *r, const ref_plugin *rp, int l, const double *xn, int P, double *y) {
    const vt_plugin_layer *L = &rp->p->layers[l];
    int d = r->m->cfg.dim, k = rp->p->k, rr = rp->p->r, G = vt_plugin_groups(P, k, rp->p->tail);
    double *c = calloc((size_t)d, 8), *f = calloc((size_t)d, 8), *cat = calloc(2 * (size_t)d, 8);
    double *h = calloc((size_t)rr, 8), *a = calloc((size_t)k, 8), *o = calloc((size_t)d, 8);
    for (int g = 0; g < G; g++) {
        const double *x0 = xn + (size_t)g * k * d;
        double mx = -1e300, sum = 0;
        for (int i = 0; i < k; i++) {
            a[i] = 0;
            for (int j = 0; j < d; j++) a[i] += PW(rp, L->w)[j] * x0[i * d + j];
            mx = fmax(mx, a[i]);
        }
        for (int i = 0; i < k; i++) sum += (a[i] = exp(a[i] - mx));
        for (int j = 0; j < d; j++) {
            c[j] = 0;
            for (int i = 0; i < k; i++) c[j] += a[i] / sum * x0[i * d + j];
        }
        ref_ffn(r, l, c, f);
        for (int i = 0; i < k; i++) {
            memcpy(cat, x0 + i * d, sizeof(double) * d);
            memcpy(cat + d, f, sizeof(double) * d);
            matvec(h, PW(rp, L->w1), cat, rr, 2 * d, 2 * d);
            for (int j = 0; j < rr; j++) h[j] = silu(h[j] + PW(rp, L->b1)[j]);
            matvec(o, PW(rp, L->w2), h, d, rr, rr);
            for (int j = 0; j < d; j++) y[(size_t)(g * k + i) * d + j] = f[j] + o[j] + PW(rp, L->b2)[j];
        }
    }
    for (int t = G * k; t < P; t++) ref_ffn(r, l, xn + (size_t)t * d, y + (size_t)t * d);
    free(c), free(f), free(cat), free(h), free(a), free(o);
}

static void rmsnorm(double *o, const double *x, const double *w, int d, double eps) {
    double ss = 0;
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    for (int i = 0; i < d; i++) o[i] = x[i] / sqrt(ss / d + eps) * w[i];
}

static void rope(double *v, int pos, int hd, double theta, vt_rope_layout layout) {
    for (int j = 0; j < hd / 2; j++) {
        double ang = pos * pow(theta, -2.0 * j / hd), c = cos(ang), s = sin(ang);
        int a = layout == VT_ROPE_INTERLEAVED ? 2 * j : j, b = layout == VT_ROPE_INTERLEAVED ? 2 * j + 1 : j + hd / 2;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

/* x[T, d] += causal attention of layer l (one sequence from position 0). */
static void ref_attention(const ref_model *r, int l, double *x, int T) {
    const vt_config *c = &r->m->cfg;
    const vt_layer_weights *w = &r->m->layers[l];
    int d = c->dim, hd = c->head_dim, nh = c->layers[l].n_heads, nkv = c->layers[l].n_kv_heads;
    int qd = nh * hd, kvd = nkv * hd;
    double *xn = calloc((size_t)d, 8), *q = calloc((size_t)T * qd, 8), *k = calloc((size_t)T * kvd, 8);
    double *v = calloc((size_t)T * kvd, 8), *o = calloc((size_t)T * qd, 8), *sc = calloc((size_t)T, 8);
    double *y = calloc((size_t)d, 8);
    for (int t = 0; t < T; t++) {
        rmsnorm(xn, x + t * d, r->w + ref_offset(r, w->attn_norm), d, c->norm_eps);
        matvec(q + t * qd, r->w + ref_offset(r, w->wq), xn, qd, d, d);
        matvec(k + t * kvd, r->w + ref_offset(r, w->wk), xn, kvd, d, d);
        matvec(v + t * kvd, r->w + ref_offset(r, w->wv), xn, kvd, d, d);
        for (int h = 0; h < nh; h++) rope(q + t * qd + h * hd, t, hd, c->rope_theta, c->rope);
        for (int h = 0; h < nkv; h++) rope(k + t * kvd + h * hd, t, hd, c->rope_theta, c->rope);
    }
    for (int h = 0; h < nh; h++)
        for (int t = 0; t < T; t++) {
            int kh = h / (nh / nkv);
            double mx = -1e300, sum = 0;
            for (int j = 0; j <= t; j++) {
                sc[j] = 0;
                for (int i = 0; i < hd; i++) sc[j] += q[t * qd + h * hd + i] * k[j * kvd + kh * hd + i] / sqrt(hd);
                mx = fmax(mx, sc[j]);
            }
            for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (int j = 0; j <= t; j++)
                for (int i = 0; i < hd; i++) o[t * qd + h * hd + i] += sc[j] / sum * v[j * kvd + kh * hd + i];
        }
    for (int t = 0; t < T; t++) {
        matvec(y, r->w + ref_offset(r, w->wo), o + t * qd, d, qd, qd);
        for (int i = 0; i < d; i++) x[t * d + i] += y[i];
    }
    free(xn), free(q), free(k), free(v), free(o), free(sc), free(y);
}

/* logits[B T, vocab] of B windows of T tokens whose first P run plugged (rp NULL: dense); x_add
 * [B T, d] (may be NULL) is added to the embedding output. */
static void ref_window(const ref_model *r, const ref_plugin *rp, const int32_t *tok, int B, int T, int P,
                       const double *x_add, double *logits) {
    const vt_model *m = r->m;
    const vt_config *c = &m->cfg;
    int d = c->dim;
    double *x = calloc((size_t)T * d, 8), *xn = calloc((size_t)T * d, 8), *y = calloc((size_t)T * d, 8);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++)
                x[t * d + i] = r->w[ref_offset(r, m->embed) + (size_t)tok[b * T + t] * d + i] +
                               (x_add ? x_add[((size_t)b * T + t) * d + i] : 0);
        for (int l = 0; l < c->n_layers; l++) {
            if (c->layers[l].n_heads) ref_attention(r, l, x, T);
            if (!c->layers[l].ffn) continue;
            for (int t = 0; t < T; t++)
                rmsnorm(xn + t * d, x + t * d, r->w + ref_offset(r, m->layers[l].ffn_norm), d, c->norm_eps);
            int p0 = rp ? P : 0;
            if (rp && l == c->n_layers - 1) { /* the last-layer rule: no FFN at prompt rows 0..P-2 */
                memset(y, 0, sizeof(double) * (size_t)(P - 1) * d);
                p0 = P - 1;
            } else if (rp) {
                ref_plugged_ffn(r, rp, l, xn, P, y);
            }
            for (int t = p0; t < T; t++) ref_ffn(r, l, xn + t * d, y + t * d);
            for (int i = 0; i < T * d; i++) x[i] += y[i];
        }
        for (int t = 0; t < T; t++) {
            rmsnorm(xn + t * d, x + t * d, r->w + ref_offset(r, m->final_norm), d, c->norm_eps);
            matvec(logits + ((size_t)b * T + t) * c->vocab, r->w + ref_offset(r, m->lm_head), xn + t * d, c->vocab, d,
                   d);
        }
    }
    free(x), free(xn), free(y);
}

static void random_plugin(vt_plugin *p, const vt_config *c, int k, int r, unsigned seed) {
    assert_int_equal(vt_plugin_alloc(p, c, k, r), 0);
    for (size_t i = 0; i < p->arena_floats; i++) p->arena[i] = (float)tu_urand(&seed) * 0.8f;
}

static void ref_plugin_init(ref_plugin *rp, const vt_plugin *p) {
    rp->p = p;
    rp->w = malloc(sizeof(double) * p->arena_floats);
    for (size_t i = 0; i < p->arena_floats; i++) rp->w[i] = p->arena[i];
}

/* ---- the plugged FFN of one layer ---- */

/* L = sum dy o y over B prompts of P positions, in double. */
static double ffn_loss(const ref_model *r, const ref_plugin *rp, const double *xn, const float *dy, int B, int P) {
    int d = r->m->cfg.dim;
    double *y = malloc(sizeof(double) * (size_t)P * d), L = 0;
    for (int b = 0; b < B; b++) {
        ref_plugged_ffn(r, rp, 0, xn + (size_t)b * P * d, P, y);
        for (int i = 0; i < P * d; i++) L += dy[(size_t)b * P * d + i] * y[i];
    }
    free(y);
    return L;
}

static double central(double *v, double h, const ref_model *r, const ref_plugin *rp, const double *xn,
                      const float *dy, int B, int P) {
    double keep = *v;
    *v = keep + h;
    double up = ffn_loss(r, rp, xn, dy, B, P);
    *v = keep - h;
    double down = ffn_loss(r, rp, xn, dy, B, P);
    *v = keep;
    return (up - down) / (2 * h);
}

static void check_plugged_ffn(int k, int P, int tail) {
    enum { B = 2, R = 4 };
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 11);
    vt_plugin p, dp;
    random_plugin(&p, &c, k, R, 7u + (unsigned)(k * 31 + P));
    p.tail = tail;
    assert_int_equal(vt_plugin_alloc(&dp, &c, k, R), 0);
    int d = c.dim;
    size_t n = (size_t)B * P * d;
    float *xn = malloc(n * 4), *y = malloc(n * 4), *dy = malloc(n * 4), *dxn = malloc(n * 4);
    double *xd = malloc(n * 8), *yr = malloc((size_t)P * d * 8);
    unsigned s = 5;
    for (size_t i = 0; i < n; i++) xd[i] = xn[i] = (float)tu_urand(&s) * 3, dy[i] = (float)tu_urand(&s);
    vt_fwd f;
    vt_bwd bw;
    vt_plugin_work w;
    vt_plugin_tape pt;
    assert_int_equal(vt_fwd_init(&f, &m, B, P, P), 0);
    assert_int_equal(vt_bwd_init(&bw, &m, B, P, P), 0);
    assert_int_equal(vt_plugin_work_init(&w, &m, &p, B, P), 0);
    assert_int_equal(vt_plugin_tape_init(&pt, &m, &p, B, P), 0);
    vt_plugged_ffn_forward(&m, &f, &p, &w, 0, xn, y, B, P, &pt.layers[0]);
    vt_plugged_ffn_backward(&m, &bw, &p, &w, 0, xn, dy, dxn, B, P, &pt.layers[0], &dp);

    ref_model r;
    ref_model_init(&r, &m);
    ref_plugin rp;
    ref_plugin_init(&rp, &p);
    double err = 0, scale = 0;
    for (int b = 0; b < B; b++) {
        ref_plugged_ffn(&r, &rp, 0, xd + (size_t)b * P * d, P, yr);
        for (int i = 0; i < P * d; i++) {
            err = fmax(err, fabs(yr[i] - y[(size_t)b * P * d + i]));
            scale = fmax(scale, fabs(yr[i]));
        }
    }
    if (err > 1e-5 * scale) fail_msg("k %d P %d: plugged FFN off the reference by %.3g (scale %.3g)", k, P, err, scale);
    /* gradients at xn and at layer 0's plugin (w, W1, b1, W2, b2 lie back to back from w) */
    size_t np = vt_plugin_layer_params(d, R);
    double *a = malloc((n + np) * 8), *fd = malloc((n + np) * 8);
    for (size_t i = 0; i < n; i++) a[i] = dxn[i], fd[i] = central(&xd[i], 1e-5, &r, &rp, xd, dy, B, P);
    size_t off = (size_t)(p.layers[0].w - p.arena);
    for (size_t i = 0; i < np; i++) a[n + i] = dp.arena[off + i], fd[n + i] = central(&rp.w[off + i], 1e-5, &r, &rp, xd, dy, B, P);
    char what[64];
    snprintf(what, sizeof what, "plugged FFN k %d P %d: xn", k, P);
    tu_assert_grad(what, a, fd, n, 2e-3);
    snprintf(what, sizeof what, "plugged FFN k %d P %d: plugin", k, P);
    tu_assert_grad(what, a + n, fd + n, np, 2e-3);
    /* layer 1 is the model's last: it has no plugin (the last-layer rule) */
    assert_null(dp.layers[1].w);
    free(a), free(fd), free(rp.w);
    ref_model_free(&r);
    vt_plugin_tape_free(&pt), vt_plugin_work_free(&w), vt_bwd_free(&bw), vt_fwd_free(&f);
    free(xn), free(y), free(dy), free(dxn), free(xd), free(yr);
    vt_plugin_free(&p), vt_plugin_free(&dp);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_plugged_ffn(void **st) {
    (void)st;
    /* k, P, exact tail: {2, 8, 3} merges 0-1, 2-3 and runs 4..7 exactly (plugin.exact_tail) */
    static const int cases[][3] = {{2, 7, 1}, {2, 8, 1}, {4, 9, 1}, {4, 11, 1}, {4, 12, 1}, {8, 17, 1},
                                   {8, 20, 1}, {4, 3, 1}, {8, 5, 1}, {4, 1, 1}, {2, 8, 3}, {4, 12, 5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_plugged_ffn(cases[i][0], cases[i][1], cases[i][2]);
}


/* ---- the plugged prefill in the model ---- */

/* B windows of T tokens in C: the first P tokens plugged (p NULL: the dense prefill), the rest exact
 * on the cache, attention by query blocks of qblock rows; logits [B T, vocab]. With dlogits, the
 * backward pass (continuation first, then the plugged prompt) gives the plugin gradients (added
 * into dp) and the gradient at the embedding output dx [B T, dim]. */
static void c_window(const vt_model *m, const vt_plugin *p, const int32_t *tok, int B, int T, int P, int qblock,
                     float *logits, const float *dlogits, float *dx, vt_plugin *dp) {
    int d = m->cfg.dim, V = m->cfg.vocab, C = T - P, L = m->cfg.n_layers, train = dlogits != NULL;
    int32_t *tk = malloc(sizeof(int32_t) * B * T);
    float *x = malloc(sizeof(float) * B * T * d), *lg = malloc(sizeof(float) * B * T * V);
    float *x2 = x + (size_t)B * P * d, *lg2 = lg + (size_t)B * P * V; /* prompt rows, then continuation rows */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tk[t < P ? b * P + t : B * P + b * C + t - P] = tok[b * T + t];
    vt_fwd f;
    vt_plugin_work w;
    vt_tape tp[2];
    vt_plugin_tape pt;
    assert_int_equal(vt_fwd_init(&f, m, B, T, T), 0);
    f.query_block = qblock;
    if (p) assert_int_equal(vt_plugin_work_init(&w, m, p, B, P), 0);
    if (train) {
        assert_int_equal(vt_tape_init(&tp[0], m, B, P, 0), 0);
        assert_int_equal(vt_tape_init(&tp[1], m, B, C, P), 0);
        vt_tape_link(tp, 2);
        assert_int_equal(vt_plugin_tape_init(&pt, m, p, B, P), 0);
    }
    vt_embed(m, tk, B * T, x);
    if (p)
        vt_plugged_forward(m, &f, p, &w, 0, L, x, B, P, train ? &tp[0] : NULL, train ? &pt : NULL);
    else
        vt_layers_forward(m, &f, 0, L, x, B, P, 0);
    vt_layers_forward_ex(m, &f, 0, L, x2, B, C, P, NULL, train ? &tp[1] : NULL);
    vt_head_forward_ex(m, &f, x, B * P, lg, train ? &tp[0] : NULL);
    vt_head_forward_ex(m, &f, x2, B * C, lg2, train ? &tp[1] : NULL);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            memcpy(logits + ((size_t)b * T + t) * V, lg + (size_t)(t < P ? b * P + t : B * P + b * C + t - P) * V,
                   sizeof(float) * V);
    if (train) {
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                memcpy(lg + (size_t)(t < P ? b * P + t : B * P + b * C + t - P) * V,
                       dlogits + ((size_t)b * T + t) * V, sizeof(float) * V);
        vt_bwd bw;
        assert_int_equal(vt_bwd_init(&bw, m, B, P > C ? P : C, T), 0);
        vt_head_backward(m, &bw, &tp[1], lg2, B * C, x2, NULL);
        vt_layers_backward(m, &f, &bw, 0, L, x2, B, C, NULL, &tp[1], NULL, NULL);
        vt_head_backward(m, &bw, &tp[0], lg, B * P, x, NULL);
        vt_plugged_backward(m, &f, &bw, p, &w, 0, L, x, B, P, &tp[0], &pt, dp);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                memcpy(dx + ((size_t)b * T + t) * d, x + (size_t)(t < P ? b * P + t : B * P + b * C + t - P) * d,
                       sizeof(float) * d);
        vt_bwd_free(&bw);
        vt_tape_free(&tp[0]), vt_tape_free(&tp[1]), vt_plugin_tape_free(&pt);
    }
    if (p) vt_plugin_work_free(&w);
    vt_fwd_free(&f);
    free(tk), free(x), free(lg);
}

static void random_tokens(int32_t *tok, int n, int vocab, unsigned s) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)((unsigned)((tu_urand(&s) + 0.5) * vocab) % (unsigned)vocab);
}

/* k = 1 with a zero adapter (W2 = b2 = 0; W1 and the scores random) is the base model on every
 * scored row (the prompt's last position and the continuation): the plugged prefill gives the
 * dense prefill's logits there bit for bit (the FFN runs on the same rows through the same matmuls,
 * the adapter adds exact zeros; the last layer's FFN on the last rows alone), and the full-window
 * forward's to float rounding. Rows 0..P-2 lack the last layer's FFN (the last-layer rule). */
static void check_k1_exact(const vt_config *c, int B, int T, int P) {
    vt_model m;
    tu_random_model(&m, c, 3);
    vt_plugin p;
    assert_int_equal(vt_plugin_alloc(&p, c, 1, 8), 0);
    vt_plugin_init(&p, 9);
    unsigned s = 4;
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; p.layers[l].w && j < c->dim; j++) p.layers[l].w[j] = (float)tu_urand(&s);
    size_t V = (size_t)c->vocab, n = (size_t)B * T * V, from = (size_t)(P - 1) * V;
    int32_t *tok = malloc(sizeof(int32_t) * B * T);
    float *plug = malloc(n * 4), *dense = malloc(n * 4), *whole = malloc(n * 4), *x = malloc(sizeof(float) * B * T * c->dim);
    random_tokens(tok, B * T, c->vocab, 8);
    c_window(&m, &p, tok, B, T, P, VT_ATTN_QUERY_BLOCK, plug, NULL, NULL, NULL);
    c_window(&m, NULL, tok, B, T, P, VT_ATTN_QUERY_BLOCK, dense, NULL, NULL, NULL);
    for (int b = 0; b < B; b++)
        assert_memory_equal(plug + b * T * V + from, dense + b * T * V + from, (n / B - from) * 4);
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, &m, B, T, T), 0);
    vt_embed(&m, tok, B * T, x);
    vt_layers_forward(&m, &f, 0, c->n_layers, x, B, T, 0);
    vt_head_forward(&m, &f, x, B * T, whole);
    double err = 0, scale = 0;
    for (int b = 0; b < B; b++)
        for (size_t i = b * T * V + from; i < (size_t)(b + 1) * T * V; i++)
            err = fmax(err, fabs((double)plug[i] - whole[i])), scale = fmax(scale, fabs(whole[i]));
    if (err > 1e-5 * scale) fail_msg("k = 1 plugged vs one-pass dense: %.3g (scale %.3g)", err, scale);
    vt_fwd_free(&f);
    free(tok), free(plug), free(dense), free(whole), free(x);
    vt_plugin_free(&p);
    vt_model_free(&m);
}

static void test_k1_zero_adapter_is_dense(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    check_k1_exact(&c, 2, 12, 9);
    vt_config_free(&c);
    tu_stories_config(&c); /* 2 x 36 = 72 prompt rows: the FFN takes BLIS's packed path */
    check_k1_exact(&c, 2, 48, 36);
    vt_config_free(&c);
}

/* Positions [from, to) of every window: equal (same 1) or all different rows (same 0). */
static void expect_rows(const float *a, const float *b, int B, int T, int V, int from, int to, int same,
                        const char *what) {
    for (int bb = 0; bb < B; bb++)
        for (int t = from; t < to; t++) {
            int eq = !memcmp(a + ((size_t)bb * T + t) * V, b + ((size_t)bb * T + t) * V, sizeof(float) * V);
            if (eq != same) fail_msg("%s: window %d position %d %s", what, bb, t, same ? "changed" : "did not change");
        }
}

/* Changing a continuation token changes no logit before it; changing a prompt token changes nothing
 * at positions in earlier groups (and does change the rest of its own group: merging is not causal
 * within a group, which is why groups stay inside the prompt). k = 4, P = 10: groups 0-3 and 4-7,
 * positions 8 and 9 exact. */
static void test_causality(void **st) {
    (void)st;
    enum { B = 2, T = 14, P = 10, K = 4 };
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 5);
    vt_plugin p;
    random_plugin(&p, &c, K, 4, 3);
    int V = c.vocab;
    int32_t tok[B * T], alt[B * T];
    random_tokens(tok, B * T, V, 12);
    float *base = malloc(sizeof(float) * B * T * V), *mod = malloc(sizeof(float) * B * T * V);
    c_window(&m, &p, tok, B, T, P, 4, base, NULL, NULL, NULL);
    /* exact tail 1: groups 0-3, 4-7; exact tail 3 (the last entries): group 0-3 only, 4..9 exact */
    static const struct { int pos, same_before, changed_from, tail; } cases[] = {
        {12, 12, 12, 1}, {10, 10, 10, 1}, {9, 9, 9, 1}, {8, 8, 8, 1}, {6, 4, 4, 1}, {4, 4, 4, 1}, {3, 0, 0, 1},
        {0, 0, 0, 1}, {6, 6, 6, 3}, {5, 5, 5, 3}, {2, 0, 0, 3}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].tail != p.tail) { /* the unchanged run again, under this exact tail */
            p.tail = cases[i].tail;
            c_window(&m, &p, tok, B, T, P, 4, base, NULL, NULL, NULL);
        }
        memcpy(alt, tok, sizeof tok);
        for (int b = 0; b < B; b++) alt[b * T + cases[i].pos] = (tok[b * T + cases[i].pos] + 1) % V;
        c_window(&m, &p, alt, B, T, P, 4, mod, NULL, NULL, NULL);
        char what[64];
        snprintf(what, sizeof what, "token %d changed", cases[i].pos);
        expect_rows(mod, base, B, T, V, 0, cases[i].same_before, 1, what);
        expect_rows(mod, base, B, T, V, cases[i].changed_from, T, 0, what);
    }
    free(base), free(mod);
    vt_plugin_free(&p);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* The plugged prefill's backward for a loss on the continuation logits (and the prompt's last
 * position's): plugin gradients and the gradient at the embedding output against finite
 * differences of the double reference, through attention on the plugged keys and values. */
static void check_window_gradients(int k, int P, int tail) {
    enum { B = 2, T = 12, R = 4 };
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 21);
    vt_plugin p, dp;
    random_plugin(&p, &c, k, R, 13u + (unsigned)k);
    p.tail = tail;
    assert_int_equal(vt_plugin_alloc(&dp, &c, k, R), 0);
    int d = c.dim, V = c.vocab;
    size_t nl = (size_t)B * T * V, nx = (size_t)B * T * d;
    int32_t tok[B * T];
    random_tokens(tok, B * T, V, 31);
    float *lg = malloc(nl * 4), *dl = calloc(nl, 4), *dx = malloc(nx * 4);
    double *lr = malloc(nl * 8), *xa = calloc(nx, 8);
    unsigned s = 17;
    for (int b = 0; b < B; b++)
        for (int t = P - 1; t < T; t++)
            for (int v = 0; v < V; v++) dl[((size_t)b * T + t) * V + v] = (float)tu_urand(&s);
    c_window(&m, &p, tok, B, T, P, 4, lg, dl, dx, &dp);
    ref_model r;
    ref_model_init(&r, &m);
    ref_plugin rp;
    ref_plugin_init(&rp, &p);
    ref_window(&r, &rp, tok, B, T, P, NULL, lr);
    double err = 0, scale = 0;
    for (size_t i = 0; i < nl; i++) err = fmax(err, fabs(lr[i] - lg[i])), scale = fmax(scale, fabs(lr[i]));
    if (err > 1e-5 * scale) fail_msg("k %d P %d: plugged logits off the reference by %.3g (scale %.3g)", k, P, err, scale);
    size_t np = p.arena_floats;
    double *a = malloc((np + nx) * 8), *fd = malloc((np + nx) * 8), h = 1e-5;
    for (size_t i = 0; i < np + nx; i++) {
        double *v = i < np ? &rp.w[i] : &xa[i - np], keep = *v, L[2];
        for (int sg = 0; sg < 2; sg++) {
            *v = keep + (sg ? -h : h);
            ref_window(&r, &rp, tok, B, T, P, xa, lr);
            L[sg] = 0;
            for (size_t j = 0; j < nl; j++) L[sg] += dl[j] * lr[j];
        }
        *v = keep;
        fd[i] = (L[0] - L[1]) / (2 * h);
        a[i] = i < np ? dp.arena[i] : dx[i - np];
    }
    char what[64];
    snprintf(what, sizeof what, "window k %d P %d: plugin", k, P);
    tu_assert_grad(what, a, fd, np, 2e-3);
    snprintf(what, sizeof what, "window k %d P %d: embedding output", k, P);
    tu_assert_grad(what, a + np, fd + np, nx, 2e-3);
    free(a), free(fd), free(rp.w);
    ref_model_free(&r);
    free(lg), free(dl), free(dx), free(lr), free(xa);
    vt_plugin_free(&p), vt_plugin_free(&dp);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_window_gradients(void **st) {
    (void)st;
    check_window_gradients(2, 9, 1);
    check_window_gradients(4, 9, 1);
    check_window_gradients(4, 7, 1); /* one group, positions 4..6 exact */
    check_window_gradients(8, 10, 1);
    check_window_gradients(8, 5, 1); /* no group: the prompt runs exactly */
    check_window_gradients(2, 9, 4); /* exact tail 4: groups 0-1, 2-3, positions 4..8 exact */
}

/* ---- parameter and prefill FLOP counts ---- */

static void llama2_7b_config(vt_config *c) {
    memset(c, 0, sizeof *c);
    c->dim = 4096, c->n_layers = 32, c->n_heads = 32, c->n_kv_heads = 32, c->head_dim = 128, c->ffn_dim = 11008;
    c->vocab = 32000, c->seq_len = 4096, c->norm_eps = 1e-5f, c->rope_theta = 10000.0f;
    assert_int_equal(vt_config_init_dense(c), 0);
}

/* stories260K, prompt 192, k = 4, r = 16, by hand per layer: attention side 192 (24576 + 256 x 96.5)
 * = 9461760; dense FFN 192 x 66048 = 12681216; plugged: 47 groups + 4 exact rows = 51 x 66048,
 * merge 188 x 256, adapter 188 x 65536 + 47 x 2048: 4282880 (37.9% saved on such a layer, the
 * prototype's figure); the last layer (no plugin) runs its FFN on 1 row: 9461760 + 66048. Saved
 * 1 - (4 x 13744640 + 9527808) / (5 x 22142976) = 41.7%. Then the table the merger reports
 * (printed), and the bounds. */
static void test_params_and_flops(void **st) {
    (void)st;
    vt_config c;
    tu_stories_config(&c);
    assert_int_equal(vt_plugin_params(&c, 16), (size_t)4 * (64 + 16 * 128 + 16 + 64 * 16 + 64));
    double dense = vt_prefill_flops(&c, 192, 0, 16, 1), plug = vt_prefill_flops(&c, 192, 4, 16, 1);
    assert_true(fabs(dense - 5 * 22142976.0) < 1e-6 * dense);
    assert_true(fabs(plug - (4 * 13744640.0 + 9527808.0)) < 1e-6 * dense);
    /* exact tail 16 (plugin.exact_tail): 44 groups in the first 176 positions, 16 exact rows: per layer
     * 9461760 + 60 x 66048 + 176 x 256 + 176 x 4096 + 44 x 2048 = 14280704 (39.8% saved in all) */
    assert_true(fabs(vt_prefill_flops(&c, 192, 4, 16, 16) - (4 * 14280704.0 + 9527808.0)) < 1e-6 * dense);
    vt_plugin p;
    assert_int_equal(vt_plugin_alloc(&p, &c, 4, 16), 0);
    assert_int_equal(p.arena_floats, vt_plugin_params(&c, 16));
    vt_plugin_free(&p);
    vt_config c7;
    llama2_7b_config(&c7);
    const struct { const vt_config *c; const char *name; int P; } shapes[] = {{&c, "stories260K", 192}, {&c7, "LLaMA-2-7B", 1024}};
    for (int i = 0; i < 2; i++)
        for (int r = 16; r <= 64; r *= 4)
            for (int k = 2; k <= 8; k *= 2) {
                double saved = 1 - vt_prefill_flops(shapes[i].c, shapes[i].P, k, r, 1) / vt_prefill_flops(shapes[i].c, shapes[i].P, 0, r, 1);
                print_message("%-11s P %4d r %2d k %d: prefill FLOPs saved %5.1f%%, plugin %.3f%% of the parameters\n",
                              shapes[i].name, shapes[i].P, r, k, 100 * saved,
                              100.0 * vt_plugin_params(shapes[i].c, r) / vt_params_total(shapes[i].c));
            }
    /* the bounds at LLaMA-2-7B shapes: k = 4 saves at least 45%, r = 64 is at most 1% */
    assert_true(1 - vt_prefill_flops(&c7, 1024, 4, 64, 1) / vt_prefill_flops(&c7, 1024, 0, 64, 1) >= 0.45);
    assert_true(vt_plugin_params(&c7, 64) <= 0.01 * vt_params_total(&c7));
    /* a prompt shorter than a group has nothing to merge: only the last layer's FFN is saved at 3 rows */
    assert_true(fabs(vt_prefill_flops(&c, 4, 4, 16, 1) - (vt_prefill_flops(&c, 4, 0, 16, 1) - 3 * 6.0 * 64 * 172)) < 1e-3);
    vt_config_free(&c7);
    vt_config_free(&c);
}

/* The plugged window on stories260K with a fixed random plugin (k = 4, r = 16) against PyTorch in
 * float64 (tests/reference/plugin_ref.py, written from the definition, not from this code). */
static void test_stories_vs_torch(void **st) {
    (void)st;
    if (!tu_have_fixture("stories260K/stories260K.bin") || !tu_have_torch()) {
        print_message("skipped: no VT_SOURCE_DIR, no stories260K fixture or no /usr/bin/python3 with torch\n");
        skip();
    }
    enum { B = 2, T = 64, P = 48, K = 4, R = 16 };
    vt_model m;
    assert_int_equal(vt_model_load(&m, tu_fixture("stories260K/stories260K.bin"), vt_load_all()), 0);
    vt_plugin p;
    random_plugin(&p, &m.cfg, K, R, 77);
    int32_t tok[B * T];
    random_tokens(tok, B * T, m.cfg.vocab, 5);
    size_t nl = (size_t)B * T * m.cfg.vocab;
    float *lg = malloc(nl * 4);
    c_window(&m, &p, tok, B, T, P, VT_ATTN_QUERY_BLOCK, lg, NULL, NULL, NULL);
    char *dir = tu_tempdir(), pp[4200], tp[4200], lp[4200];
    snprintf(pp, sizeof pp, "%s/plugin.f32", dir);
    snprintf(tp, sizeof tp, "%s/tokens.i32", dir);
    snprintf(lp, sizeof lp, "%s/logits.f32", dir);
    assert_int_equal(tu_write_file(pp, p.arena, p.arena_floats * 4), 0);
    assert_int_equal(tu_write_file(tp, tok, sizeof tok), 0);
    assert_int_equal(tu_write_file(lp, lg, nl * 4), 0);
    const char *out = tu_run_reference("plugin_ref.py", "%s %s %d %d %d %s %d %d %s",
                                       tu_fixture("stories260K/stories260K.bin"), pp, K, R, P, tp, B, T, lp);
    double diff = tu_json_number(out, "max_abs_diff"), scale = tu_json_number(out, "max_abs");
    print_message("stories260K plugged k %d r %d P %d: max |C - torch| %.3g (max |logit| %.3g)\n", K, R, P, diff, scale);
    assert_true(scale > 1.0);
    assert_true(diff <= 1e-4 * scale);
    tu_tempdir_remove(dir);
    free(lg);
    vt_plugin_free(&p);
    vt_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plugged_ffn),
        cmocka_unit_test(test_k1_zero_adapter_is_dense),
        cmocka_unit_test(test_causality),
        cmocka_unit_test(test_window_gradients),
        cmocka_unit_test(test_params_and_flops),
        cmocka_unit_test(test_stories_vs_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
