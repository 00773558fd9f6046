/* hf_checkpoint.c — opens HF checkpoint directories: config, shard index, lazy maps, tensor checks. */
#include "io/hf_checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

static int by_name(const void *a, const void *b) {
    return strcmp(((const vt_hf_map_entry *)a)->name, ((const vt_hf_map_entry *)b)->name);
}

/* The weight_map into ck->map (checked in the index's order), every file listed once in ck->files. */
static int weight_map_read(vt_hf_checkpoint *ck, json_t *map) {
    size_t n = json_object_size(map);
    ck->map = vt_calloc(n ? n : 1, sizeof *ck->map, "the weight map");
    if (!ck->map) return -1;
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        const char *file = json_string_value(val);
        if (!file || !file[0] || strchr(file, '/') || strcmp(file, "..") == 0)
            return vt_fail("%s: weight_map entry for %s must be a file name in the same directory", ck->index_path,
                           key);
        if (add_file(ck, file)) return -1;
        vt_hf_map_entry *e = &ck->map[ck->n_map];
        for (e->file = 0; strcmp(ck->files[e->file], file) != 0;) e->file++;
        if (!(e->name = strdup(key))) return vt_fail("out of memory reading %s", ck->index_path);
        ck->n_map++;
    }
    qsort(ck->map, ck->n_map, sizeof *ck->map, by_name);
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
    int rc = weight_map_read(ck, map);
    json_decref(root);
    return rc;
}

int vt_hf_open(vt_hf_checkpoint *ck, const char *dir) {
    memset(ck, 0, sizeof *ck);
    ck->declared_dtype = -1;
    char single[VT_PATH_MAX];
    if (vt_path_fmt(ck->dir, sizeof ck->dir, "%s", dir) || vt_path_join(ck->config_path, sizeof ck->config_path, dir, "config.json") ||
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
    for (size_t i = 0; i < ck->n_map; i++) free(ck->map[i].name);
    free(ck->map);
    vt_config_free(&ck->cfg);
    memset(ck, 0, sizeof *ck);
}

int vt_hf_file_of(vt_hf_checkpoint *ck, const char *name) {
    if (!ck->map) return 0;
    vt_hf_map_entry key = {(char *)name, 0};
    const vt_hf_map_entry *e = bsearch(&key, ck->map, ck->n_map, sizeof *ck->map, by_name);
    if (!e) return vt_fail("%s: missing tensor %s (the weight_map has no entry for it)", ck->index_path, name);
    return e->file;
}

int vt_hf_find(vt_hf_checkpoint *ck, const char *name, int ndim, const int64_t *shape, const vt_safetensors **file,
               const vt_st_tensor **tensor) {
    int i = vt_hf_file_of(ck, name);
    if (i < 0) return -1;
    vt_safetensors *st = &ck->shards[i];
    if (!st->path) {
        char path[VT_PATH_MAX];
        if (vt_path_join(path, sizeof path, ck->dir, ck->files[i]) || vt_st_open(st, path)) return -1;
    }
    const vt_st_tensor *t = vt_st_find(st, name);
    if (!t) {
        const char *why = ck->map ? " (the index places it in this file)" : "";
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
