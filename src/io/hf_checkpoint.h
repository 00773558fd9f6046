/* hf_checkpoint.h — an HF checkpoint directory opened for reading: its config.json, which
 * safetensors file holds each tensor (model.safetensors, or the weight_map of
 * model.safetensors.index.json), files mapped on first use, tensors checked against the config. */
#ifndef VT_HF_CHECKPOINT_H
#define VT_HF_CHECKPOINT_H

#include <jansson.h>

#include "io/hf_tensors.h"
#include "nn/model.h"
#include "io/safetensors.h"

typedef struct {
    char dir[4096];
    char config_path[4096];
    char index_path[4096]; /* "" for a single model.safetensors */
    vt_config cfg;
    int declared_dtype; /* config.json torch_dtype as a vt_dtype, or -1 */
    json_t *weight_map; /* NULL for a single file */
    int n_files;
    char **files;           /* safetensors file names, relative to dir */
    vt_safetensors *shards; /* n_files; shards[i].path is NULL until the file is opened */
} vt_hf_checkpoint;

/* Reads config.json and locates the weights; maps no weight file yet. */
int vt_hf_open(vt_hf_checkpoint *ck, const char *dir);
void vt_hf_close(vt_hf_checkpoint *ck);

/* Finds the stored tensor `name` and checks it against the config: present, dtype F32/F16/BF16
 * (and equal to config.json's torch_dtype when that is given), shape [ndim] == shape. Opens its
 * file on first use. Errors name the file, the tensor, expected and actual. */
int vt_hf_find(vt_hf_checkpoint *ck, const char *name, int ndim, const int64_t *shape,
               const vt_safetensors **file, const vt_st_tensor **tensor);

/* Index into ck->files of the file holding name, or -1 (error set) when none does. */
int vt_hf_file_of(vt_hf_checkpoint *ck, const char *name);

#endif
