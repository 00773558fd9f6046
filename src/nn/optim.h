/* optim.h — Adam/AdamW over flat parameter arrays, learning-rate schedules, gradient clipping. */
#ifndef VT_OPTIM_H
#define VT_OPTIM_H

#include <stddef.h>

typedef enum { VT_LR_CONSTANT = 0, VT_LR_COSINE, VT_LR_LINEAR } vt_lr_schedule;

/* Moments of one parameter array. */
typedef struct {
    float *m, *v;
    size_t n;
    long t; /* steps taken */
    double beta1, beta2, eps, weight_decay;
} vt_adam;

int vt_adam_init(vt_adam *a, size_t n, double weight_decay);
void vt_adam_free(vt_adam *a);
/* One AdamW step: p -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * p). Sign: descent;
 * pass lr < 0 for ascent. */
void vt_adam_step(vt_adam *a, float *p, const float *g, double lr);

/* Learning rate at step (0-based) of total: linear warm-up over warmup steps, then the schedule
 * (cosine and linear decay to 10% of base). */
double vt_lr_at(vt_lr_schedule s, double base, long step, long total, long warmup);

/* Sum of squares of g[n] (accumulate over several arrays, then sqrt). */
double vt_sumsq(const float *g, size_t n);
/* Multiplies g[n] by scale. */
void vt_scale(float *g, size_t n, float scale);

#endif
