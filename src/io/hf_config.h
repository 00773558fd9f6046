/* hf_config.h — Hugging Face LLaMA config.json <-> vt_config, including the per-layer sizes of
 * pruned models (docs/FORMATS.md). */
#ifndef VT_HF_CONFIG_H
#define VT_HF_CONFIG_H

#include "util/dtype.h"
#include "nn/model.h"

/* Reads config.json into c (layers[] allocated; vt_config_free it). HF checkpoints always store
 * q/k in rotate-half order, so c->rope = VT_ROPE_HALF. *declared_dtype (may be NULL) receives the
 * "torch_dtype" (or "dtype") as a vt_dtype, or -1 when absent or not F32/F16/BF16.
 * Invalid JSON: the error gives line and column; a missing or ill-typed key: the error names it. */
int vt_hf_config_read(const char *path, vt_config *c, int *declared_dtype);

/* 1 when every layer has the nominal sizes (n_heads, n_kv_heads, ffn_dim). */
int vt_config_is_dense(const vt_config *c);

/* Writes config.json for c with torch_dtype = dtype to path (indented, fsynced): the standard llama
 * keys, "head_dim", and the per-layer arrays when c is not dense. */
int vt_hf_config_write(const char *path, const vt_config *c, vt_dtype dtype);

#endif
