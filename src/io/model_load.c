/* model_load.c — vt_model_load: reads the parts of a model a rank needs from a llama2.c .bin file
 * an HF checkpoint directory or a GGUF file, converting stored F32/F16/BF16 weights to fp32. */
#include <stdlib.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "io/gguf_model.h"
#include "io/hf_checkpoint.h"
#include "io/hf_tensors.h"
#include "io/llama2c_bin.h"
#include "nn/model.h"

/* Copies one stored tensor into dst after checking it against the config. */
/* Copies one stored tensor into dst after checking it against the config; notes its type in *held
 * (vt_hold_merge). */
static int load_tensor(vt_hf_checkpoint *ck, const char *name, int ndim, const int64_t *shape, float *dst,
                       int *held) {
    const vt_safetensors *st;
    const vt_st_tensor *t;
    if (vt_hf_find(ck, name, ndim, shape, &st, &t)) return -1;
    *held = vt_hold_merge(*held, ndim, (vt_dtype)t->dtype);
    return vt_st_read_f32(st, t, dst);
}

static int load_hf(vt_model *m, const char *dir, vt_load_parts parts) {
    vt_hf_checkpoint ck;
    if (vt_hf_open(&ck, dir)) return -1;
    vt_hf_tensor *list = NULL;
    int n = 0, held = -1, rc = vt_model_alloc(m, &ck.cfg, parts);
    if (rc == 0) rc = vt_hf_tensor_list(&m->cfg, parts, m, &list, &n);
    for (int i = 0; i < n && rc == 0; i++)
        rc = load_tensor(&ck, list[i].name, list[i].ndim, list[i].shape, list[i].data, &held);
    /* A tied classifier held without the embedding (the last pipeline stage) is read from it. */
    if (rc == 0 && m->has_head && m->cfg.tied && m->lm_head != m->embed) {
        int64_t shape[2] = {m->cfg.vocab, m->cfg.dim};
        rc = load_tensor(&ck, "model.embed_tokens.weight", 2, shape, m->lm_head, &held);
    }
    m->hold = vt_hold_of(held);
    free(list);
    vt_hf_close(&ck);
    if (rc) vt_model_free(m);
    return rc;
}

int vt_model_load(vt_model *m, const char *path, vt_load_parts parts) {
    if (vt_is_dir(path)) return load_hf(m, path, parts);
    if (!vt_path_exists(path)) return vt_fail("%s: no such file or directory", path);
    if (vt_gguf_is_file(path)) return vt_gguf_load(m, path, parts);
    return vt_llama2c_load(m, path, parts);
}
