/* sampler.c — greedy and temperature sampling, splitmix64 counter-based random numbers. */
#include "util/sampler.h"

#include <math.h>

uint64_t vt_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

double vt_uniform(uint64_t seed, uint64_t counter) {
    return (double)(vt_mix64(vt_mix64(seed) ^ counter) >> 11) * (1.0 / 9007199254740992.0);
}

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
