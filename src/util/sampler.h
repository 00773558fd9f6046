/* sampler.h — choosing the next token from logits: greedy at temperature 0, else softmax sampling
 * at a temperature with a uniform number the caller draws (vt_uniform, util/rng.h). */
#ifndef VT_SAMPLER_H
#define VT_SAMPLER_H

/* Index of the largest logit (first on ties). */
int vt_argmax(const float *logits, int n);
/* Samples from softmax(logits / temperature) using uniform u in [0,1); temperature > 0.
 * Scratch must hold n floats. */
int vt_sample(const float *logits, int n, float temperature, double u, float *scratch);

#endif
