/* hf_writer.h — writes a model as a Hugging Face LLaMA checkpoint directory (config.json,
 * safetensors single or sharded with an index, tokenizer), atomically; the one writer of
 * checkpoints: pipeline stages each write their own piece, a coordinator the common files. */
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

/* How a checkpoint's tensors go to files. pieces == 1: the whole model, a new file whenever the
 * next tensor would take the current one past shard_bytes (a bigger tensor gets a file of its
 * own; 0: one file). pieces > 1: one file per piece, piece p holding layers [piece_begin[p],
 * piece_begin[p+1]), the first the embedding, the last the final norm and head (a pipeline's
 * stages, each writing its own). Whoever writes which piece, the files are the same. */
typedef struct {
    vt_dtype dtype;
    size_t shard_bytes; /* pieces == 1 only */
    int pieces;
    const int *piece_begin; /* pieces + 1 layer bounds; NULL when pieces == 1 */
} vt_hf_layout;

/* Writes the safetensors file(s) of piece `piece` into the existing directory dir, from part,
 * which holds at least that piece (the whole model: piece 0 of one). Tensors are written in dtype;
 * when the model's RoPE is interleaved, q_proj and k_proj rows are permuted to rotate-half
 * (vt_rope_half_row_order), so the files are genuine HF layout. */
int vt_hf_write_piece(const vt_model *part, int piece, const vt_hf_layout *l, const char *dir);

/* Writes what the pieces share into dir, from the config alone: config.json (rotate-half RoPE,
 * per-layer sizes when pruned), model.safetensors.index.json when there is more than one file
 * ({"metadata": {"total_size": bytes}, "weight_map": {name: file}}), tokenizer copied as
 * tokenizer.json or tokenizer.bin (by its format) when not NULL, and, when source (the model the
 * checkpoint came from; may be NULL) is a directory, its tokenizer_config.json,
 * special_tokens_map.json and generation_config.json, so the result is a drop-in for it. */
int vt_hf_write_common(const vt_config *c, const vt_hf_layout *l, const char *tokenizer, const char *source,
                       const char *dir);

/* Writes a whole model (all layers, embedding and head) to out_dir: its one piece and the common
 * files (shard_bytes 0: one safetensors file; source as for vt_hf_write_common). The directory is
 * built under a temporary name and renamed into place; an existing non-empty out_dir is refused. */
int vt_hf_write_from(const vt_model *m, const char *out_dir, vt_dtype dtype, size_t shard_bytes,
                     const char *tokenizer_path, const char *source);

/* vt_hf_write_from with no source model directory. */
int vt_hf_write(const vt_model *m, const char *out_dir, vt_dtype dtype, size_t shard_bytes,
                const char *tokenizer_path);

#endif
