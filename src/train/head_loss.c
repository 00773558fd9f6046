/* head_loss.c — classifier, distillation and cross-entropy split by vocabulary over pipeline
 * stages, the teacher entering through cached expectations (see head_loss.h). */
#include "train/head_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "util/error.h"
#include "util/fastexp.h"
#include "nn/forward.h"

int vt_head_part_init(vt_head_part *h, int v0, int vs, int d, int rows) {
    memset(h, 0, sizeof *h);
    h->v0 = v0;
    h->vs = vs;
    h->d = d;
    h->rows = rows;
    size_t n = (size_t)rows * (size_t)(vs > 0 ? vs : 1);
    h->logits = vt_malloc(sizeof(float) * n, "classifier logits");
    h->p = vt_malloc(sizeof(float) * n, "classifier probabilities");
    h->dl = vt_malloc(sizeof(float) * n, "classifier gradients");
    h->stat = vt_malloc(sizeof(double) * 6 * (size_t)rows, "softmax statistics");
    h->bytes = sizeof(float) * 3 * n + sizeof(double) * 6 * (size_t)rows;
    if (!h->logits || !h->p || !h->dl || !h->stat) {
        vt_head_part_free(h);
        return -1;
    }
    return 0;
}

int vt_head_part_pack(vt_head_part *h) {
    vt_head_part_unpack(h);
    if (!h->vs) return 0;
    if (vt_pack_linear(&h->pk[0], h->w, h->d, h->vs, 0, h->hold)) return -1;
    if (h->pk[0].dtype != VT_F32) { /* 16-bit: the backward reads the forward pack (matmul.h) */
        vt_pack_transposed(&h->pk[1], &h->pk[0]);
        return 0;
    }
    if (vt_pack_linear(&h->pk[1], h->w, h->d, h->vs, 1, h->hold)) {
        vt_head_part_unpack(h);
        return -1;
    }
    return 0;
}

void vt_head_part_unpack(vt_head_part *h) {
    for (int b = 0; b < 2; b++) vt_packed_free(&h->pk[b]);
}

void vt_head_part_free(vt_head_part *h) {
    vt_head_part_unpack(h);
    free(h->logits);
    free(h->p);
    free(h->dl);
    free(h->stat);
    h->logits = h->p = h->dl = NULL;
    h->stat = NULL;
}

void vt_vocab_share(int V, int n, int s, int *v0, int *vs) {
    int base = V / n, extra = V % n;
    *v0 = s * base + (s < extra ? s : extra);
    *vs = base + (s < extra);
}

/* out[j] = exp(x[j] * inv_t - mx) for one row (clamped at -87); returns their sum. */
static double exp_row(float *out, const float *x, int n, float inv_t, double mx) {
    for (int j = 0; j < n; j++) {
        float v = (float)(x[j] * inv_t - mx);
        out[j] = v < -87.0f ? -87.0f : v;
    }
    vt_exp_nonpositive(out, n);
    double s = 0.0;
    for (int j = 0; j < n; j++) s += out[j];
    return s;
}

static float row_max(const float *x, int n) {
    float m = -INFINITY;
    for (int j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* Softmax statistics of the logits at temperature tau over the whole vocabulary: mx[r] = the
 * global maximum of row r's logits / tau, se[r] = the global sum of exp(logits / tau - mx); this
 * stage's exp(logits / tau - mx) go to out[rows, vs]. */
static int softmax_stats(vt_comm *c, const vt_head_part *h, int rows, float tau, double *mx, double *se, float *out) {
    float inv_t = 1.0f / tau;
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * h->vs))
    for (int r = 0; r < rows; r++) mx[r] = h->vs ? row_max(h->logits + (size_t)r * h->vs, h->vs) * inv_t : -INFINITY;
    if (vt_comm_pipe_allreduce(c, mx, (size_t)rows, 1)) return -1;
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * h->vs))
    for (int r = 0; r < rows; r++)
        se[r] = exp_row(out + (size_t)r * h->vs, h->logits + (size_t)r * h->vs, h->vs, inv_t, mx[r]);
    return vt_comm_pipe_allreduce(c, se, (size_t)rows, 0);
}

int vt_head_teacher(vt_comm *c, vt_head_part *h, const float *xn, int rows, float tau, int root, float *e,
                    double *negent) {
    int vs = h->vs;
    double *mx = h->stat, *se = h->stat + rows;
    if (vs) vt_linear(h->logits, xn, h->w, &h->pk[0], rows, h->d, vs, 0.0f);
    if (softmax_stats(c, h, rows, tau, mx, se, h->p)) return -1;
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * vs))
    for (int r = 0; r < rows; r++) {
        double lse = mx[r] + log(se[r]), inv = 1.0 / se[r], ne = 0.0;
        float *p = h->p + (size_t)r * vs;
        const float *l = h->logits + (size_t)r * vs;
        for (int j = 0; j < vs; j++) {
            p[j] = (float)(p[j] * inv);
            ne += p[j] * (l[j] / tau - lse);
        }
        negent[r] = ne;
    }
    if (vs) vt_linear_backward(e, NULL, h->p, NULL, h->w, &h->pk[1], rows, h->d, vs, 0.0f);
    else memset(e, 0, sizeof(float) * (size_t)rows * h->d);
    if (vt_comm_pipe_reduce(c, e, (size_t)rows * h->d, root)) return -1;
    return vt_comm_pipe_allreduce(c, negent, (size_t)rows, 0);
}

int vt_head_student(vt_comm *c, vt_head_part *h, const float *xn, int rows, float tau, double kd_weight,
                    const int32_t *targets, double ce_weight, int root, const float *e, const int64_t *e_cols,
                    int e_stride, const double *negent, float *dxn, double loss[2]) {
    int vs = h->vs, d = h->d, ce = ce_weight > 0;
    double *mx = h->stat, *se = h->stat + rows, *mx1 = h->stat + 2 * (size_t)rows;
    double *se1 = h->stat + 3 * (size_t)rows, *tl = h->stat + 4 * (size_t)rows, *dots = h->stat + 5 * (size_t)rows;
    if (vs) vt_linear(h->logits, xn, h->w, &h->pk[0], rows, d, vs, 0.0f);
    if (softmax_stats(c, h, rows, tau, mx, se, h->p)) return -1;
    int scored = 0;
    for (int r = 0; r < rows; r++) scored += ce && targets[r] >= 0;
    double kd_scale = kd_weight / rows, ce_scale = scored ? ce_weight / scored : 0.0;
    if (scored) { /* the same statistics at temperature 1 (into dl), and the target logits */
        if (softmax_stats(c, h, rows, 1.0f, mx1, se1, h->dl)) return -1;
        for (int r = 0; r < rows; r++) {
            int j = targets[r] - h->v0;
            tl[r] = targets[r] >= 0 && j >= 0 && j < vs ? h->logits[(size_t)r * vs + j] : 0.0;
        }
        if (vt_comm_pipe_allreduce(c, tl, (size_t)rows, 0)) return -1;
    }
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * vs))
    for (int r = 0; r < rows; r++) {
        float *dl = h->dl + (size_t)r * vs;
        const float *p = h->p + (size_t)r * vs;
        float a = (float)(kd_scale * tau / se[r]);
        if (scored && targets[r] >= 0) {
            float b = (float)(ce_scale / se1[r]);
            for (int j = 0; j < vs; j++) dl[j] = a * p[j] + b * dl[j];
            int j = targets[r] - h->v0;
            if (j >= 0 && j < vs) dl[j] -= (float)ce_scale;
        } else {
            for (int j = 0; j < vs; j++) dl[j] = a * p[j];
        }
    }
    if (vs) vt_linear_backward(dxn, NULL, h->dl, NULL, h->w, &h->pk[1], rows, d, vs, 0.0f);
    else memset(dxn, 0, sizeof(float) * (size_t)rows * d);
    if (vt_comm_pipe_reduce(c, dxn, (size_t)rows * d, root)) return -1;
    if (c->stage != root) return 0;
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * d))
    for (int r = 0; r < rows; r++) {
        const float *er = e + (size_t)r * e_stride, *x = xn + (size_t)r * d;
        float *g = dxn + (size_t)r * d, a = (float)(kd_scale * tau);
        double dot = 0.0;
        for (int i = 0; i < d; i++) {
            float ei = er[e_cols ? e_cols[i] : i];
            dot += (double)ei * x[i];
            g[i] -= a * ei;
        }
        dots[r] = dot;
    }
    double kl = 0.0, lm = 0.0; /* summed in row order: the same whatever the threads */
    for (int r = 0; r < rows; r++) {
        kl += negent[r] - dots[r] / tau + mx[r] + log(se[r]);
        if (scored && targets[r] >= 0) lm += mx1[r] + log(se1[r]) - tl[r];
    }
    loss[0] += kd_scale * tau * tau * kl;
    loss[1] += ce_scale * lm;
    return 0;
}
