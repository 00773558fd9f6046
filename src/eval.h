/* eval.h — perplexity of a token stream by the protocol of DESIGN.md section 5. */
#ifndef VT_EVAL_H
#define VT_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

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

/* Negative log-likelihood of target under logits[vocab] (log-sum-exp, stable). */
double vt_nll(const float *logits, int vocab, int target);

#endif
