/* hf_checkpoint.c — opens HF checkpoint directories: config, shard index, lazy maps, tensor checks. */
#include "io/hf_checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "io/hf_config.h"

static int add_file(vt_hf_checkpoint *ck, const char *name) {
    for (int i = 0; i < ck->n_files; i++)
        if (strcmp(ck->files[i], name) == 0) return 0;
    char **files = realloc(ck->files, sizeof *files * (size_t)(ck->n_files + 1));
    if (!files) return vt_fail("out of memory reading %s", ck->index_path);
    ck->files = files;
    if (!(files[ck->n_files] = strdup(name))) return vt_fail("out of memory reading %s", ck->index_path);
    ck->n_files++;
    return 0;
}

static int read_index(vt_hf_checkpoint *ck) {
    char *text;
    size_t n;
    if (vt_read_file(ck->index_path, &text, &n)) return -1;
    json_error_t err;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!root)
        return vt_fail("%s: invalid JSON at line %d, column %d: %s", ck->index_path, err.line, err.column, err.text);
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        json_decref(root);
        return vt_fail("%s: missing \"weight_map\" object", ck->index_path);
    }
    ck->weight_map = json_incref(map);
    json_decref(root);
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        const char *file = json_string_value(val);
        if (!file || !file[0] || strchr(file, '/') || strcmp(file, "..") == 0)
            return vt_fail("%s: weight_map entry for %s must be a file name in the same directory", ck->index_path,
                           key);
        if (add_file(ck, file)) return -1;
    }
    return 0;
}

int vt_hf_open(vt_hf_checkpoint *ck, const char *dir) {
    memset(ck, 0, sizeof *ck);
    ck->declared_dtype = -1;
    snprintf(ck->dir, sizeof ck->dir, "%s", dir);
    char single[4096];
    if (vt_path_join(ck->config_path, sizeof ck->config_path, dir, "config.json") ||
        vt_path_join(single, sizeof single, dir, "model.safetensors") ||
        vt_path_join(ck->index_path, sizeof ck->index_path, dir, "model.safetensors.index.json"))
        return -1;
    if (!vt_path_exists(ck->config_path)) return vt_fail("%s: no config.json in this checkpoint directory", dir);
    if (vt_hf_config_read(ck->config_path, &ck->cfg, &ck->declared_dtype)) return -1;
    int rc;
    if (vt_path_exists(single)) {
        ck->index_path[0] = '\0';
        rc = add_file(ck, "model.safetensors");
    } else if (vt_path_exists(ck->index_path)) {
        rc = read_index(ck);
    } else {
        rc = vt_fail("%s: neither model.safetensors nor model.safetensors.index.json is present", dir);
    }
    if (!rc) {
        ck->shards = vt_calloc((size_t)ck->n_files, sizeof *ck->shards, "safetensors files");
        if (!ck->shards) rc = -1;
    }
    if (rc) vt_hf_close(ck);
    return rc;
}

void vt_hf_close(vt_hf_checkpoint *ck) {
    for (int i = 0; i < ck->n_files; i++) {
        if (ck->shards && ck->shards[i].path) vt_st_close(&ck->shards[i]);
        free(ck->files[i]);
    }
    free(ck->shards);
    free(ck->files);
    if (ck->weight_map) json_decref(ck->weight_map);
    vt_config_free(&ck->cfg);
    memset(ck, 0, sizeof *ck);
}

int vt_hf_file_of(vt_hf_checkpoint *ck, const char *name) {
    if (!ck->weight_map) return 0;
    const char *file = json_string_value(json_object_get(ck->weight_map, name));
    if (!file) return vt_fail("%s: missing tensor %s (the weight_map has no entry for it)", ck->index_path, name);
    for (int i = 0; i < ck->n_files; i++)
        if (strcmp(ck->files[i], file) == 0) return i;
    return vt_fail("%s: internal error: file %s of tensor %s not listed", ck->index_path, file, name);
}

int vt_hf_find(vt_hf_checkpoint *ck, const char *name, int ndim, const int64_t *shape, const vt_safetensors **file,
               const vt_st_tensor **tensor) {
    int i = vt_hf_file_of(ck, name);
    if (i < 0) return -1;
    vt_safetensors *st = &ck->shards[i];
    if (!st->path) {
        char path[4096];
        if (vt_path_join(path, sizeof path, ck->dir, ck->files[i]) || vt_st_open(st, path)) return -1;
    }
    const vt_st_tensor *t = vt_st_find(st, name);
    if (!t) {
        const char *why = ck->weight_map ? " (the index places it in this file)" : "";
        return vt_fail("%s: missing tensor %s%s", st->path, name, why);
    }
    if (t->dtype < 0)
        return vt_fail("%s: tensor %s has dtype %s; only F32, F16 and BF16 weights are supported", st->path, name,
                       t->dtype_name);
    if (ck->declared_dtype >= 0 && t->dtype != ck->declared_dtype)
        return vt_fail("%s: tensor %s is stored as %s but %s says torch_dtype %s", st->path, name, t->dtype_name,
                       ck->config_path, vt_dtype_torch_name((vt_dtype)ck->declared_dtype));
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char want[128], got[128];
        vt_shape_str(shape, ndim, want, sizeof want);
        vt_shape_str(t->shape, t->ndim, got, sizeof got);
        return vt_fail("%s: tensor %s has shape %s but %s implies %s", st->path, name, got, ck->config_path, want);
    }
    *file = st;
    *tensor = t;
    return 0;
}
