/* checkpoint_info.h — what a checkpoint stores without loading it: format, config, files, the
 * dtype of its tensors; every tensor is checked against the config on the way. */
#ifndef VT_CHECKPOINT_INFO_H
#define VT_CHECKPOINT_INFO_H

#include <stdint.h>

#include "util/dtype.h"
#include "nn/model.h"

typedef enum { VT_CKPT_LLAMA2C = 0, VT_CKPT_HF = 1, VT_CKPT_GGUF = 2 } vt_ckpt_format;

typedef struct {
    vt_ckpt_format format;
    vt_config cfg;
    int n_files;                    /* weight files (1 for .bin, the safetensors shards for HF) */
    int n_tensors;                  /* weight tensors read by the loader */
    int dtype_tensors[VT_N_DTYPES]; /* how many of them are stored in each dtype */
    int q8_0_tensors;               /* GGUF only: how many are Q8_0 */
    uint64_t tensor_bytes;          /* their stored size */
} vt_checkpoint_info;

/* Validates the checkpoint at path as vt_model_load would (header, file size, every tensor's
 * presence, dtype and shape), without converting weights. */
int vt_checkpoint_info_read(const char *path, vt_checkpoint_info *info);
void vt_checkpoint_info_free(vt_checkpoint_info *info);

/* "F32", or "F16 + F32" when mixed (names of the dtypes present, in vt_dtype order, then Q8_0). */
void vt_checkpoint_dtypes_str(const vt_checkpoint_info *info, char *out, int cap);

#endif
