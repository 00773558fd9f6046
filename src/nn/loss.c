/* loss.c — distillation and cross-entropy losses with gradients (double accumulation). Rows run on
 * the rank's threads in blocks; each block's row losses are summed in row order afterwards, so the
 * total does not depend on the thread count. */
#include "nn/loss.h"

#include <math.h>

#include "nn/matmul.h"

enum { ROW_BLOCK = 256 }; /* rows whose losses are held at once before summing */

/* T^2 KL(teacher || student) of one row at temperature T; its gradient times scale into d. */
static double distill_row(const float *s, const float *t, int vocab, double T, double scale, float *d) {
    double zs = 0.0, zt = 0.0, mxs = s[0] / T, mxt = t[0] / T;
    for (int i = 1; i < vocab; i++) {
        mxs = s[i] / T > mxs ? s[i] / T : mxs;
        mxt = t[i] / T > mxt ? t[i] / T : mxt;
    }
    for (int i = 0; i < vocab; i++) {
        zs += exp(s[i] / T - mxs);
        zt += exp(t[i] / T - mxt);
    }
    double lzs = mxs + log(zs), lzt = mxt + log(zt), kl = 0.0;
    for (int i = 0; i < vocab; i++) {
        double lpt = t[i] / T - lzt, lps = s[i] / T - lzs, pt = exp(lpt);
        kl += pt * (lpt - lps);
        /* d/ds_i of T^2 KL = T (p_s,i - p_t,i) */
        d[i] += (float)(scale * T * (exp(lps) - pt));
    }
    return T * T * kl;
}

double vt_loss_distill(const float *student, const float *teacher, int rows, int vocab, float temperature,
                       float weight, float *dstudent) {
    double T = temperature, total = 0.0, part[ROW_BLOCK];
    double scale = weight / (double)rows;
    for (int r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
        int n = rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK;
#pragma omp parallel for schedule(static) if(vt_par((size_t)n * vocab))
        for (int i = 0; i < n; i++) {
            size_t r = (size_t)(r0 + i) * vocab;
            part[i] = distill_row(student + r, teacher + r, vocab, T, scale, dstudent + r);
        }
        for (int i = 0; i < n; i++) total += part[i];
    }
    return total * scale;
}

/* log Z - x[target] of one row; its gradient times scale into d. */
static double ce_row(const float *x, int target, int vocab, double scale, float *d) {
    double mx = x[0], sum = 0.0;
    for (int i = 1; i < vocab; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < vocab; i++) sum += exp(x[i] - mx);
    double lz = mx + log(sum);
    for (int i = 0; i < vocab; i++) d[i] += (float)(scale * exp(x[i] - lz));
    d[target] -= (float)scale;
    return lz - x[target];
}

double vt_loss_ce(const float *logits, const int32_t *targets, int rows, int vocab, float weight, float *dlogits) {
    int scored = 0;
    for (int r = 0; r < rows; r++) scored += targets[r] >= 0;
    if (!scored) return 0.0;
    double scale = weight / (double)scored, total = 0.0, part[ROW_BLOCK];
    for (int r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
        int n = rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK;
#pragma omp parallel for schedule(static) if(vt_par((size_t)n * vocab))
        for (int i = 0; i < n; i++) {
            size_t r = (size_t)(r0 + i) * vocab;
            part[i] = targets[r0 + i] < 0 ? 0.0 : ce_row(logits + r, targets[r0 + i], vocab, scale, dlogits + r);
        }
        for (int i = 0; i < n; i++)
            if (targets[r0 + i] >= 0) total += part[i];
    }
    return total * scale;
}
