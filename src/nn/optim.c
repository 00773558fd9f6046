/* optim.c — AdamW, learning-rate schedules, gradient-norm helpers. */
#include "nn/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

int vt_adam_init(vt_adam *a, size_t n, double weight_decay) {
    memset(a, 0, sizeof *a);
    a->m = vt_calloc(n, sizeof(float), "optimizer moments");
    a->v = vt_calloc(n, sizeof(float), "optimizer moments");
    if (!a->m || !a->v) {
        vt_adam_free(a);
        return -1;
    }
    a->n = n;
    a->beta1 = 0.9;
    a->beta2 = 0.999;
    a->eps = 1e-8;
    a->weight_decay = weight_decay;
    return 0;
}

void vt_adam_free(vt_adam *a) {
    free(a->m);
    free(a->v);
    memset(a, 0, sizeof *a);
}

void vt_adam_step(vt_adam *a, float *p, const float *g, double lr) {
    a->t++;
    double c1 = 1.0 - pow(a->beta1, (double)a->t), c2 = 1.0 - pow(a->beta2, (double)a->t);
    float b1 = (float)a->beta1, b2 = (float)a->beta2;
    for (size_t i = 0; i < a->n; i++) {
        a->m[i] = b1 * a->m[i] + (1.0f - b1) * g[i];
        a->v[i] = b2 * a->v[i] + (1.0f - b2) * g[i] * g[i];
        double mh = a->m[i] / c1, vh = a->v[i] / c2;
        p[i] -= (float)(lr * (mh / (sqrt(vh) + a->eps) + a->weight_decay * p[i]));
    }
}

double vt_lr_at(vt_lr_schedule s, double base, long step, long total, long warmup) {
    if (warmup > 0 && step < warmup) return base * (double)(step + 1) / (double)warmup;
    if (s == VT_LR_CONSTANT || total <= warmup) return base;
    double frac = (double)(step - warmup) / (double)(total - warmup), lo = 0.1 * base;
    if (frac > 1.0) frac = 1.0;
    if (s == VT_LR_LINEAR) return base - (base - lo) * frac;
    return lo + 0.5 * (base - lo) * (1.0 + cos(3.141592653589793 * frac));
}

double vt_sumsq(const float *g, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return s;
}

void vt_scale(float *g, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) g[i] *= scale;
}
