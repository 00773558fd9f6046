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

static double urand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xFFFFFF) / (double)0x1000000 - 0.5;
}

/* max |a - b| <= tol * max |b| (b: the finite-difference reference). */
static void assert_grad(const char *what, const double *analytic, const double *fd, size_t n, double tol) {
    double err = 0, scale = 1e-8;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(fd[i]));
        if (fabs(analytic[i] - fd[i]) > err) {
            err = fabs(analytic[i] - fd[i]);
            worst = i;
        }
    }
    if (err > tol * scale)
        fail_msg("%s: gradient %zu: analytic %.8g vs finite difference %.8g (max error %.3g > %.3g x %.3g)", what, worst,
                 analytic[worst], fd[worst], err, tol, scale);
}

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
    int d = r->m->cfg.dim, k = rp->p->k, rr = rp->p->r, G = vt_plugin_groups(P, k);
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
__attribute__((unused)) static void ref_window(const ref_model *r, const ref_plugin *rp, const int32_t *tok, int B, int T, int P,
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
            if (rp) ref_plugged_ffn(r, rp, l, xn, P, y);
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
    for (size_t i = 0; i < p->arena_floats; i++) p->arena[i] = (float)urand(&seed) * 0.8f;
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

static void check_plugged_ffn(int k, int P) {
    enum { B = 2, R = 4 };
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 11);
    vt_plugin p, dp;
    random_plugin(&p, &c, k, R, 7u + (unsigned)(k * 31 + P));
    assert_int_equal(vt_plugin_alloc(&dp, &c, k, R), 0);
    int d = c.dim;
    size_t n = (size_t)B * P * d;
    float *xn = malloc(n * 4), *y = malloc(n * 4), *dy = malloc(n * 4), *dxn = malloc(n * 4);
    double *xd = malloc(n * 8), *yr = malloc((size_t)P * d * 8);
    unsigned s = 5;
    for (size_t i = 0; i < n; i++) xd[i] = xn[i] = (float)urand(&s) * 3, dy[i] = (float)urand(&s);
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
    assert_grad(what, a, fd, n, 2e-3);
    snprintf(what, sizeof what, "plugged FFN k %d P %d: plugin", k, P);
    assert_grad(what, a + n, fd + n, np, 2e-3);
    /* the base weights are frozen: the layer-1 plugin (not run) got nothing */
    for (size_t i = 0; i < np; i++) assert_true(dp.arena[(size_t)(dp.layers[1].w - dp.arena) + i] == 0.0f);
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
    static const int cases[][2] = {{2, 7}, {2, 8}, {4, 9}, {4, 11}, {4, 12}, {8, 17}, {8, 20}, {4, 3}, {8, 5}, {4, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_plugged_ffn(cases[i][0], cases[i][1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plugged_ffn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
