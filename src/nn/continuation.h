/* continuation.h — continuation perplexity (DESIGN.md section 5): the protocol's windows, each a
 * prompt of P tokens and a scored continuation, dense against plugged (nn/plugin.h) on the same
 * windows, with the prefill FLOPs the plugins save. */
#ifndef VT_CONTINUATION_H
#define VT_CONTINUATION_H

#include <stddef.h>
#include <stdint.h>

#include "nn/forward.h"
#include "nn/model.h"
#include "nn/plugin.h"

/* Which windows are scored: the protocol's windows of L tokens from token 0 (a last shorter one
 * kept when it has at least 2 tokens); those of at least P + 2 tokens are scored, on their tokens
 * after the prompt. Only the last window can be shorter, so the scored ones are windows
 * 0..scored_windows-1. */
typedef struct {
    int window, prompt;    /* L and P */
    size_t windows;        /* the protocol's windows */
    size_t scored_windows; /* those with at least P + 2 tokens */
    size_t full_windows;   /* scored windows of L tokens (the rest, at most one, is shorter) */
    size_t tokens;         /* scored tokens: the sum of (length - P) over the scored windows */
} vt_cont_plan;

/* prompt <= 0 chooses P = floor(3 L / 4). Fails when P < 1 or P + 2 > L, or nothing is scored. */
int vt_cont_plan_make(vt_cont_plan *pl, size_t n, int window, int prompt);
/* Window w: its first token and its length. */
static inline size_t vt_cont_window_start(const vt_cont_plan *pl, size_t w) { return w * (size_t)pl->window; }
size_t vt_cont_window_len(const vt_cont_plan *pl, size_t n, size_t w);

/* Buffers for the logits of up to B windows of up to T tokens with prompt P. */
typedef struct {
    int B, T, P;
    vt_fwd f;
    vt_plugin_work pw; /* when made for a plugin */
    int has_pw;
    int32_t *tok;      /* [B T] prompt tokens (B P), then continuation inputs (B (C - 1)) */
    float *x;          /* [B T, dim] their hidden states */
    float *h;          /* [B C, dim] hidden states of the scored rows */
    float *logits;     /* [B C, vocab] */
} vt_cont_work;

int vt_cont_work_init(vt_cont_work *w, const vt_model *m, const vt_plugin *p, int B, int T, int P);
void vt_cont_work_free(vt_cont_work *w);

/* The layout of B windows of T tokens with prompt P: tok[B P] the prompts, then tok[B (T - P - 1)]
 * the continuations' inputs (the last token of a window predicts nothing inside it). */
void vt_cont_split_tokens(int32_t *tok, const int32_t *ids, int B, int T, int P);
/* The pieces of vt_cont_logits, for a pipeline stage: layers [l0, l1) on w->x (the prompts
 * plugged by p, or dense when NULL, then the continuations exactly on their cache), and on the
 * stage holding the head the logits of the scored rows into w->logits. */
void vt_cont_layers(const vt_model *m, const vt_plugin *p, vt_cont_work *w, int l0, int l1, int B, int T);
void vt_cont_head(const vt_model *m, vt_cont_work *w, int B, int T);

/* The logits that predict the continuation of B windows of T tokens (ids[b T + t]) with prompt P
 * into w->logits: row b C + j (C = T - P) predicts token P + j of window b, from the prompt's last
 * position (j = 0) and the continuation's positions. The prompt runs plugged by p (NULL: dense),
 * then the continuation exactly on its keys and values. m holds the whole model. */
void vt_cont_logits(const vt_model *m, const vt_plugin *p, vt_cont_work *w, const int32_t *ids, int B, int T);

typedef struct {
    double nll_dense, nll; /* sums of the negative log-likelihoods (natural log), dense and plugged */
    double ppl_dense, ppl; /* exp of their means */
    size_t tokens, windows;
    int prompt;
    double prefill_flops_dense, prefill_flops; /* per window's prompt */
    double prefill_flops_saved;                /* 1 - plugged / dense */
    double seconds;
} vt_cont_result;

/* Dense and plugged (p may be NULL: dense only, the plugged figures then equal the dense ones)
 * continuation perplexity of ids[n] by plan pl, windows batched `batch` at a time (0 chooses). */
int vt_cont_eval(const vt_model *m, const vt_plugin *p, const int32_t *ids, size_t n, const vt_cont_plan *pl,
                 int batch, vt_cont_result *out);

/* The pieces of vt_cont_eval, for an evaluation over pipeline stages: the windows a pass takes
 * (batch <= 0 chooses: about 2048 rows, at most 64 Mi logits, at most the full windows); the NLL
 * sum of the continuations of B windows of T tokens ids[b T + t] from w->logits; out's figures
 * from its NLL sums (nll_dense, and nll when p is not NULL). */
int vt_cont_eval_batch(const vt_config *c, const vt_cont_plan *pl, int batch);
double vt_cont_nll_sum(const vt_cont_work *w, int vocab, const int32_t *ids, int B, int T);
void vt_cont_result_set(vt_cont_result *out, const vt_config *c, const vt_plugin *p, const vt_cont_plan *pl);

/* Negative log-likelihood of target under logits[vocab] (log-sum-exp in double). */
double vt_cont_nll(const float *logits, int vocab, int target);

#endif
