/* model_load.c — vt_model_load: reads the parts of a model a rank needs from a llama2.c .bin file
 * an HF checkpoint directory or a GGUF file, converting stored F32/F16/BF16 weights to fp32. */
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "io/gguf_model.h"
#include "io/hf_checkpoint.h"
#include "io/hf_tensors.h"
#include "io/llama2c_bin.h"
#include "nn/model.h"

/* Copies one stored tensor into dst (fp32), or its 16-bit values as stored into dst16, after checking
 * it against the config; notes its type in *held (vt_hold_merge). */
static int load_tensor(vt_hf_checkpoint *ck, const char *name, int ndim, const int64_t *shape, float *dst,
                       uint16_t *dst16, int *held) {
    const vt_safetensors *st;
    const vt_st_tensor *t;
    if (vt_hf_find(ck, name, ndim, shape, &st, &t)) return -1;
    *held = vt_hold_merge(*held, ndim, (vt_dtype)t->dtype);
    int rc = 0;
    if (dst16) memcpy(dst16, t->data, sizeof *dst16 * (size_t)t->n_elems); /* the type raw_type found */
    else rc = vt_st_read_f32(st, t, dst);
    vt_st_release(st, t); /* copied: the file's pages need not stay resident next to the copy */
    return rc;
}

/* The type the matrices of `parts` are held in: their one 16-bit stored type when hold16 asks for
 * it and every one is stored in it, else fp32 (read from the headers only). */
static vt_dtype raw_type(vt_hf_checkpoint *ck, vt_load_parts parts, int hold16) {
    vt_hf_tensor *list = NULL;
    int n = 0, held = -1;
    if (!hold16 || vt_hf_tensor_list(&ck->cfg, parts, NULL, &list, &n)) return VT_F32;
    for (int i = 0; i < n && held != -2; i++) {
        const vt_safetensors *st;
        const vt_st_tensor *t;
        if (vt_hf_find(ck, list[i].name, list[i].ndim, list[i].shape, &st, &t)) held = -2; /* the load names it */
        else held = vt_hold_merge(held, list[i].ndim, (vt_dtype)t->dtype);
    }
    free(list);
    vt_error_clear();
    return vt_hold_of(held);
}

static int load_hf(vt_model *m, const char *dir, vt_load_parts parts, int hold16) {
    vt_hf_checkpoint ck;
    if (vt_hf_open(&ck, dir)) return -1;
    vt_hf_tensor *list = NULL;
    int n = 0, held = -1, rc = vt_model_alloc_raw(m, &ck.cfg, parts, raw_type(&ck, parts, hold16));
    if (rc == 0) rc = vt_hf_tensor_list(&m->cfg, parts, m, &list, &n);
    for (int i = 0; i < n && rc == 0; i++)
        rc = load_tensor(&ck, list[i].name, list[i].ndim, list[i].shape, list[i].data, list[i].data16, &held);
    /* A tied classifier held without the embedding (the last pipeline stage) is read from it. */
    if (rc == 0 && m->has_head && m->cfg.tied && m->lm_head != m->embed) {
        int64_t shape[2] = {m->cfg.vocab, m->cfg.dim};
        rc = load_tensor(&ck, "model.embed_tokens.weight", 2, shape, m->lm_head, NULL, &held);
    }
    m->hold = vt_hold_of(held);
    free(list);
    vt_hf_close(&ck);
    if (rc) vt_model_free(m);
    return rc;
}

int vt_model_load(vt_model *m, const char *path, vt_load_parts parts) {
    return vt_model_load_held(m, path, parts, 0);
}

int vt_model_load_held(vt_model *m, const char *path, vt_load_parts parts, int hold16) {
    if (vt_is_dir(path)) return load_hf(m, path, parts, hold16);
    if (!vt_path_exists(path)) return vt_fail("%s: no such file or directory", path);
    if (vt_gguf_is_file(path)) return vt_gguf_load(m, path, parts);
    return vt_llama2c_load(m, path, parts);
}
