/* rng.c — counter-based random numbers (splitmix64) and the sequential test streams (see rng.h). */
#include "util/rng.h"

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

float vt_gauss(uint64_t seed, uint64_t step, uint64_t sample, uint64_t unit) {
    uint64_t key = vt_mix64(vt_mix64(vt_mix64(seed) ^ step) ^ sample) ^ (unit * 0xD1B54A32D192ED03ull);
    double u1 = ((double)(vt_mix64(key) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(vt_mix64(key ^ 0x5851F42D4C957F2Dull) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

size_t vt_permuted(size_t n, uint64_t seed, uint64_t epoch, size_t i) {
    uint64_t key = vt_mix64(seed ^ vt_mix64(epoch + 1));
    size_t a = (size_t)(key % n) | 1, b = (size_t)(vt_mix64(key) % n);
    while (1) { /* smallest a' >= a coprime with n */
        size_t x = a, y = n;
        while (y) {
            size_t t = x % y;
            x = y;
            y = t;
        }
        if (x == 1) break;
        a++;
    }
    return (size_t)(((uint64_t)a * i + b) % n); /* n < 2^32: no overflow */
}

uint32_t vt_lcg32(uint32_t *s) { return *s = *s * 1103515245u + 12345u; }

uint64_t vt_lcg64(uint64_t *s) { return *s = *s * 6364136223846793005ull + 1442695040888963407ull; }

uint64_t vt_xorshift64(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
