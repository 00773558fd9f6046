/* hf_writer.c — HF checkpoint directory writer: shard plan, shard files, index, config, tokenizer. */
#include "io/hf_writer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

static uint64_t tensor_bytes(const vt_hf_tensor *t, vt_dtype dtype) {
    uint64_t n = (uint64_t)t->shape[0];
    if (t->ndim == 2) n *= (uint64_t)t->shape[1];
    return n * vt_dtype_size(dtype);
}

int vt_hf_plan_shards(const vt_hf_tensor *t, int n, vt_dtype dtype, uint64_t shard_bytes, int *shard_of) {
    int shard = 0;
    uint64_t used = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = tensor_bytes(&t[i], dtype);
        if (shard_bytes && used > 0 && used + b > shard_bytes) {
            shard++;
            used = 0;
        }
        shard_of[i] = shard;
        used += b;
    }
    return shard + 1;
}

void vt_hf_shard_name(int shard, int n_shards, char *out, int cap) {
    if (n_shards == 1) snprintf(out, (size_t)cap, "model.safetensors");
    else snprintf(out, (size_t)cap, "model-%05d-of-%05d.safetensors", shard + 1, n_shards);
}

int vt_hf_write_shard(const char *path, const vt_config *c, const vt_hf_tensor *t, int n, vt_dtype dtype) {
    vt_st_entry *e = vt_calloc((size_t)n, sizeof *e, "shard entries");
    int **orders = vt_calloc((size_t)n, sizeof *orders, "row orders");
    int rc = (e && orders) ? 0 : -1;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!t[i].data) {
            rc = vt_fail("%s: tensor %s has no data", path, t[i].name);
            break;
        }
        e[i].name = t[i].name;
        e[i].ndim = t[i].ndim;
        e[i].shape[0] = t[i].shape[0];
        e[i].shape[1] = t[i].shape[1];
        e[i].data = t[i].data;
        if (c->rope == VT_ROPE_INTERLEAVED && (t[i].kind == VT_HF_WQ || t[i].kind == VT_HF_WK)) {
            int heads = (int)(t[i].shape[0] / c->head_dim);
            if (!(orders[i] = vt_malloc(sizeof(int) * (size_t)t[i].shape[0], "q/k row order"))) rc = -1;
            else vt_rope_half_row_order(heads, c->head_dim, orders[i]);
            e[i].row_order = orders[i];
        }
    }
    if (rc == 0) rc = vt_st_write(path, e, n, dtype);
    for (int i = 0; orders && i < n; i++) free(orders[i]);
    free(orders);
    free(e);
    return rc;
}

int vt_hf_write_index(const char *path, const vt_hf_tensor *t, int n, const int *shard_of, int n_shards,
                      vt_dtype dtype) {
    json_t *root = json_object(), *meta = json_object(), *map = json_object();
    uint64_t total = 0;
    char file[64];
    for (int i = 0; i < n; i++) {
        total += tensor_bytes(&t[i], dtype);
        vt_hf_shard_name(shard_of[i], n_shards, file, sizeof file);
        json_object_set_new(map, t[i].name, json_string(file));
    }
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", map);
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!text) return vt_fail("%s: out of memory formatting the index", path);
    int rc = vt_write_file(path, text, strlen(text));
    free(text);
    return rc;
}

int vt_hf_write_files(const vt_model *m, const char *dir, vt_dtype dtype, size_t shard_bytes, const char *tokenizer) {
    char path[VT_PATH_MAX], name[64];
    if (vt_path_join(path, sizeof path, dir, "config.json") || vt_hf_config_write(path, &m->cfg, dtype)) return -1;
    vt_hf_tensor *t = NULL;
    int n = 0;
    if (vt_hf_tensor_list(&m->cfg, vt_load_all(), m, &t, &n)) return -1;
    int *shard_of = vt_malloc(sizeof(int) * (size_t)(n ? n : 1), "shard plan");
    int rc = shard_of ? 0 : -1, n_shards = 0;
    if (rc == 0) n_shards = vt_hf_plan_shards(t, n, dtype, shard_bytes, shard_of);
    for (int s = 0, first = 0; rc == 0 && s < n_shards; s++) {
        int last = first;
        while (last < n && shard_of[last] == s) last++;
        vt_hf_shard_name(s, n_shards, name, sizeof name);
        rc = vt_path_join(path, sizeof path, dir, name);
        if (rc == 0) rc = vt_hf_write_shard(path, &m->cfg, t + first, last - first, dtype);
        first = last;
    }
    if (rc == 0 && n_shards > 1) {
        rc = vt_path_join(path, sizeof path, dir, "model.safetensors.index.json");
        if (rc == 0) rc = vt_hf_write_index(path, t, n, shard_of, n_shards, dtype);
    }
    if (rc == 0 && tokenizer) {
        rc = vt_path_join(path, sizeof path, dir, "tokenizer.bin");
        if (rc == 0) rc = vt_copy_file(tokenizer, path);
    }
    free(shard_of);
    free(t);
    return rc;
}

int vt_hf_write(const vt_model *m, const char *out_dir, vt_dtype dtype, size_t shard_bytes,
                const char *tokenizer_path) {
    if (m->layer_begin != 0 || m->layer_end != m->cfg.n_layers || !m->has_embed || !m->has_head)
        return vt_fail("%s: writing a checkpoint needs the whole model (it holds layers [%d, %d) of %d%s%s)", out_dir,
                       m->layer_begin, m->layer_end, m->cfg.n_layers, m->has_embed ? "" : ", no embedding",
                       m->has_head ? "" : ", no head");
    if (vt_config_validate(&m->cfg, out_dir)) return -1;
    vt_outdir o;
    if (vt_outdir_begin(&o, out_dir, 0)) return -1;
    if (vt_hf_write_files(m, o.tmp, dtype, shard_bytes, tokenizer_path) || vt_outdir_commit(&o)) {
        vt_outdir_abort(&o);
        return -1;
    }
    return 0;
}
