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

/* ---- an index's weight_map read as text, to see entries a JSON parser merges ---- */

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* Past the string starting at p (a '"'), escapes skipped; end when it never closes. */
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end && *p != '"'; p++)
        if (*p == '\\') p++;
    return p < end ? p + 1 : end;
}

/* Past the value at p: a string, a balanced object or array, or a scalar (up to ',', '}' or ']'). */
static const char *skip_value(const char *p, const char *end) {
    int depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = skip_string(p, end);
            if (depth == 0) return p;
            continue;
        }
        if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0) return p;
            if (--depth == 0) return p + 1;
        } else if (c == ',' && depth == 0) return p;
        p++;
    }
    return end;
}

/* The JSON string token p[0..q) decoded, or NULL; json_decref it. */
static json_t *decode_string(const char *p, const char *q) {
    json_t *v = json_loadb(p, (size_t)(q - p), JSON_DECODE_ANY, NULL);
    if (v && !json_is_string(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* Checks each "name": "file" pair of the weight_map object at p (text already parsed as valid
 * JSON, where a repeated name keeps its last file, as map does): a name listed again in the same
 * file is harmless, in another file an error naming both. */
static int check_repeats(const vt_hf_checkpoint *ck, const char *p, const char *end, json_t *map) {
    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *k = p, *k_end = skip_string(p, end);
        p = skip_ws(skip_ws(k_end, end) + 1, end); /* past ':' */
        const char *v_end = skip_value(p, end);
        json_t *name = decode_string(k, k_end), *file = decode_string(p, v_end);
        const char *last = name ? json_string_value(json_object_get(map, json_string_value(name))) : NULL;
        int rc = 0;
        if (file && last && strcmp(json_string_value(file), last) != 0)
            rc = vt_fail("%s: tensor %s is listed twice in the weight_map, in %s and in %s", ck->index_path,
                         json_string_value(name), json_string_value(file), last);
        json_decref(name);
        json_decref(file);
        if (rc) return -1;
        p = skip_ws(v_end, end);
        if (p < end && *p == ',') p = skip_ws(p + 1, end);
    }
    return 0;
}

/* Finds the top-level "weight_map" object in the index text and checks its repeated names. */
static int check_index_text(const vt_hf_checkpoint *ck, const char *text, size_t n, json_t *map) {
    const char *end = text + n, *p = skip_ws(text, end);
    if (p == end || *p != '{') return 0;
    for (p = skip_ws(p + 1, end); p < end && *p == '"';) {
        const char *k_end = skip_string(p, end);
        int is_map = k_end - p == 12 && memcmp(p, "\"weight_map\"", 12) == 0;
        p = skip_ws(skip_ws(k_end, end) + 1, end);
        if (is_map && p < end && *p == '{' && check_repeats(ck, p, end, map)) return -1;
        p = skip_ws(skip_value(p, end), end);
        if (p < end && *p == ',') p = skip_ws(p + 1, end);
    }
    return 0;
}

static int read_index(vt_hf_checkpoint *ck) {
    char *text;
    size_t n;
    if (vt_read_file(ck->index_path, &text, &n)) return -1;
    /* Real indexes may list a tensor twice: parsed leniently, then the repeats checked in the text. */
    json_error_t err;
    json_t *root = json_loadb(text, n, 0, &err);
    if (!root) {
        free(text);
        return vt_fail("%s: invalid JSON at line %d, column %d: %s", ck->index_path, err.line, err.column, err.text);
    }
    json_t *map = json_object_get(root, "weight_map");
    int rc = json_is_object(map) ? check_index_text(ck, text, n, map)
                                 : vt_fail("%s: missing \"weight_map\" object", ck->index_path);
    free(text);
    if (rc == 0) rc = weight_map_read(ck, map);
    json_decref(root);
    return rc;
}

static const char EMBED[] = "model.embed_tokens.weight", HEAD[] = "lm_head.weight";

/* Maps file i of the checkpoint on first use. */
static int open_shard(vt_hf_checkpoint *ck, int i) {
    if (ck->shards[i].path) return 0;
    char path[VT_PATH_MAX];
    return vt_path_join(path, sizeof path, ck->dir, ck->files[i]) || vt_st_open(&ck->shards[i], path);
}

/* The file holding name, or -1 when it is not stored (no error); -2 on a failure to read. */
static int stored_in(vt_hf_checkpoint *ck, const char *name) {
    if (ck->map) {
        vt_hf_map_entry key = {(char *)name, 0};
        const vt_hf_map_entry *e = bsearch(&key, ck->map, ck->n_map, sizeof *ck->map, by_name);
        return e ? e->file : -1;
    }
    if (open_shard(ck, 0)) return -2;
    return vt_st_find(&ck->shards[0], name) ? 0 : -1;
}

/* Where the embedding is stored. Tied checkpoints keep it as model.embed_tokens.weight, or only as
 * lm_head.weight: torch's save_model drops one name of a shared tensor and records it in the file's
 * metadata as an alias of the other, which makes the model tied whatever config.json says. With
 * both names stored and tie_word_embeddings false or absent, the model is untied (as in HF). */
static int resolve_embedding(vt_hf_checkpoint *ck) {
    snprintf(ck->embed_name, sizeof ck->embed_name, "%s", EMBED);
    int e = stored_in(ck, EMBED), h = stored_in(ck, HEAD);
    if (e == -2 || h == -2) return -1;
    if ((e >= 0) == (h >= 0)) return 0; /* both (tied or not), or neither (vt_hf_find reports it) */
    const char *present = e >= 0 ? EMBED : HEAD, *absent = e >= 0 ? HEAD : EMBED;
    int file = e >= 0 ? e : h, aliased = 0;
    if (!ck->cfg.tied) {
        if (open_shard(ck, file)) return -1;
        const char *a = vt_st_meta(&ck->shards[file], absent), *b = vt_st_meta(&ck->shards[file], present);
        aliased = (a && strcmp(a, present) == 0) || (b && strcmp(b, absent) == 0);
    }
    if (!ck->cfg.tied && !aliased)
        return vt_fail("%s: missing tensor %s: only %s is stored, %s does not say tie_word_embeddings true, and no "
                       "safetensors metadata names one an alias of the other",
                       ck->map ? ck->index_path : ck->shards[0].path, absent, present, ck->config_path);
    ck->cfg.tied = 1;
    snprintf(ck->embed_name, sizeof ck->embed_name, "%s", present);
    return 0;
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
    if (!rc) rc = resolve_embedding(ck);
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
    if (strcmp(name, EMBED) == 0) name = ck->embed_name;
    int i = vt_hf_file_of(ck, name);
    if (i < 0 || open_shard(ck, i)) return -1;
    vt_safetensors *st = &ck->shards[i];
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
