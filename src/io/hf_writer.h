/* hf_writer.h — writes a model as a Hugging Face LLaMA checkpoint directory (config.json,
 * safetensors single or sharded with an index, tokenizer), atomically. The pieces are separate
 * so that pipeline stages can each write their own shard and a coordinator the index and config. */
#ifndef VT_HF_WRITER_H
#define VT_HF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "util/dtype.h"
#include "io/hf_tensors.h"
#include "nn/model.h"

/* Assigns tensors, in order, to files: a new file starts when the next tensor would take the
 * current one past shard_bytes (a bigger tensor gets a file of its own); shard_bytes 0 means one
 * file. Fills shard_of[n] (0-based) and returns the number of files. */
int vt_hf_plan_shards(const vt_hf_tensor *t, int n, vt_dtype dtype, uint64_t shard_bytes, int *shard_of);

/* "model.safetensors" when n_shards == 1, else "model-0000K-of-0000N.safetensors" (K 1-based). */
void vt_hf_shard_name(int shard, int n_shards, char *out, int cap);

/* Writes tensors t[n] (data set) as one safetensors file in dtype. When c->rope is interleaved,
 * q_proj and k_proj rows are permuted to rotate-half (vt_rope_half_row_order), so the file is
 * genuine HF layout. */
int vt_hf_write_shard(const char *path, const vt_config *c, const vt_hf_tensor *t, int n, vt_dtype dtype);

/* Writes model.safetensors.index.json: {"metadata": {"total_size": bytes of all tensors},
 * "weight_map": {name: file}}. */
int vt_hf_write_index(const char *path, const vt_hf_tensor *t, int n, const int *shard_of, int n_shards,
                      vt_dtype dtype);

/* Writes a whole model (all layers, embedding and head) to out_dir: config.json (rotate-half
 * RoPE, per-layer sizes when pruned), model.safetensors or shards of at most shard_bytes with an
 * index (shard_bytes 0: one file), and tokenizer_path copied as tokenizer.bin when not NULL. The
 * directory is built under a temporary name and renamed into place; an existing non-empty out_dir
 * is refused. */
int vt_hf_write(const vt_model *m, const char *out_dir, vt_dtype dtype, size_t shard_bytes,
                const char *tokenizer_path);
/* The files of vt_hf_write, into an existing directory (the caller's temporary vt_outdir, so it
 * can add more files, e.g. a run report, before committing). */
int vt_hf_write_files(const vt_model *m, const char *dir, vt_dtype dtype, size_t shard_bytes, const char *tokenizer);

#endif
