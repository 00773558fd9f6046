/* sampler.c — greedy and temperature sampling of the next token (see sampler.h). */
#include "util/sampler.h"

#include <math.h>

int vt_argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int vt_sample(const float *logits, int n, float temperature, double u, float *p) {
    float mx = logits[0] / temperature;
    for (int i = 1; i < n; i++) mx = logits[i] / temperature > mx ? logits[i] / temperature : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (p[i] = expf(logits[i] / temperature - mx));
    double target = u * sum, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += p[i];
        if (target < acc) return i;
    }
    return n - 1;
}
