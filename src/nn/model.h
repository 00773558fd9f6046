/* model.h — a LLaMA-architecture model: its configuration (with per-layer sizes) and weights (fp32, or
 * frozen matrices in the checkpoint's 16-bit type). */
#ifndef VT_MODEL_H
#define VT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "util/dtype.h"

/* RoPE pairing inside a head. Interleaved: pairs (2i, 2i+1), as llama2.c and Meta write q/k.
 * Rotate-half: pairs (i, i + head_dim/2), as Hugging Face writes q/k. */
typedef enum { VT_ROPE_INTERLEAVED = 0, VT_ROPE_HALF = 1 } vt_rope_layout;

/* Sizes of one layer after pruning. n_heads == 0 means the attention block is removed
 * (then n_kv_heads == 0); ffn == 0 means the MLP block is removed. Invariant: n_heads is a
 * multiple of n_kv_heads (grouped-query attention). */
typedef struct {
    int n_heads;
    int n_kv_heads;
    int ffn;
} vt_layer_shape;

typedef struct {
    int dim;        /* hidden size */
    int n_layers;
    int n_heads;    /* nominal query heads (the dense model's; per-layer values in layers[]) */
    int n_kv_heads; /* nominal KV heads */
    int head_dim;
    int ffn_dim;    /* nominal intermediate size */
    int vocab;
    int seq_len;    /* maximum positions */
    float norm_eps;
    float rope_theta;
    int tied;       /* classifier shares the token embedding */
    vt_rope_layout rope;
    int attn_bias;  /* HF LlamaConfig.attention_bias: q, k, v and o_proj carry biases */
    int mlp_bias;   /* HF LlamaConfig.mlp_bias: gate, up and down_proj carry biases */
    vt_layer_shape *layers; /* n_layers entries, owned */
} vt_config;

/* One decoder layer's weights, row-major [out, in] as in PyTorch/HF. NULL for an absent block.
 * vt_model_alloc lays wq, wk, wv out back to back (one fused QKV matrix) and likewise
 * w_gate, w_up (one fused [2 ffn, dim] matrix); the forward pass relies on it. */
typedef struct {
    float *attn_norm; /* [dim] */
    float *wq;        /* [n_heads*head_dim, dim] */
    float *wk;        /* [n_kv_heads*head_dim, dim] */
    float *wv;        /* [n_kv_heads*head_dim, dim] */
    float *wo;        /* [dim, n_heads*head_dim] */
    float *ffn_norm;  /* [dim] */
    float *w_gate;    /* [ffn, dim]  (llama2.c w1) */
    float *w_up;      /* [ffn, dim]  (llama2.c w3) */
    float *w_down;    /* [dim, ffn]  (llama2.c w2) */
    /* With vt_model.raw 16-bit, the matrices above are NULL and held here instead (norms stay fp32);
     * read them through VT_WMAT. */
    uint16_t *wq16, *wk16, *wv16, *wo16, *w_gate16, *w_up16, *w_down16;
    /* Biases (NULL unless cfg.attn_bias / cfg.mlp_bias): b_qkv [q + 2 kv] (q, k, v back to back like
     * the weights), bo [dim], b_gate_up [2 ffn] (gate, up), b_down [dim]. */
    float *b_qkv, *bo, *b_gate_up, *b_down;
} vt_layer_weights;

/* Matrix `name` of layer weights w of model m as held (dtype.h). */
#define VT_WMAT(m, w, name) ((vt_wmat){(w)->name, (w)->name##16, (m)->raw})

/* A model, or the part of it one pipeline stage holds: layers [layer_begin, layer_end),
 * the embedding when has_embed, the final norm and classifier when has_head. */
typedef struct {
    vt_config cfg;
    int layer_begin, layer_end;
    int has_embed, has_head;
    float *embed;      /* [vocab, dim] */
    float *final_norm; /* [dim] */
    float *lm_head;    /* [vocab, dim]; equals embed when tied and both are held */
    vt_layer_weights *layers; /* cfg.n_layers entries; only [layer_begin, layer_end) filled */
    uint16_t *embed16; /* [vocab, dim] instead of embed when raw is 16-bit and the classifier is not tied */
    vt_dtype raw;      /* the type the layers' matrices (and an untied embedding) are held in: VT_F32, or
                        * the checkpoint's 16-bit type (vt_model_load_held), widened where read */
    uint16_t *arena16; /* owns the 16-bit weights (raw != VT_F32) */
    size_t arena16_count;
    float *arena;      /* owns every fp32 weight above but the biases */
    size_t arena_floats;
    float *bias;       /* owns the layers' biases (vt_model_add_biases); outside the arena, so the
                        * arena stays the trainable weights (train/student.h) and biases stay frozen */
    vt_dtype hold;     /* the type copies of its frozen matrices may be held in (packs, matmul.h): the
                        * checkpoint's 16-bit type when it stored every matrix in it, else VT_F32 */
} vt_model;

/* Which parts of a checkpoint to load (the whole model: vt_load_all()). */
typedef struct {
    int layer_begin, layer_end; /* layer_end == -1 means n_layers */
    int embed, head;
} vt_load_parts;

vt_load_parts vt_load_all(void);

/* The most layers a model file may declare (GGUF, config.json; llama2.c's are bounded by its file
 * size): a header of a few bytes must not allocate per-layer tables for millions of layers. */
#define VT_MAX_LAYERS 4096

/* Config helpers. vt_config_init_dense fills a dense config and allocates layers[]. */
int vt_config_init_dense(vt_config *c);
int vt_config_copy(vt_config *dst, const vt_config *src);
void vt_config_free(vt_config *c);
/* Checks sizes are positive and consistent (GQA, head_dim even); message names `source`. */
int vt_config_validate(const vt_config *c, const char *source);

/* Parameter counts (biases included). Embedding and classifier counted once when tied. */
size_t vt_layer_params(const vt_config *c, int layer); /* its weights, biases not counted */
size_t vt_layer_bias_params(const vt_config *c, int layer);
size_t vt_params_total(const vt_config *c);
size_t vt_params_non_embedding(const vt_config *c);
/* Forward FLOPs per token at context length ctx (matmuls 2*m*n*k, attention scores and values). */
double vt_flops_per_token(const vt_config *c, double ctx);
/* Its per-layer terms: layer l's matmuls (q, k, v, o, gate, up, down) and attention scores and
 * weighted values at context ctx; 0 for a removed layer. */
double vt_layer_flops(const vt_config *c, int l, double ctx);

/* Allocates zeroed weights for the parts requested, laid out in one arena (fp32). */
int vt_model_alloc(vt_model *m, const vt_config *c, vt_load_parts parts);
/* The same with the matrices held in raw (VT_F32, or a 16-bit type: then in arena16, and the
 * embedding too unless the classifier is tied to it; the classifier and the norms stay fp32). */
int vt_model_alloc_raw(vt_model *m, const vt_config *c, vt_load_parts parts, vt_dtype raw);
void vt_model_free(vt_model *m);
/* Bytes of m's weights as held (both arenas). */
size_t vt_model_bytes(const vt_model *m);
/* The embedding as held. */
static inline vt_wmat vt_embed_wmat(const vt_model *m) {
    return (vt_wmat){m->embed, m->embed16, m->raw};
}
/* Turns on cfg.attn_bias / cfg.mlp_bias (when asked; never off) and gives the layers m holds zeroed
 * biases for every block present (the re-fit's output bias, prune/refit.h). vt_model_alloc calls
 * it for a config that has them. */
int vt_model_add_biases(vt_model *m, int attn, int mlp);

/* The loaders' account of vt_model.hold: held starts at -1 and takes every loaded tensor's stored
 * type t (ndim 1 or 2); the result is the one type every matrix (ndim 2) was stored in, or -2. */
int vt_hold_merge(int held, int ndim, vt_dtype t);
/* vt_model.hold for that account: the 16-bit type, else VT_F32. */
vt_dtype vt_hold_of(int held);

/* Loads a llama2.c .bin (v0) file or an HF directory (config.json + safetensors, single or
 * sharded), converting F32/F16/BF16 to fp32. Errors name the file and the tensor. */
int vt_model_load(vt_model *m, const char *path, vt_load_parts parts);
/* The same, with hold16 1: an HF checkpoint that stores every matrix of the parts in one 16-bit type
 * keeps them in it (vt_model.raw), for weights that stay frozen; others load as vt_model_load does. */
int vt_model_load_held(vt_model *m, const char *path, vt_load_parts parts, int hold16);

#endif
