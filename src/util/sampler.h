/* sampler.h — choosing the next token from logits: greedy at temperature 0, else softmax sampling
 * with a seeded counter-based generator. */
#ifndef VT_SAMPLER_H
#define VT_SAMPLER_H

#include <stdint.h>

/* 64-bit mix of a counter (splitmix64): the project's pure-function random numbers. */
uint64_t vt_mix64(uint64_t x);
/* Uniform in [0, 1) from (seed, counter). */
double vt_uniform(uint64_t seed, uint64_t counter);

/* Index of the largest logit (first on ties). */
int vt_argmax(const float *logits, int n);
/* Samples from softmax(logits / temperature) using uniform u in [0,1); temperature > 0.
 * Scratch must hold n floats. */
int vt_sample(const float *logits, int n, float temperature, double u, float *scratch);

#endif
