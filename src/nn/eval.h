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

/* Cuts ids into consecutive windows of `window` tokens from token 0 (a last shorter window is
 * scored when it has at least 2 tokens) and scores every token after the first of its window.
 * Windows are batched `batch` at a time (0 chooses). Ids must be < vocab. Calls progress(done,
 * total, arg) after each batch when progress is not NULL. */
int vt_eval_stream(const vt_model *m, const int32_t *ids, size_t n, int window, int batch, vt_eval_result *out,
                   void (*progress)(size_t done, size_t total, void *arg), void *arg);

/* The pieces vt_eval_stream is made of, shared with the MPI pipeline (mpi/pipe_forward.c). */
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
