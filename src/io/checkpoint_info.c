/* checkpoint_info.c — checks a checkpoint and summarises its storage (format, files, dtypes). */
#include "io/checkpoint_info.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "io/gguf_model.h"
#include "io/hf_checkpoint.h"
#include "io/hf_tensors.h"
#include "io/llama2c_bin.h"

static int info_hf(const char *dir, vt_checkpoint_info *info) {
    vt_hf_checkpoint ck;
    if (vt_hf_open(&ck, dir)) return -1;
    vt_hf_tensor *list = NULL;
    int n = 0, rc = vt_hf_tensor_list(&ck.cfg, vt_load_all(), NULL, &list, &n);
    for (int i = 0; i < n && rc == 0; i++) {
        const vt_safetensors *st;
        const vt_st_tensor *t;
        rc = vt_hf_find(&ck, list[i].name, list[i].ndim, list[i].shape, &st, &t);
        if (rc) break;
        info->dtype_tensors[t->dtype]++;
        info->tensor_bytes += t->end - t->begin;
        info->n_tensors++;
    }
    for (int i = 0; i < ck.n_files; i++) info->n_files += ck.shards[i].path != NULL;
    if (rc == 0) rc = vt_config_copy(&info->cfg, &ck.cfg);
    free(list);
    vt_hf_close(&ck);
    return rc;
}

static int info_gguf(const char *path, vt_checkpoint_info *info) {
    int types[32] = {0};
    info->format = VT_CKPT_GGUF;
    info->n_files = 1;
    if (vt_gguf_tensor_stats(path, &info->cfg, &info->n_tensors, types, &info->tensor_bytes)) return -1;
    info->dtype_tensors[VT_F32] = types[VT_GGML_F32];
    info->dtype_tensors[VT_F16] = types[VT_GGML_F16];
    info->dtype_tensors[VT_BF16] = types[VT_GGML_BF16];
    info->q8_0_tensors = types[VT_GGML_Q8_0];
    return 0;
}

int vt_checkpoint_info_read(const char *path, vt_checkpoint_info *info) {
    memset(info, 0, sizeof *info);
    if (vt_is_dir(path)) {
        info->format = VT_CKPT_HF;
        if (info_hf(path, info)) {
            vt_checkpoint_info_free(info);
            return -1;
        }
        return 0;
    }
    if (!vt_path_exists(path)) return vt_fail("%s: no such file or directory", path);
    if (vt_gguf_is_file(path)) return info_gguf(path, info);
    info->format = VT_CKPT_LLAMA2C;
    if (vt_llama2c_read_config(path, &info->cfg)) return -1;
    const vt_config *c = &info->cfg;
    info->n_files = 1;
    info->n_tensors = 2 + 9 * c->n_layers + (c->tied ? 0 : 1);
    info->dtype_tensors[VT_F32] = info->n_tensors;
    info->tensor_bytes = 4 * (uint64_t)vt_params_total(c);
    return 0;
}

void vt_checkpoint_info_free(vt_checkpoint_info *info) { vt_config_free(&info->cfg); }

void vt_checkpoint_dtypes_str(const vt_checkpoint_info *info, char *out, int cap) {
    int w = 0;
    out[0] = '\0';
    for (int t = 0; t < VT_N_DTYPES; t++)
        if (info->dtype_tensors[t] && w < cap)
            w += snprintf(out + w, (size_t)(cap - w), "%s%s", w ? " + " : "", vt_dtype_name((vt_dtype)t));
    if (info->q8_0_tensors && w < cap) snprintf(out + w, (size_t)(cap - w), "%sQ8_0", w ? " + " : "");
}
