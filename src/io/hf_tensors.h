/* hf_tensors.h — the Hugging Face names and shapes of a LLaMA checkpoint's tensors (per part of
 * the model), and the q/k row order between Meta's interleaved and HF's rotate-half RoPE. */
#ifndef VT_HF_TENSORS_H
#define VT_HF_TENSORS_H

#include <stdint.h>

#include "nn/model.h"

typedef enum {
    VT_HF_EMBED,      /* model.embed_tokens.weight            [vocab, dim] */
    VT_HF_ATTN_NORM,  /* model.layers.{i}.input_layernorm.weight          [dim] */
    VT_HF_WQ,         /* model.layers.{i}.self_attn.q_proj.weight  [heads*hd, dim] */
    VT_HF_WK,         /* model.layers.{i}.self_attn.k_proj.weight  [kv*hd, dim] */
    VT_HF_WV,         /* model.layers.{i}.self_attn.v_proj.weight  [kv*hd, dim] */
    VT_HF_WO,         /* model.layers.{i}.self_attn.o_proj.weight  [dim, heads*hd] */
    VT_HF_FFN_NORM,   /* model.layers.{i}.post_attention_layernorm.weight [dim] */
    VT_HF_GATE,       /* model.layers.{i}.mlp.gate_proj.weight     [ffn, dim] */
    VT_HF_UP,         /* model.layers.{i}.mlp.up_proj.weight       [ffn, dim] */
    VT_HF_DOWN,       /* model.layers.{i}.mlp.down_proj.weight     [dim, ffn] */
    VT_HF_FINAL_NORM, /* model.norm.weight                     [dim] */
    VT_HF_LM_HEAD,    /* lm_head.weight                        [vocab, dim]; absent when tied */
    /* Biases (config attention_bias / mlp_bias): model.layers.{i}.self_attn.q_proj.bias and so on. */
    VT_HF_BQ, VT_HF_BK, VT_HF_BV, VT_HF_BO, /* [heads*hd], [kv*hd], [kv*hd], [dim] */
    VT_HF_BGATE, VT_HF_BUP, VT_HF_BDOWN     /* [ffn], [ffn], [dim] */
} vt_hf_kind;

/* The weight a bias kind belongs to (VT_HF_BQ -> VT_HF_WQ ...); -1 for a kind that is no bias. */
int vt_hf_bias_of(vt_hf_kind kind);

typedef struct {
    char name[96];
    vt_hf_kind kind;
    int layer; /* -1 outside the decoder layers */
    int ndim;
    int64_t shape[2];
    float *data;       /* the model's buffer for it, when a model was given */
    uint16_t *data16;  /* instead of data: the buffer of a matrix held in 16 bits (vt_model.raw) */
    int optional; /* a loader may find it missing (then zeros): q, k, v, gate and up biases, which
                   * the re-fit leaves zero and GGUF files do not store */
} vt_hf_tensor;

/* Writes the HF name of a tensor into out. */
void vt_hf_tensor_name(vt_hf_kind kind, int layer, char *out, int cap);

/* The tensors a checkpoint stores for `parts` of config c, in checkpoint order: embedding, layers
 * in order (norm, q, k, v, o, their biases when c->attn_bias, norm, gate, up, down, their biases
 * when c->mlp_bias; removed blocks have none), final norm, then lm_head unless tied. With m (which must hold those parts), data points into m's weights.
 * *out is malloc'ed (free it). */
int vt_hf_tensor_list(const vt_config *c, vt_load_parts parts, const vt_model *m, vt_hf_tensor **out, int *n);

/* The row order that stores an interleaved-RoPE q or k weight of n_heads heads as rotate-half:
 * stored row (h, half, i) = source row (h, i, half), i.e. order[h*hd + half*hd/2 + i] =
 * h*hd + 2*i + half (HF's convert_llama_weights_to_hf permute). order has n_heads*head_dim ints. */
void vt_rope_half_row_order(int n_heads, int head_dim, int *order);

#endif
