/* backward.h — the backward pass of the gated LLaMA stack: activation gradients, gate gradients
 * and (when weights train) weight gradients, from the activations a vt_tape saved. */
#ifndef VT_BACKWARD_H
#define VT_BACKWARD_H

#include "nn/forward.h"

/* Scratch for the backward pass of one model part (B x T tokens of sequences of up to ctx). */
typedef struct {
    int B, T, ctx, layer_begin, layers;
    int threads;    /* the rank's threads when allocated (vt_threads) */
    float *dxn;     /* [rows, dim] */
    float *dy;      /* [rows, dim] */
    float *dgated;  /* [rows, max(q, ffn)] gradient of gated head outputs / neuron activations */
    float *dpre;    /* [rows, max(q, ffn)] before the gates */
    float *gated;   /* [rows, max(q, ffn)] gated values, recomputed for weight gradients */
    float *dqkv;    /* [rows, max(q + 2 kv, 2 ffn)] */
    float *dp;      /* [threads][min(T, VT_ATTN_QUERY_BLOCK), ctx] one block of query rows per thread */
    float *wide;    /* vt_model_wide_floats(m): a 16-bit matrix widened per block (matmul.h) */
    float **dkv;    /* sequences cut into chunks (ctx > T): per layer [B, ctx, 2 kv], the gradients
                     * at the earlier chunks' keys and values from the later chunks' queries */
    vt_model_packs packs; /* optional: the layers' weights packed for dY W (backward 1) */
    vt_lora *lora;        /* optional, not owned: the adapters the forward pass added (lora.h) */
    vt_lora *lora_grad;   /* with lora: where their gradients accumulate (NULL: none) */
    float *norm_grad;     /* optional, not owned, used when no dw is passed: the RMSNorm gains' gradients
                           * accumulate here, laid out as vt_norm_grad_at says (recovery trains them) */
    size_t bytes;         /* allocated, packs not included */
} vt_bwd;

/* Where the gain gradient of layer l's attn_norm (which 0), ffn_norm (1), or with l = n_layers the
 * final_norm, sits in a norm_grad of 2 n_layers dim + dim floats. NULL when g is NULL. */
static inline float *vt_norm_grad_at(float *g, int l, int which, int dim) {
    return g ? g + ((size_t)2 * l + (size_t)which) * (size_t)dim : NULL;
}

/* ctx > T: the tapes are chunks of sequences of ctx tokens (vt_tape_link). */
int vt_bwd_init(vt_bwd *w, const vt_model *m, int B, int T, int ctx);
void vt_bwd_free(vt_bwd *w);

/* dW[n_out, n_in] += dY^T X and dX = dY W (+ beta_dx * dX). dw or dx may be NULL to skip. dX goes
 * through pk when it holds W packed for it (vt_pack_linear, backward; else pk may be NULL). */
/* The same for W held as w (vt_model.raw), dX through wide when 16-bit; dw needs an fp32 W (trained
 * weights are held in fp32). */
void vt_linear_backward_w(float *dx, float *dw, const float *dy, const float *x, vt_wmat w, const vt_packed *pk,
                          float *wide, int rows, int n_in, int n_out, float beta_dx);
void vt_linear_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const vt_packed *pk,
                        int rows, int n_in, int n_out, float beta_dx);
/* RMSNorm backward: dx (+)= d/dx of out = x * inv_rms * w given dout; dw += when not NULL.
 * accumulate = 1 adds into dx instead of overwriting. */
void vt_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                         const float *inv_rms, int rows, int dim, int accumulate);

/* From dlogits[rows, vocab] to dx[rows, dim] at the last layer's output (final norm, classifier;
 * the classifier and final norm weight gradients go to dw when not NULL). */
void vt_head_backward(const vt_model *m, vt_bwd *w, const vt_tape *tp, const float *dlogits, int rows, float *dx,
                      vt_model *dw);

/* Layers [l0, l1) in reverse: dx holds dL/d(output of layer l1-1) and becomes dL/d(input of l0).
 * The chunks of the same sequences go backward last first, through the same w.
 * Gate gradients accumulate into dz[B, n] (layout of g->layout, stride n) when g is not NULL;
 * weight gradients accumulate into dw when not NULL. */
void vt_layers_backward(const vt_model *m, const vt_fwd *f, vt_bwd *w, int l0, int l1, float *dx, int B, int T,
                        const vt_gates *g, const vt_tape *tp, float *dz, vt_model *dw);

/* Layer l's attention block alone, backward (the chunk of tape), as vt_layers_backward runs it:
 * dx (the gradient at the block's output) gains the gradient through the block at its input. */
void vt_attention_backward(const vt_model *m, const vt_fwd *f, vt_bwd *w, int l, float *dx, int B, int T,
                           const vt_gates *g, const vt_tape *tape, float *dz, vt_model *dw);

/* Hidden-gate gradient of the gated embedding: dz[b, i] += sum_t dx * embed[token]. */
void vt_embed_backward(const vt_model *m, const int32_t *tokens, int B, int T, const float *dx, float *dz,
                       size_t stride);

#endif
