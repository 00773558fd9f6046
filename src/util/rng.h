/* rng.h — every random number of the project. The program's are counter-based: pure functions of
 * a seed and counters (splitmix64 mixing), so that the gate noise is a function of (seed, step,
 * sample, unit) alone and any rank or replica draws the same number without shared state, however
 * the batch is split; the sequential streams below serve test data and benchmarks. */
#ifndef VT_RNG_H
#define VT_RNG_H

#include <stddef.h>
#include <stdint.h>

/* 64-bit mix of a counter (the splitmix64 finaliser): the base of the counter-based numbers. */
uint64_t vt_mix64(uint64_t x);
/* Uniform in [0, 1) from (seed, counter): token sampling (counter = position), random baseline
 * scores (counter = unit id). */
double vt_uniform(uint64_t seed, uint64_t counter);
/* Standard normal from (seed, step, sample, unit) by Box-Muller: the VIB gates' noise and their
 * initial jitter. */
float vt_gauss(uint64_t seed, uint64_t step, uint64_t sample, uint64_t unit);
/* Element i of permutation `epoch` of 0..n-1 (0 < n < 2^32) keyed by seed: the bijection
 * i -> (a*i + b) mod n with gcd(a, n) = 1, a and b keyed by (seed, epoch); O(1) per element, no
 * table (the calibration batches). */
size_t vt_permuted(size_t n, uint64_t seed, uint64_t epoch, size_t i);

/* Sequential streams for test data and benchmarks: each advances *s and returns the new state. */
uint32_t vt_lcg32(uint32_t *s);       /* s = s * 1103515245 + 12345 (mod 2^32) */
uint64_t vt_lcg64(uint64_t *s);       /* s = s * 6364136223846793005 + 1442695040888963407 */
uint64_t vt_xorshift64(uint64_t *s);  /* s ^= s << 13, s ^= s >> 7, s ^= s << 17 */

#endif
