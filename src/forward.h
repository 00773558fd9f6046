/* forward.h — the LLaMA forward pass over a batch of B sequences x T tokens: embedding, a
 * contiguous range of layers (what one pipeline stage runs), final norm and classifier. */
#ifndef VT_FORWARD_H
#define VT_FORWARD_H

#include <stdint.h>

#include "model.h"

/* Scratch buffers and the key/value cache for the layers a model holds. Activations are
 * row-major [B*T, dim] with row = b*T + t; token t of sequence b sits at position pos0 + t. */
typedef struct {
    int max_batch, max_tokens, max_ctx;
    int layer_begin, layer_end;
    float **k_cache, **v_cache; /* per layer: [max_batch, max_ctx, kv_dim] */
    float *xn;                  /* [rows, dim] normalised input of a block */
    float *qkv;                 /* [rows, q_dim + 2 kv_dim] */
    float *att_out;             /* [rows, q_dim] heads' outputs, input of o_proj */
    float *scores;              /* [max_tokens, max_ctx] one head's attention */
    float *gate_up;             /* [rows, 2 ffn] */
    float *ffn_act;             /* [rows, ffn] silu(gate) * up */
    float *block_out;           /* [rows, dim] */
    float *rope_cos, *rope_sin; /* [max_ctx, head_dim/2] */
} vt_fwd;

int vt_fwd_init(vt_fwd *f, const vt_model *m, int max_batch, int max_tokens, int max_ctx);
void vt_fwd_free(vt_fwd *f);

/* x[rows, dim] = embedding rows of tokens (ids must be < vocab). */
void vt_embed(const vt_model *m, const int32_t *tokens, int rows, float *x);

/* Runs layers [l0, l1) in place on x. Keys and values of positions pos0..pos0+T-1 are written
 * into the cache; attention covers positions 0..pos0+t (causal). */
void vt_layers_forward(const vt_model *m, vt_fwd *f, int l0, int l1, float *x, int B, int T, int pos0);

/* logits[rows, vocab] = classifier(final_norm(x)); x is left unchanged. */
void vt_head_forward(const vt_model *m, vt_fwd *f, const float *x, int rows, float *logits);

/* Building blocks, shared with the backward pass. */
void vt_rmsnorm(float *out, const float *x, const float *w, int rows, int dim, float eps);
/* y[rows, n_out] = x[rows, n_in] W^T (+ beta * y) with W row-major [n_out, n_in] (BLIS sgemm). */
void vt_linear(float *y, const float *x, const float *w, int rows, int n_in, int n_out, float beta);

#endif
