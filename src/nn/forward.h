/* forward.h — the LLaMA forward pass over a batch of B sequences x T tokens: embedding, a
 * contiguous range of layers (what one pipeline stage runs), final norm and classifier. */
#ifndef VT_FORWARD_H
#define VT_FORWARD_H

#include <stdint.h>

#include "nn/lora.h"
#include "nn/masks.h"
#include "nn/matmul.h"
#include "nn/model.h"

/* Query rows per block of causal attention: a block's scores cover only the keys its rows see. */
#define VT_ATTN_QUERY_BLOCK 64

/* One layer's matmul weights packed for one direction (matmul.h): the fused QKV, o_proj, the fused
 * gate/up and down_proj; data NULL for an absent block. */
typedef struct {
    vt_packed qkv, o, gate_up, down;
} vt_layer_packs;

/* The matmul weights of the layers a model holds, packed for one direction. */
typedef struct {
    vt_layer_packs *layers; /* cfg.n_layers entries, [layer_begin, layer_end) filled; NULL: not packed */
    int n_layers;
    size_t bytes;           /* what the packs hold */
} vt_model_packs;

/* (Re)packs the layers m holds for the forward x W^T (backward 0) or the backward dY W (backward
 * 1). The weights must not change while the packs are used, and the packs serve m only. */
int vt_model_packs_init(vt_model_packs *p, const vt_model *m, int backward);
/* The backward packs of the layers m holds, its 16-bit matrices as views of their forward packs
 * fwd (vt_pack_transposed: no second copy), the others packed. fwd must outlive p. */
int vt_model_packs_backward(vt_model_packs *p, const vt_model *m, const vt_model_packs *fwd);
void vt_model_packs_free(vt_model_packs *p);
/* Layer l's packs, or NULL when not packed. */
static inline const vt_layer_packs *vt_model_packs_layer(const vt_model_packs *p, int l) {
    return p->layers ? &p->layers[l] : NULL;
}

/* Scratch buffers and the key/value cache for the layers a model holds. Activations are
 * row-major [B*T, dim] with row = b*T + t; token t of sequence b sits at position pos0 + t. */
typedef struct {
    int max_batch, max_tokens, max_ctx;
    int query_block;            /* VT_ATTN_QUERY_BLOCK (at most: the score buffers hold that many rows); tests
                                 * make it small to cross block edges */
    int threads;                /* the rank's threads when allocated (vt_threads): heads run in parallel */
    int layer_begin, layer_end;
    float **k_cache, **v_cache; /* per layer: [max_batch, max_ctx, kv_dim] */
    float *xn;                  /* [rows, dim] normalised input of a block */
    float *qkv;                 /* [rows, q_dim + 2 kv_dim] */
    float *att_out;             /* [rows, q_dim] heads' outputs, input of o_proj */
    float *scores;              /* [threads][min(max_tokens, VT_ATTN_QUERY_BLOCK), max_ctx] one block of
                                 * query rows of one head's attention per thread */
    float *gate_up;             /* [rows, 2 ffn] */
    float *ffn_act;             /* [rows, ffn] silu(gate) * up */
    float *block_out;           /* [rows, dim] */
    float *rope_cos, *rope_sin; /* [max_ctx, head_dim/2] */
    vt_model_packs packs;       /* optional: the layers' weights packed for x W^T (backward 0) */
    vt_lora *lora;              /* optional, not owned: adapters added to the projections (lora.h) */
    float *wide;                /* vt_model_wide_floats(m): a 16-bit matrix widened per block (matmul.h) */
    size_t bytes;               /* allocated, packs not included */
} vt_fwd;

/* Gate values for a batch, laid out as `layout` (masks.h): sequence b uses z + b*stride;
 * stride 0 uses one row for every sequence (deterministic gates). NULL gates: the dense model. */
typedef struct {
    const vt_masks *layout;
    const float *z;
    size_t stride;
} vt_gates;

/* Activations a training forward pass saves for the backward pass, per layer (pre-gate values). */
typedef struct {
    float *x_attn, *inv_rms_attn, *xn_attn; /* attention block input, 1/rms per row, normalised */
    float *qkv;                             /* [rows, q+2kv] after RoPE */
    float *probs;                           /* [B, heads, T, pos0 + T] attention probabilities */
    float *att;                             /* [rows, q] heads' outputs before head gates */
    float *y_attn;                          /* [rows, dim] o_proj output before block/hidden gates */
    float *x_mlp, *inv_rms_mlp, *xn_mlp;
    float *gate_up;                         /* [rows, 2 ffn] */
    float *act;                             /* [rows, ffn] silu(gate)*up before neuron gates */
    float *y_mlp;                           /* [rows, dim] down_proj output before block/hidden gates */
} vt_tape_layer;

/* A tape covers B sequences x T tokens at positions pos0..pos0+T-1. A sequence may be cut into
 * chunks along its tokens (more micro-batches for a pipeline): chunk tapes of the same sequences
 * are linked by prev/next (vt_tape_link), and the backward pass of a chunk reads the keys and
 * values of the earlier chunks from their tapes. */
typedef struct vt_tape vt_tape;
struct vt_tape {
    int B, T, pos0, layer_begin, layer_end;
    const vt_tape *prev, *next; /* the chunks before and after this one; NULL: none */
    vt_tape_layer *layers; /* indexed by layer; only [layer_begin, layer_end) filled */
    float *x_final, *inv_rms_final, *xn_final;
    float *arena;
    size_t bytes; /* allocated */
};

/* A tape for B sequences x T tokens at positions pos0.. (its attention rows span pos0 + T keys). */
int vt_tape_init(vt_tape *tp, const vt_model *m, int B, int T, int pos0);
/* Links n tapes, in order, as the consecutive chunks of the same sequences. */
void vt_tape_link(vt_tape *tapes, int n);
void vt_tape_free(vt_tape *tp);

int vt_fwd_init(vt_fwd *f, const vt_model *m, int max_batch, int max_tokens, int max_ctx);
void vt_fwd_free(vt_fwd *f);

/* x[rows, dim] = embedding rows of tokens (ids must be < vocab), times the hidden gates when
 * gates are given (B sequences of T tokens). */
void vt_embed(const vt_model *m, const int32_t *tokens, int rows, float *x);
void vt_embed_gated(const vt_model *m, const int32_t *tokens, int B, int T, const vt_gates *g, float *x);

/* Runs layers [l0, l1) in place on x. Keys and values of positions pos0..pos0+T-1 are written
 * into the cache; attention covers positions 0..pos0+t (causal). */
void vt_layers_forward(const vt_model *m, vt_fwd *f, int l0, int l1, float *x, int B, int T, int pos0);
/* The same with gates (may be NULL) and saving activations into tape (may be NULL; else made for
 * B x T at pos0). The chunks of the same sequences run in order through the same f: each reads
 * the earlier chunks' keys and values from f's cache. */
void vt_layers_forward_ex(const vt_model *m, vt_fwd *f, int l0, int l1, float *x, int B, int T, int pos0,
                          const vt_gates *g, vt_tape *tape);

/* Layer l's attention block alone (what vt_layers_forward_ex runs before its MLP block): x += its
 * output; keys and values of positions pos0..pos0+T-1 go into f's cache; activations into tp when
 * not NULL. The plugged prefill (plugin.h) pairs it with a plugged FFN. */
void vt_attention_forward(const vt_model *m, vt_fwd *f, int l, float *x, int B, int T, int pos0, const vt_gates *g,
                          vt_tape_layer *tp);

/* Layer l's MLP block alone (what vt_layers_forward_ex runs after its attention block): x += its
 * output. Without gates or tape, f->ffn_act holds down_proj's input rows afterwards (the re-fit,
 * prune/refit.h, reads it); vt_attention_forward likewise leaves o_proj's input in f->att_out. */
void vt_mlp_forward(const vt_model *m, vt_fwd *f, int l, float *x, int B, int T, const vt_gates *g,
                    vt_tape_layer *tp);

/* logits[rows, vocab] = classifier(final_norm(x)); x is left unchanged. */
void vt_head_forward(const vt_model *m, vt_fwd *f, const float *x, int rows, float *logits);
void vt_head_forward_ex(const vt_model *m, vt_fwd *f, const float *x, int rows, float *logits, vt_tape *tape);

/* Building blocks, shared with the backward pass. */
/* The block of query rows that starts at row t0 of T (at positions pos0..): its row count goes to
 * *rows; returns the keys its rows see, pos0 + t0 + rows. */
static inline int vt_query_block(const vt_fwd *f, int T, int pos0, int t0, int *rows) {
    *rows = T - t0 < f->query_block ? T - t0 : f->query_block;
    return pos0 + t0 + *rows;
}
/* out = x / rms(x) * w per row; the 1/rms values go to inv_rms when not NULL. */
void vt_rmsnorm(float *out, const float *x, const float *w, int rows, int dim, float eps, float *inv_rms);
/* gated = pre * z per unit: rows of B sequences x T tokens, each `units` groups of `width` values
 * (heads of head_dim, or neurons of 1), gate of unit u at z[b*stride + off + u]. */
void vt_apply_unit_gates(float *gated, const float *pre, int B, int T, int units, int width, const vt_gates *g,
                         size_t off);
/* y[rows, n] += b per row; nothing when b is NULL (a projection without bias). Biases are frozen:
 * the backward pass needs nothing for them, as the tape keeps the values after they were added. */
void vt_add_bias(float *y, const float *b, int rows, int n);
/* y[rows, n_out] = x[rows, n_in] W^T (+ beta * y) with W row-major [n_out, n_in] (BLIS sgemm),
 * through pk when it holds W packed for it (vt_pack_linear; else pk may be NULL). */
void vt_linear(float *y, const float *x, const float *w, const vt_packed *pk, int rows, int n_in, int n_out,
               float beta);
/* The same for W held as w (vt_model.raw), widened per block into wide (vt_sgemm_w) when 16-bit. */
void vt_linear_w(float *y, const float *x, vt_wmat w, const vt_packed *pk, float *wide, int rows, int n_in, int n_out,
                 float beta);
/* Floats of the scratch vt_linear_w and vt_linear_backward_w need for m's layer matrices in either
 * direction: 0 when they are fp32. */
size_t vt_model_wide_floats(const vt_model *m);
/* The same for layers [l0, l1) of c held in 16 bits. */
size_t vt_layers_wide_floats(const vt_config *c, int l0, int l1);

#endif
