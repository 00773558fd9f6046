/* test_backward.c — finite-difference gradient checks (in double precision, on the independent
 * reference of ref_model.c) for every backward op and for whole gated models: gates, mask
 * parameters (through sampling), weights, and the losses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "nn/forward.h"
#include "nn/loss.h"
#include "nn/masks.h"
#include "ref_model.h"
#include "testutil.h"
#include "util/rng.h"

/* ---- op-level checks ---- */

static double ref_rmsnorm_loss(const double *x, const double *w, const double *g, int rows, int d, double eps) {
    double L = 0;
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < d; i++) ss += x[r * d + i] * x[r * d + i];
        double s = 1 / sqrt(ss / d + eps);
        for (int i = 0; i < d; i++) L += g[r * d + i] * x[r * d + i] * s * w[i];
    }
    return L;
}

static void test_rmsnorm_backward(void **st) {
    (void)st;
    enum { R = 3, D = 7 };
    unsigned s = 1;
    float x[R * D], w[D], g[R * D], out[R * D], inv[R], dx[R * D], dw[D] = {0};
    double xd[R * D], wd[D], gd[R * D], a[R * D + D], fd[R * D + D], h = 1e-6;
    for (int i = 0; i < R * D; i++) xd[i] = x[i] = (float)tu_urand(&s) * 2, gd[i] = g[i] = (float)tu_urand(&s);
    for (int i = 0; i < D; i++) wd[i] = w[i] = 1.0f + (float)tu_urand(&s);
    vt_rmsnorm(out, x, w, R, D, 1e-5f, inv);
    vt_rmsnorm_backward(dx, dw, g, x, w, inv, R, D, 0);
    for (int i = 0; i < R * D; i++) {
        a[i] = dx[i];
        double keep = xd[i];
        xd[i] = keep + h;
        double up = ref_rmsnorm_loss(xd, wd, gd, R, D, 1e-5);
        xd[i] = keep - h;
        fd[i] = (up - ref_rmsnorm_loss(xd, wd, gd, R, D, 1e-5)) / (2 * h);
        xd[i] = keep;
    }
    for (int i = 0; i < D; i++) {
        a[R * D + i] = dw[i];
        double keep = wd[i];
        wd[i] = keep + h;
        double up = ref_rmsnorm_loss(xd, wd, gd, R, D, 1e-5);
        wd[i] = keep - h;
        fd[R * D + i] = (up - ref_rmsnorm_loss(xd, wd, gd, R, D, 1e-5)) / (2 * h);
        wd[i] = keep;
    }
    tu_assert_grad("rmsnorm", a, fd, R * D + D, 1e-4);
}

static void test_linear_backward(void **st) {
    (void)st;
    enum { R = 4, I = 5, O = 3 };
    unsigned s = 2;
    float x[R * I], w[O * I], dy[R * O], dx[R * I], dw[O * I] = {0};
    for (int i = 0; i < R * I; i++) x[i] = (float)tu_urand(&s);
    for (int i = 0; i < O * I; i++) w[i] = (float)tu_urand(&s);
    for (int i = 0; i < R * O; i++) dy[i] = (float)tu_urand(&s);
    vt_linear_backward(dx, dw, dy, x, w, NULL, R, I, O, 0.0f);
    /* L = sum dy o (x W^T) is bilinear: the finite difference is exact up to rounding. */
    double a[R * I + O * I], fd[R * I + O * I];
    for (int k = 0; k < R * I + O * I; k++) {
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            double xd[R * I], wd[O * I], h = sgn ? -1e-3 : 1e-3;
            for (int i = 0; i < R * I; i++) xd[i] = x[i] + (k == i ? h : 0);
            for (int i = 0; i < O * I; i++) wd[i] = w[i] + (k == R * I + i ? h : 0);
            L[sgn] = 0;
            for (int r = 0; r < R; r++)
                for (int o = 0; o < O; o++) {
                    double y = 0;
                    for (int i = 0; i < I; i++) y += xd[r * I + i] * wd[o * I + i];
                    L[sgn] += dy[r * O + o] * y;
                }
        }
        fd[k] = (L[0] - L[1]) / 2e-3;
        a[k] = k < R * I ? dx[k] : dw[k - R * I];
    }
    tu_assert_grad("linear", a, fd, R * I + O * I, 1e-5);
}

static void test_losses_backward(void **st) {
    (void)st;
    enum { R = 3, V = 11 };
    unsigned s = 3;
    float sl[R * V], tl[R * V], d[R * V];
    double sd[R * V], td[R * V], a[R * V], fd[R * V], h = 1e-6;
    int32_t tg[R] = {4, -1, 9};
    for (int i = 0; i < R * V; i++) sd[i] = sl[i] = (float)tu_urand(&s) * 6, td[i] = tl[i] = (float)tu_urand(&s) * 6;
    /* distillation at temperature 2, weight 0.7 */
    memset(d, 0, sizeof d);
    double L = vt_loss_distill(sl, tl, R, V, 2.0f, 0.75f, d);
    double Lr = ref_distill(sd, td, R, V, 2.0, 0.75);
    if (fabs(L - Lr) > 1e-9 * fmax(1, fabs(L))) fail_msg("distillation %.12g vs reference %.12g", L, Lr);
    for (int i = 0; i < R * V; i++) {
        a[i] = d[i];
        double keep = sd[i];
        sd[i] = keep + h;
        double up = ref_distill(sd, td, R, V, 2.0, 0.75);
        sd[i] = keep - h;
        fd[i] = (up - ref_distill(sd, td, R, V, 2.0, 0.75)) / (2 * h);
        sd[i] = keep;
    }
    tu_assert_grad("distillation", a, fd, R * V, 1e-4);
    /* identical student and teacher: zero loss, zero gradient */
    memset(d, 0, sizeof d);
    assert_true(fabs(vt_loss_distill(tl, tl, R, V, 2.0f, 1.0f, d)) < 1e-9);
    for (int i = 0; i < R * V; i++) assert_true(fabsf(d[i]) < 1e-7f);
    /* cross-entropy (row 1 unscored) */
    memset(d, 0, sizeof d);
    double ce = vt_loss_ce(sl, tg, R, V, 1.5f, d);
    for (int i = 0; i < R * V; i++) {
        a[i] = d[i];
        double Lp[2];
        for (int sg = 0; sg < 2; sg++) {
            double tot = 0;
            for (int r = 0; r < R; r++) {
                if (tg[r] < 0) continue;
                double mx = -1e300, z = 0;
                for (int v = 0; v < V; v++) mx = fmax(mx, sd[r * V + v] + (r * V + v == i ? (sg ? -h : h) : 0));
                for (int v = 0; v < V; v++) z += exp(sd[r * V + v] + (r * V + v == i ? (sg ? -h : h) : 0) - mx);
                tot += mx + log(z) - (sd[r * V + tg[r]] + (r * V + tg[r] == i ? (sg ? -h : h) : 0));
            }
            Lp[sg] = 1.5 * tot / 2;
        }
        fd[i] = (Lp[0] - Lp[1]) / (2 * h);
        if (i == 0) {
            double tot = 0;
            for (int r = 0; r < R; r++) {
                if (tg[r] < 0) continue;
                double mx = -1e300, z = 0;
                for (int v = 0; v < V; v++) mx = fmax(mx, sd[r * V + v]);
                for (int v = 0; v < V; v++) z += exp(sd[r * V + v] - mx);
                tot += mx + log(z) - sd[r * V + tg[r]];
            }
            assert_true(fabs(ce - 1.5 * tot / 2) < 1e-9);
        }
    }
    tu_assert_grad("cross-entropy", a, fd, R * V, 1e-4);
}

/* The distillation loss and its gradient against PyTorch (tests/reference/distill_ref.py). */
static void test_distill_vs_torch(void **st) {
    (void)st;
    if (!tu_have_torch()) {
        print_message("skipped: no VT_SOURCE_DIR or no /usr/bin/python3 with torch\n");
        skip();
    }
    enum { R = 5, V = 37 };
    unsigned s = 21;
    float sl[R * V], tl[R * V], d[R * V] = {0};
    for (int i = 0; i < R * V; i++) sl[i] = (float)tu_urand(&s) * 8, tl[i] = (float)tu_urand(&s) * 8;
    char *dir = tu_tempdir(), sp[4200], tp[4200];
    snprintf(sp, sizeof sp, "%s/s.f32", dir);
    snprintf(tp, sizeof tp, "%s/t.f32", dir);
    assert_int_equal(tu_write_file(sp, sl, sizeof sl), 0);
    assert_int_equal(tu_write_file(tp, tl, sizeof tl), 0);
    const char *out = tu_run_reference("distill_ref.py", "%s %s %d %d 3.0 0.5", sp, tp, R, V);
    double L = vt_loss_distill(sl, tl, R, V, 3.0f, 0.5f, d);
    double Lt = tu_json_number(out, "loss");
    if (fabs(L - Lt) > 1e-6 * fabs(Lt)) fail_msg("distillation loss %.10g, PyTorch %.10g", L, Lt);
    char *q = strchr(strstr(out, "\"grad\""), '[') + 1;
    double a[R * V], ref[R * V];
    for (int i = 0; i < R * V; i++) {
        ref[i] = strtod(q, &q);
        q++; /* ',' or ']' */
        a[i] = d[i];
    }
    tu_assert_grad("distillation vs PyTorch", a, ref, R * V, 1e-5);
    tu_tempdir_remove(dir);
}

/* KL term and gate sampling: gradients with respect to mu and logvar. */
static void test_kl_and_sampling_backward(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 5), 0);
    unsigned s = 9;
    for (size_t i = 0; i < mk.n; i++) {
        mk.mu[i] = (float)(1.0 + tu_urand(&s));
        mk.logvar[i] = (float)(-2.0 + 2 * tu_urand(&s));
    }
    double mult[VT_N_GROUPS] = {1.0, 2.0, 0.5, 3.0}, beta = 0.3;
    vt_masks_zero_grad(&mk);
    double kl = vt_masks_kl(&mk, mult, beta);
    double *a = malloc(sizeof(double) * 2 * mk.n), *fd = malloc(sizeof(double) * 2 * mk.n), want = 0, h = 1e-6;
    for (size_t i = 0; i < mk.n; i++) {
        double mu = mk.mu[i], lv = mk.logvar[i], w = beta * mult[mk.group[i]];
        want += w * 0.5 * log1p(mu * mu * exp(-lv));
        a[i] = mk.g_mu[i];
        a[mk.n + i] = mk.g_logvar[i];
        fd[i] = w * 0.5 * (log1p((mu + h) * (mu + h) * exp(-lv)) - log1p((mu - h) * (mu - h) * exp(-lv))) / (2 * h);
        fd[mk.n + i] = w * 0.5 * (log1p(mu * mu * exp(-(lv + h))) - log1p(mu * mu * exp(-(lv - h)))) / (2 * h);
    }
    assert_true(fabs(kl - want) < 1e-5 * want);
    tu_assert_grad("KL", a, fd, 2 * mk.n, 1e-4);
    /* L = sum_b,i c_bi z_bi with z = mu + exp(logvar/2) eps */
    int B = 2;
    int64_t ids[2] = {17, 4};
    float *z = malloc(sizeof(float) * B * mk.n), *eps = malloc(sizeof(float) * B * mk.n);
    float *cz = malloc(sizeof(float) * B * mk.n);
    vt_masks_sample(&mk, 11, 3, ids, B, z, eps);
    for (size_t i = 0; i < B * mk.n; i++) cz[i] = (float)tu_urand(&s);
    vt_masks_zero_grad(&mk);
    vt_masks_backward(&mk, B, eps, cz);
    for (size_t i = 0; i < mk.n; i++) {
        double gm = 0, gl = 0;
        for (int b = 0; b < B; b++) {
            double e = eps[b * mk.n + i], lv = mk.logvar[i];
            gm += cz[b * mk.n + i];
            gl += cz[b * mk.n + i] * e * (exp(0.5 * (lv + h)) - exp(0.5 * (lv - h))) / (2 * h);
        }
        a[i] = mk.g_mu[i];
        a[mk.n + i] = mk.g_logvar[i];
        fd[i] = gm;
        fd[mk.n + i] = gl;
    }
    tu_assert_grad("gate sampling", a, fd, 2 * mk.n, 1e-4);
    /* noise is a pure function of (seed, step, sample, unit) */
    float *z2 = malloc(sizeof(float) * mk.n), *e2 = malloc(sizeof(float) * mk.n);
    vt_masks_sample(&mk, 11, 3, &ids[1], 1, z2, e2);
    assert_memory_equal(e2, eps + mk.n, sizeof(float) * mk.n);
    free(z2); free(e2); free(z); free(eps); free(cz); free(a); free(fd);
    vt_masks_free(&mk);
    vt_config_free(&c);
}

/* ---- whole gated models ---- */

typedef struct {
    vt_model *m;
    vt_masks *mk;
    const int32_t *tok;
    int B, T;
    double temperature;
    const double *teacher; /* [B*T, vocab] */
} ref_problem;

static double ref_loss(const ref_problem *p, const ref_model *r, const double *z) {
    size_t rows = (size_t)p->B * p->T;
    double *lg = malloc(sizeof(double) * rows * p->m->cfg.vocab);
    ref_forward(r, p->mk, z, p->tok, p->B, p->T, lg, NULL);
    double L = ref_distill(lg, p->teacher, (int)rows, p->m->cfg.vocab, p->temperature, 1.0);
    free(lg);
    return L;
}

/* The gated model's gradients against finite differences of the reference. chunks > 1 cuts the
 * sequences into that many chunks along their tokens, run forward in order and backward last
 * first (as a pipeline step does), with the loss over all of them. */
static void check_model(vt_config *c, int train_weights, int chunks) {
    vt_model m;
    tu_random_model(&m, c, 23);
    if (m.bias) { /* a config with biases: non-zero ones (frozen: only the forward sees them) */
        unsigned sb = 5;
        size_t nb = 0;
        for (int l = 0; l < c->n_layers; l++) nb += vt_layer_bias_params(c, l);
        for (size_t i = 0; i < nb; i++) m.bias[i] = (float)(0.3 * tu_urand(&sb));
    }
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, c, 3), 0);
    unsigned s = 77;
    for (size_t i = 0; i < mk.n; i++) {
        mk.mu[i] = (float)(1.0 + 0.6 * tu_urand(&s));
        mk.logvar[i] = (float)(-3.0 + tu_urand(&s));
    }
    enum { B = 2, T = 6, MAXC = 3 };
    assert_true(chunks >= 1 && chunks <= MAXC && T % chunks == 0);
    int C = chunks, Tc = T / C;
    int32_t tok[B * T], tokc[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((unsigned)(i * 7 + 3) % (unsigned)c->vocab);
    int64_t ids[B] = {0, 1};
    size_t n = mk.n, rows = B * T, V = (size_t)c->vocab, d = (size_t)c->dim, rc = (size_t)B * Tc;
    float *z = malloc(sizeof(float) * B * n), *eps = malloc(sizeof(float) * B * n), *dz = calloc(B * n, sizeof(float));
    vt_masks_sample(&mk, 1, 0, ids, B, z, eps);

    /* Our pass: teacher (no gates), gated student with tapes, distillation, backward. */
    vt_fwd f;
    vt_tape tapes[MAXC];
    vt_bwd bw;
    assert_int_equal(vt_fwd_init(&f, &m, B, T, T), 0);
    f.query_block = 4; /* causal attention by blocks of 4 query rows: 4 + 2 of the whole sequences */
    for (int k = 0; k < C; k++) assert_int_equal(vt_tape_init(&tapes[k], &m, B, Tc, k * Tc), 0);
    vt_tape_link(tapes, C);
    assert_int_equal(vt_bwd_init(&bw, &m, B, Tc, T), 0);
    float *x = malloc(sizeof(float) * rows * d), *teach = malloc(sizeof(float) * rows * V);
    float *logits = malloc(sizeof(float) * rows * V), *dl = calloc(rows * V, sizeof(float));
    float *lc = malloc(sizeof(float) * rc * V);
    vt_embed(&m, tok, (int)rows, x);
    vt_layers_forward(&m, &f, 0, c->n_layers, x, B, T, 0);
    vt_head_forward(&m, &f, x, (int)rows, teach);
    vt_gates g = {&mk, z, n};
    for (int k = 0; k < C; k++) { /* row b*T + k*Tc + t of the whole is row b*Tc + t of chunk k */
        for (int b = 0; b < B; b++) memcpy(tokc + b * Tc, tok + b * T + k * Tc, sizeof(int32_t) * Tc);
        vt_embed_gated(&m, tokc, B, Tc, &g, x);
        vt_layers_forward_ex(&m, &f, 0, c->n_layers, x, B, Tc, k * Tc, &g, &tapes[k]);
        vt_head_forward_ex(&m, &f, x, (int)rc, lc, &tapes[k]);
        for (int b = 0; b < B; b++)
            memcpy(logits + ((size_t)b * T + k * Tc) * V, lc + (size_t)b * Tc * V, sizeof(float) * Tc * V);
    }
    double L = vt_loss_distill(logits, teach, (int)rows, c->vocab, 2.0f, 1.0f, dl);
    vt_model dw;
    if (train_weights) assert_int_equal(vt_model_alloc(&dw, c, vt_load_all()), 0);
    for (int k = C - 1; k >= 0; k--) {
        for (int b = 0; b < B; b++) {
            memcpy(tokc + b * Tc, tok + b * T + k * Tc, sizeof(int32_t) * Tc);
            memcpy(lc + (size_t)b * Tc * V, dl + ((size_t)b * T + k * Tc) * V, sizeof(float) * Tc * V);
        }
        vt_head_backward(&m, &bw, &tapes[k], lc, (int)rc, x, train_weights ? &dw : NULL);
        vt_layers_backward(&m, &f, &bw, 0, c->n_layers, x, B, Tc, &g, &tapes[k], dz, train_weights ? &dw : NULL);
        vt_embed_backward(&m, tokc, B, Tc, x, dz, n);
    }
    vt_masks_zero_grad(&mk);
    vt_masks_backward(&mk, B, eps, dz);

    /* Reference: the same loss in double. */
    double *teacher = malloc(sizeof(double) * rows * V), *zd = malloc(sizeof(double) * B * n);
    for (size_t i = 0; i < rows * V; i++) teacher[i] = teach[i];
    for (size_t i = 0; i < B * n; i++) zd[i] = z[i];
    ref_problem p = {&m, &mk, tok, B, T, 2.0, teacher};
    ref_model r;
    ref_model_init(&r, &m);
    double Lref = ref_loss(&p, &r, zd), h = 1e-5;
    if (fabs(L - Lref) > 1e-4 * fmax(1e-3, fabs(Lref))) fail_msg("loss %.9g vs reference %.9g", L, Lref);

    /* gate values */
    double *a = malloc(sizeof(double) * B * n), *fd = malloc(sizeof(double) * B * n);
    for (size_t i = 0; i < B * n; i++) {
        double keep = zd[i];
        zd[i] = keep + h;
        double up = ref_loss(&p, &r, zd);
        zd[i] = keep - h;
        fd[i] = (up - ref_loss(&p, &r, zd)) / (2 * h);
        zd[i] = keep;
        a[i] = dz[i];
    }
    tu_assert_grad("gates", a, fd, B * n, 1e-4);
    /* mu and logvar through the sampled gates */
    for (int which = 0; which < 2; which++) {
        for (size_t i = 0; i < n; i++) {
            double v[2];
            for (int sg = 0; sg < 2; sg++) {
                double mu = mk.mu[i] + (which == 0 ? (sg ? -h : h) : 0);
                double lv = mk.logvar[i] + (which == 1 ? (sg ? -h : h) : 0);
                for (int b = 0; b < B; b++) zd[b * n + i] = mu + exp(0.5 * lv) * eps[b * n + i];
                v[sg] = ref_loss(&p, &r, zd);
            }
            for (int b = 0; b < B; b++) zd[b * n + i] = z[b * n + i];
            fd[i] = (v[0] - v[1]) / (2 * h);
            a[i] = which ? mk.g_logvar[i] : mk.g_mu[i];
        }
        tu_assert_grad(which ? "logvar" : "mu", a, fd, n, 1e-4);
    }
    /* weights: every 5th entry of every layer tensor and the head */
    if (train_weights) {
        for (int l = 0; l < c->n_layers; l++) {
            const float *ws[9] = {m.layers[l].attn_norm, m.layers[l].wq, m.layers[l].wk, m.layers[l].wv, m.layers[l].wo,
                                  m.layers[l].ffn_norm, m.layers[l].w_gate, m.layers[l].w_up, m.layers[l].w_down};
            float *gs[9] = {dw.layers[l].attn_norm, dw.layers[l].wq, dw.layers[l].wk, dw.layers[l].wv, dw.layers[l].wo,
                            dw.layers[l].ffn_norm, dw.layers[l].w_gate, dw.layers[l].w_up, dw.layers[l].w_down};
            const vt_layer_shape *sh = &c->layers[l];
            size_t q = (size_t)sh->n_heads * c->head_dim, kv = (size_t)sh->n_kv_heads * c->head_dim, F = (size_t)sh->ffn;
            size_t sizes[9] = {d, q * d, kv * d, kv * d, d * q, d, F * d, F * d, d * F};
            for (int t = 0; t < 9; t++) {
                if (!ws[t]) continue;
                size_t cnt = 0;
                for (size_t e = 0; e < sizes[t]; e += 5, cnt++) {
                    size_t o = ref_offset(&r, ws[t]) + e;
                    double keep = r.w[o];
                    r.w[o] = keep + h;
                    double up = ref_loss(&p, &r, zd);
                    r.w[o] = keep - h;
                    fd[cnt] = (up - ref_loss(&p, &r, zd)) / (2 * h);
                    r.w[o] = keep;
                    a[cnt] = gs[t][e];
                }
                tu_assert_grad("layer weight", a, fd, cnt, 1e-4);
            }
        }
        size_t cnt = 0;
        for (size_t e = 0; e < (size_t)c->dim; e++, cnt++) {
            size_t o = ref_offset(&r, m.final_norm) + e;
            double keep = r.w[o];
            r.w[o] = keep + h;
            double up = ref_loss(&p, &r, zd);
            r.w[o] = keep - h;
            fd[cnt] = (up - ref_loss(&p, &r, zd)) / (2 * h);
            r.w[o] = keep;
            a[cnt] = dw.final_norm[e];
        }
        tu_assert_grad("final norm", a, fd, cnt, 1e-4);
        vt_model_free(&dw);
    }
    ref_model_free(&r);
    free(a); free(fd); free(teacher); free(zd); free(x); free(teach); free(logits); free(dl); free(lc);
    free(z); free(eps); free(dz);
    vt_bwd_free(&bw);
    for (int k = 0; k < C; k++) vt_tape_free(&tapes[k]);
    vt_fwd_free(&f);
    vt_masks_free(&mk);
    vt_model_free(&m);
}

/* o_proj and down_proj biases (the re-fit's) and q/k/v, gate/up ones: the gradients of gates and
 * weights stay those of the reference with the biases in its forward. */
static void test_model_biases(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    c.attn_bias = c.mlp_bias = 1;
    /* the plain forward (no gates, as eval and generate run it) against the reference */
    vt_model m;
    tu_random_model(&m, &c, 4);
    size_t nb = 0;
    for (int l = 0; l < c.n_layers; l++) nb += vt_layer_bias_params(&c, l);
    unsigned sb = 9;
    for (size_t i = 0; i < nb; i++) m.bias[i] = (float)(0.5 * tu_urand(&sb));
    enum { T = 5 };
    int32_t tok[T] = {1, 7, 3, 9, 2};
    size_t V = (size_t)c.vocab;
    float *x = malloc(sizeof(float) * T * c.dim), *lg = malloc(sizeof(float) * T * V);
    double *ref = malloc(sizeof(double) * T * V);
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, &m, 1, T, T), 0);
    vt_embed(&m, tok, T, x);
    vt_layers_forward(&m, &f, 0, c.n_layers, x, 1, T, 0);
    vt_head_forward(&m, &f, x, T, lg);
    ref_model r;
    ref_model_init(&r, &m);
    ref_forward(&r, NULL, NULL, tok, 1, T, ref, NULL);
    double num = 0, den = 0, off = 0; /* and the biases matter: without them the logits move */
    for (size_t i = 0; i < T * V; i++) num += (lg[i] - ref[i]) * (lg[i] - ref[i]), den += ref[i] * ref[i];
    memset(m.bias, 0, nb * sizeof(float));
    vt_embed(&m, tok, T, x);
    vt_layers_forward(&m, &f, 0, c.n_layers, x, 1, T, 0);
    vt_head_forward(&m, &f, x, T, lg);
    for (size_t i = 0; i < T * V; i++) off += (lg[i] - ref[i]) * (lg[i] - ref[i]);
    if (sqrt(num / den) > 1e-5 || sqrt(off / den) < 1e-2)
        fail_msg("biased forward: relative difference %g to the reference (%g without the biases)", sqrt(num / den),
                 sqrt(off / den));
    ref_model_free(&r);
    vt_fwd_free(&f);
    vt_model_free(&m);
    free(x), free(lg), free(ref);
    check_model(&c, 1, 1);
    vt_config_free(&c);
}

static void test_model_all_groups(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c); /* 2 layers, GQA 4/2 heads */
    check_model(&c, 1, 1);
    vt_config_free(&c);
}

static void test_model_rotate_half_gates_only(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    c.rope = VT_ROPE_HALF;
    check_model(&c, 0, 1);
    vt_config_free(&c);
}

static void test_model_pruned_blocks(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    c.layers[0] = (vt_layer_shape){2, 1, 0}; /* attention only */
    c.layers[1] = (vt_layer_shape){0, 0, 9}; /* MLP only */
    check_model(&c, 1, 1);
    vt_config_free(&c);
}

/* Sequences cut into chunks along their tokens (a pipeline's micro-batches): the keys and values
 * of earlier chunks get their gradients from later chunks' queries. */
static void test_model_chunked(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    check_model(&c, 1, 3); /* chunks of 2 tokens, weights too */
    c.rope = VT_ROPE_HALF;
    check_model(&c, 0, 2);
    vt_config_free(&c);
}

/* One gated forward pass with a tape and the backward pass from a fixed gradient at its output:
 * the output goes to out, the gradient at the input to dx, the gate gradients to dz. */
static void gated_pass(const vt_model *m, vt_fwd *f, vt_bwd *bw, vt_tape *tp, const vt_gates *g, const int32_t *tok,
                       int B, int T, float *out, float *dx, float *dz) {
    size_t rows = (size_t)B * T, d = (size_t)m->cfg.dim;
    vt_embed_gated(m, tok, B, T, g, out);
    vt_layers_forward_ex(m, f, 0, m->cfg.n_layers, out, B, T, 0, g, tp);
    for (size_t i = 0; i < rows * d; i++) dx[i] = (float)((int)(i * 37 % 19) - 9) * 0.01f;
    memset(dz, 0, sizeof(float) * (size_t)B * g->layout->n);
    vt_layers_backward(m, f, bw, 0, m->cfg.n_layers, dx, B, T, g, tp, dz, NULL);
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double d = 0.0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return d / scale;
}

/* Weights packed for the micro-kernel (vt_model_packs_init) change nothing but speed: the
 * same outputs and gradients as BLIS's own packing, at shapes where every matmul takes the packed
 * path (which the finite-difference checks above, at tiny shapes, do not reach). Weights of a bf16
 * checkpoint (here: rounded to bf16) held in bf16 packs, the backward reading the forward packs
 * (vt_model_packs_backward), give the fp32 packs' results bit for bit. */
static void test_packed_weights_change_nothing(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    vt_config_free(&c);
    c.dim = 64;
    c.head_dim = 16;
    c.ffn_dim = 96;
    vt_config_init_dense(&c);
    vt_model m;
    tu_random_model(&m, &c, 5);
    for (size_t i = 0; i < m.arena_floats; i++) m.arena[i] = vt_bf16_to_f32(vt_f32_to_bf16(m.arena[i]));
    vt_masks mk;
    assert_int_equal(vt_masks_init(&mk, &c, 3), 0);
    enum { B = 2, T = 24 };
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((unsigned)(i * 11 + 5) % (unsigned)c.vocab);
    int64_t ids[B] = {0, 1};
    size_t n = mk.n, rows = B * T, d = (size_t)c.dim;
    float *z = malloc(sizeof(float) * B * n), *eps = malloc(sizeof(float) * B * n);
    vt_masks_sample(&mk, 1, 0, ids, B, z, eps);
    vt_gates g = {&mk, z, n};
    float *out[3], *dx[3], *dz[3];
    for (int packed = 0; packed < 3; packed++) { /* BLIS packing, fp32 packs, bf16 packs */
        vt_fwd f;
        vt_bwd bw;
        vt_tape tp;
        assert_int_equal(vt_fwd_init(&f, &m, B, T, T), 0);
        assert_int_equal(vt_bwd_init(&bw, &m, B, T, T), 0);
        assert_int_equal(vt_tape_init(&tp, &m, B, T, 0), 0);
        m.hold = packed == 2 ? VT_BF16 : VT_F32;
        if (packed) {
            assert_int_equal(vt_model_packs_init(&f.packs, &m, 0), 0);
            assert_int_equal(vt_model_packs_backward(&bw.packs, &m, &f.packs), 0);
            for (int l = 0; l < c.n_layers; l++) { /* every layer matmul takes the packed path */
                const vt_layer_packs *pf = &f.packs.layers[l], *pb = &bw.packs.layers[l];
                assert_true(vt_packed_use(&pf->qkv, (int)rows) && vt_packed_use(&pf->o, (int)rows));
                assert_true(vt_packed_use(&pf->gate_up, (int)rows) && vt_packed_use(&pf->down, (int)rows));
                assert_true(vt_packed_use(&pb->qkv, (int)rows) && vt_packed_use(&pb->o, (int)rows));
                assert_true(vt_packed_use(&pb->gate_up, (int)rows) && vt_packed_use(&pb->down, (int)rows));
                assert_int_equal(pf->qkv.dtype, m.hold);
                assert_int_equal(pb->down.transposed, packed == 2);
            }
            assert_true(f.packs.bytes > 0 && (bw.packs.bytes > 0) == (packed == 1));
        }
        out[packed] = malloc(sizeof(float) * rows * d);
        dx[packed] = malloc(sizeof(float) * rows * d);
        dz[packed] = malloc(sizeof(float) * B * n);
        gated_pass(&m, &f, &bw, &tp, &g, tok, B, T, out[packed], dx[packed], dz[packed]);
        vt_tape_free(&tp);
        vt_bwd_free(&bw);
        vt_fwd_free(&f);
    }
    double e;
    if ((e = max_rel_diff(out[1], out[0], rows * d)) > 1e-5) fail_msg("packed forward differs by %g", e);
    if ((e = max_rel_diff(dx[1], dx[0], rows * d)) > 1e-5) fail_msg("packed backward (input) differs by %g", e);
    if ((e = max_rel_diff(dz[1], dz[0], B * n)) > 1e-5) fail_msg("packed backward (gates) differs by %g", e);
    if (memcmp(out[2], out[1], sizeof(float) * rows * d) || memcmp(dx[2], dx[1], sizeof(float) * rows * d) ||
        memcmp(dz[2], dz[1], sizeof(float) * B * n))
        fail_msg("bf16-held packs differ from fp32 packs of the same weights");
    for (int i = 0; i < 3; i++) {
        free(out[i]);
        free(dx[i]);
        free(dz[i]);
    }
    free(z);
    free(eps);
    vt_masks_free(&mk);
    vt_model_free(&m);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_backward),       cmocka_unit_test(test_linear_backward),
        cmocka_unit_test(test_losses_backward),        cmocka_unit_test(test_kl_and_sampling_backward),
        cmocka_unit_test(test_distill_vs_torch),
        cmocka_unit_test(test_model_all_groups),
        cmocka_unit_test(test_model_biases),       cmocka_unit_test(test_model_rotate_half_gates_only),
        cmocka_unit_test(test_model_pruned_blocks),     cmocka_unit_test(test_model_chunked),
        cmocka_unit_test(test_packed_weights_change_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
