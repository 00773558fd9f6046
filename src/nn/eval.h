/* eval.h — perplexity of a token stream by the protocol of README.md, "Evaluation protocol". */
#ifndef VT_EVAL_H
#define VT_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "nn/model.h"

typedef struct {
    double nll_sum; /* natural log */
    size_t tokens;  /* scored tokens */
    size_t windows;
    double ppl;
    double seconds;
    double flops; /* useful forward FLOPs (causal attention counted once) */
} vt_eval_result;

/* The pieces of windowed perplexity; the loop that runs them is dist/pipeline.c's
 * vt_pipeline_eval (one process or a pipeline of ranks). */
/* Checks window (2..seq_len), that every id is < vocab and that something is scored. */
int vt_eval_check(const vt_config *c, const int32_t *ids, size_t n, int window);
/* Windows scored: n / window full ones, plus the last shorter one when it has at least 2 tokens.
 * Window w starts at token w * window and has min(window, n - w * window) tokens. */
size_t vt_eval_windows(size_t n, int window);
/* The automatic batch (--batch 0): about 2048 rows per pass and at most 64 Mi logits. */
int vt_eval_default_batch(const vt_config *c, int window);
/* Adds to out the NLL of B windows of T tokens (ids[b*T + t], logits row b*T + t predicting the
 * token after it), their counts and forward FLOPs. */
void vt_eval_score(const vt_config *c, const float *logits, const int32_t *ids, int B, int T, vt_eval_result *out);

/* Negative log-likelihood of target under logits[vocab] (log-sum-exp, stable). */
double vt_nll(const float *logits, int vocab, int target);

#endif
