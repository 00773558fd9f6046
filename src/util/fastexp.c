/* fastexp.c — vectorisable exp for softmax inputs (see fastexp.h). */
#include "util/fastexp.h"

#include <stdint.h>
#include <string.h>

void vt_exp_nonpositive(float *x, int n) {
    for (int j = 0; j < n; j++) {
        float v = x[j];
        /* round(v / ln 2) for v <= 0; a NaN (a diverged model) takes k = -127 instead of an
         * undefined conversion, and stays NaN below (NaN * 0) */
        float t = v * 1.44269504088896341f - 0.5f;
        int32_t k = t >= -127.0f ? (int32_t)t : -127;
        float fk = (float)k;
        v = v - fk * 0.693359375f + fk * 2.12194440e-4f; /* v - k ln 2, ln 2 split for accuracy */
        float y = ((((1.9875691500e-4f * v + 1.3981999507e-3f) * v + 8.3334519073e-3f) * v + 4.1665795894e-2f) * v +
                   1.6666665459e-1f) * v + 5.0000001201e-1f;
        y = y * v * v + v + 1.0f;
        uint32_t bits = (uint32_t)(k + 127) << 23; /* 2^k */
        float scale;
        memcpy(&scale, &bits, sizeof scale);
        x[j] = y * scale;
    }
}
