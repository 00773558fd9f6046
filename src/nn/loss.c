/* loss.c — distillation and cross-entropy losses with gradients (double accumulation). */
#include "nn/loss.h"

#include <math.h>

double vt_loss_distill(const float *student, const float *teacher, int rows, int vocab, float temperature,
                       float weight, float *dstudent) {
    double T = temperature, total = 0.0;
    double scale = weight / (double)rows;
    for (int r = 0; r < rows; r++) {
        const float *s = student + (size_t)r * vocab, *t = teacher + (size_t)r * vocab;
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
        float *d = dstudent + (size_t)r * vocab;
        for (int i = 0; i < vocab; i++) {
            double lpt = t[i] / T - lzt, lps = s[i] / T - lzs, pt = exp(lpt);
            kl += pt * (lpt - lps);
            /* d/ds_i of T^2 KL = T (p_s,i - p_t,i) */
            d[i] += (float)(scale * T * (exp(lps) - pt));
        }
        total += T * T * kl;
    }
    return total * scale;
}

double vt_loss_ce(const float *logits, const int32_t *targets, int rows, int vocab, float weight, float *dlogits) {
    int scored = 0;
    for (int r = 0; r < rows; r++) scored += targets[r] >= 0;
    if (!scored) return 0.0;
    double scale = weight / (double)scored, total = 0.0;
    for (int r = 0; r < rows; r++) {
        if (targets[r] < 0) continue;
        const float *x = logits + (size_t)r * vocab;
        float *d = dlogits + (size_t)r * vocab;
        double mx = x[0], sum = 0.0;
        for (int i = 1; i < vocab; i++) mx = x[i] > mx ? x[i] : mx;
        for (int i = 0; i < vocab; i++) sum += exp(x[i] - mx);
        double lz = mx + log(sum);
        total += lz - x[targets[r]];
        for (int i = 0; i < vocab; i++) d[i] += (float)(scale * exp(x[i] - lz));
        d[targets[r]] -= (float)scale;
    }
    return total * scale;
}
