/* ref_model.c — double-precision reference forward pass with gates (see ref_model.h). */
#include "ref_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_model_init(ref_model *r, const vt_model *m) {
    r->m = m;
    r->w = malloc(sizeof(double) * m->arena_floats);
    for (size_t i = 0; i < m->arena_floats; i++) r->w[i] = m->arena[i];
}

void ref_model_free(ref_model *r) { free(r->w); }

size_t ref_offset(const ref_model *r, const float *p) { return (size_t)(p - r->m->arena); }

static const double *W(const ref_model *r, const float *p) { return r->w + ref_offset(r, p); }
/* Entry i of a bias (outside the arena, not perturbed), 0 without one. */
static double Bi(const float *b, int i) { return b ? b[i] : 0.0; }

static void rmsnorm(double *o, const double *x, const double *w, int d, double eps) {
    double ss = 0;
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / d + eps);
    for (int i = 0; i < d; i++) o[i] = x[i] * s * w[i];
}

static void matvec(double *y, const double *w, const double *x, int n_out, int n_in) {
    for (int o = 0; o < n_out; o++) {
        double a = 0;
        for (int i = 0; i < n_in; i++) a += w[(size_t)o * n_in + i] * x[i];
        y[o] = a;
    }
}

static void rope(double *v, int pos, int hd, double theta, vt_rope_layout layout) {
    for (int j = 0; j < hd / 2; j++) {
        double ang = pos * pow(theta, -2.0 * j / hd);
        int a = layout == VT_ROPE_INTERLEAVED ? 2 * j : j, b = layout == VT_ROPE_INTERLEAVED ? 2 * j + 1 : j + hd / 2;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(ang) - x1 * sin(ang);
        v[b] = x0 * sin(ang) + x1 * cos(ang);
    }
}

void ref_forward(const ref_model *r, const vt_masks *mk, const double *zall, const int32_t *tok, int B, int T,
                 double *logits, double *hidden) {
    const vt_model *m = r->m;
    const vt_config *c = &m->cfg;
    int d = c->dim, hd = c->head_dim;
    double *x = calloc((size_t)T * d, 8), *xn = calloc((size_t)T * d, 8), *y = calloc((size_t)d, 8);
    for (int b = 0; b < B; b++) {
        const double *z = zall ? zall + (size_t)b * mk->n : NULL;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++)
                x[t * d + i] = W(r, m->embed)[(size_t)tok[b * T + t] * d + i] * (z ? z[i] : 1.0);
        for (int l = 0; l < c->n_layers; l++) {
            const vt_layer_shape *s = &c->layers[l];
            const vt_layer_weights *w = &m->layers[l];
            if (s->n_heads) {
                int nh = s->n_heads, nkv = s->n_kv_heads, qd = nh * hd, kvd = nkv * hd;
                double *q = calloc((size_t)T * qd, 8), *k = calloc((size_t)T * kvd, 8), *v = calloc((size_t)T * kvd, 8);
                double *o = calloc((size_t)T * qd, 8), *sc = calloc((size_t)T, 8);
                for (int t = 0; t < T; t++) {
                    rmsnorm(xn + t * d, x + t * d, W(r, w->attn_norm), d, c->norm_eps);
                    matvec(q + t * qd, W(r, w->wq), xn + t * d, qd, d);
                    matvec(k + t * kvd, W(r, w->wk), xn + t * d, kvd, d);
                    matvec(v + t * kvd, W(r, w->wv), xn + t * d, kvd, d);
                    for (int i = 0; i < qd; i++) q[t * qd + i] += Bi(w->b_qkv, i);
                    for (int i = 0; i < kvd; i++) k[t * kvd + i] += Bi(w->b_qkv, qd + i), v[t * kvd + i] += Bi(w->b_qkv, qd + kvd + i);
                    for (int h = 0; h < nh; h++) rope(q + t * qd + h * hd, t, hd, c->rope_theta, c->rope);
                    for (int h = 0; h < nkv; h++) rope(k + t * kvd + h * hd, t, hd, c->rope_theta, c->rope);
                }
                for (int h = 0; h < nh; h++) {
                    int kh = h / (nh / nkv);
                    double zhd = z ? z[vt_gate_heads(mk, l) + h] : 1.0;
                    for (int t = 0; t < T; t++) {
                        double mx = -1e300, sum = 0;
                        for (int j = 0; j <= t; j++) {
                            sc[j] = 0;
                            for (int i = 0; i < hd; i++) sc[j] += q[t * qd + h * hd + i] * k[j * kvd + kh * hd + i];
                            sc[j] /= sqrt((double)hd);
                            mx = sc[j] > mx ? sc[j] : mx;
                        }
                        for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
                        for (int j = 0; j <= t; j++)
                            for (int i = 0; i < hd; i++)
                                o[t * qd + h * hd + i] += zhd * sc[j] / sum * v[j * kvd + kh * hd + i];
                    }
                }
                double zb = z ? z[vt_gate_blocks(mk, l)] : 1.0;
                for (int t = 0; t < T; t++) {
                    matvec(y, W(r, w->wo), o + t * qd, d, qd);
                    for (int i = 0; i < d; i++) x[t * d + i] += zb * (z ? z[i] : 1.0) * (y[i] + Bi(w->bo, i));
                }
                free(q); free(k); free(v); free(o); free(sc);
            }
            if (s->ffn) {
                int f = s->ffn;
                double *g = calloc((size_t)f, 8), *u = calloc((size_t)f, 8);
                double zb = z ? z[vt_gate_blocks(mk, l) + 1] : 1.0;
                for (int t = 0; t < T; t++) {
                    rmsnorm(xn + t * d, x + t * d, W(r, w->ffn_norm), d, c->norm_eps);
                    matvec(g, W(r, w->w_gate), xn + t * d, f, d);
                    matvec(u, W(r, w->w_up), xn + t * d, f, d);
                    for (int j = 0; j < f; j++) g[j] += Bi(w->b_gate_up, j), u[j] += Bi(w->b_gate_up, f + j);
                    for (int j = 0; j < f; j++) g[j] = g[j] / (1 + exp(-g[j])) * u[j] * (z ? z[vt_gate_ffn(mk, l) + j] : 1.0);
                    matvec(y, W(r, w->w_down), g, d, f);
                    for (int i = 0; i < d; i++) x[t * d + i] += zb * (z ? z[i] : 1.0) * (y[i] + Bi(w->b_down, i));
                }
                free(g); free(u);
            }
        }
        if (hidden) memcpy(hidden + (size_t)b * T * d, x, sizeof(double) * T * d);
        for (int t = 0; t < T; t++) {
            rmsnorm(xn + t * d, x + t * d, W(r, m->final_norm), d, c->norm_eps);
            matvec(logits + ((size_t)b * T + t) * c->vocab, W(r, m->lm_head), xn + t * d, c->vocab, d);
        }
    }
    free(x);
    free(xn);
    free(y);
}

double ref_distill(const double *s, const double *t, int rows, int vocab, double T, double weight) {
    double total = 0;
    for (int r = 0; r < rows; r++) {
        const double *a = s + (size_t)r * vocab, *b = t + (size_t)r * vocab;
        double ma = -1e300, mb = -1e300, za = 0, zb = 0;
        for (int i = 0; i < vocab; i++) {
            ma = fmax(ma, a[i] / T);
            mb = fmax(mb, b[i] / T);
        }
        for (int i = 0; i < vocab; i++) {
            za += exp(a[i] / T - ma);
            zb += exp(b[i] / T - mb);
        }
        for (int i = 0; i < vocab; i++) {
            double lpt = b[i] / T - mb - log(zb), lps = a[i] / T - ma - log(za);
            total += exp(lpt) * (lpt - lps);
        }
    }
    return weight * T * T * total / rows;
}
