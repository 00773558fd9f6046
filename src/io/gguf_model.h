/* gguf_model.h — a LLaMA checkpoint stored as GGUF (architecture `llama`, or `deci` with per-layer
 * sizes): its config, weights (F32/F16/BF16/Q8_0 to fp32) and embedded llama tokenizer; and the
 * GGUF names of the model's tensors. q/k rows are in llama.cpp's interleaved-RoPE order. */
#ifndef VT_GGUF_MODEL_H
#define VT_GGUF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "io/gguf.h"
#include "io/hf_tensors.h"
#include "io/tokenizer.h"
#include "nn/model.h"

/* The GGUF name of an HF tensor kind ("blk.3.attn_q.weight", "token_embd.weight", ...). */
void vt_gguf_tensor_name(vt_hf_kind kind, int layer, char *out, int cap);

/* The config from the metadata (keys under general.architecture: block_count, embedding_length,
 * feed_forward_length / attention.head_count / head_count_kv as scalars or per-layer arrays, ...).
 * Keys that change the computation in ways this project does not implement (rope scaling, partial
 * rotary, a rope_freqs tensor) are refused with a message. */
int vt_gguf_config(const vt_gguf *g, vt_config *c);
int vt_gguf_read_config(const char *path, vt_config *c);

/* Loads the parts of the model a rank needs; errors name the file and tensor. */
int vt_gguf_load(vt_model *m, const char *path, vt_load_parts parts);

/* Per-type counts of the tensors the loader reads (indexed by VT_GGML_* up to 31), their bytes. */
int vt_gguf_tensor_stats(const char *path, vt_config *c, int *n_tensors, int type_count[32], uint64_t *bytes);

/* The embedded tokenizer (tokenizer.ggml.model "llama": tokens, scores, token_type; bos 1, eos 2)
 * as the project's llama2.c vocabulary ('▁' read as ' '). */
int vt_gguf_tokenizer_load(vt_tokenizer *t, const char *path);

#endif
