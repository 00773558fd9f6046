/* hf_checkpoint.h — an HF checkpoint directory opened for reading: its config.json, which
 * safetensors file holds each tensor (model.safetensors, or the weight_map of
 * model.safetensors.index.json), files mapped on first use, tensors checked against the config. */
#ifndef VT_HF_CHECKPOINT_H
#define VT_HF_CHECKPOINT_H

#include "io/hf_tensors.h"
#include "nn/model.h"
#include "io/safetensors.h"
#include "util/fsutil.h"

/* One tensor of the index's weight_map: it is in files[file]. */
typedef struct {
    char *name;
    int file;
} vt_hf_map_entry;

typedef struct {
    char dir[VT_PATH_MAX];
    char config_path[VT_PATH_MAX];
    char index_path[VT_PATH_MAX]; /* "" for a single model.safetensors */
    vt_config cfg;
    int declared_dtype; /* config.json torch_dtype as a vt_dtype, or -1 */
    vt_hf_map_entry *map; /* the index's weight_map sorted by name (NULL for a single file) */
    size_t n_map;
    int n_files;
    char **files;           /* safetensors file names, relative to dir */
    vt_safetensors *shards; /* n_files; shards[i].path is NULL until the file is opened */
    char embed_name[32];    /* the stored name of the embedding: model.embed_tokens.weight, or
                               lm_head.weight for a tied model stored under that name only */
} vt_hf_checkpoint;

/* Reads config.json and locates the weights. A tied matrix stored only as lm_head.weight serves as
 * the embedding (when config.json says tie_word_embeddings, or the file's metadata names
 * model.embed_tokens.weight as its alias, which then makes the model tied); an index that lists a
 * tensor in two different files is an error naming both. Maps no weight file unless it must read
 * such metadata. */
int vt_hf_open(vt_hf_checkpoint *ck, const char *dir);
void vt_hf_close(vt_hf_checkpoint *ck);

/* Finds the stored tensor `name` (model.embed_tokens.weight: under embed_name) and checks it against the config: present, dtype F32/F16/BF16
 * (and equal to config.json's torch_dtype when that is given), shape [ndim] == shape. Opens its
 * file on first use. Errors name the file, the tensor, expected and actual. */
int vt_hf_find(vt_hf_checkpoint *ck, const char *name, int ndim, const int64_t *shape,
               const vt_safetensors **file, const vt_st_tensor **tensor);

/* Index into ck->files of the file holding name, or -1 (error set) when none does. */
int vt_hf_file_of(vt_hf_checkpoint *ck, const char *name);

#endif
