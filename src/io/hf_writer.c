/* hf_writer.c — the HF checkpoint directory writer, for a whole model and for a pipeline's stages:
 * shard plan, shard files, index, config, tokenizer. */
#include "io/hf_writer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"

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

/* Tensors t[n] (data set) as one safetensors file in dtype. When c->rope is interleaved, q_proj and
 * k_proj rows (and their biases' entries) are permuted to rotate-half (vt_rope_half_row_order), so the file is genuine HF layout. */
static int write_shard(const char *path, const vt_config *c, const vt_hf_tensor *t, int n, vt_dtype dtype) {
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
        vt_hf_kind k = t[i].kind;
        if (c->rope == VT_ROPE_INTERLEAVED && (k == VT_HF_WQ || k == VT_HF_WK || k == VT_HF_BQ || k == VT_HF_BK)) {
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

/* model.safetensors.index.json: {"metadata": {"total_size": bytes of all tensors}, "weight_map":
 * {name: file}}. */
static int write_index(const char *path, const vt_hf_tensor *t, int n, const int *shard_of, int n_shards,
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

/* The layers, embedding and head of piece p. */
static vt_load_parts piece_parts(const vt_hf_layout *l, int p) {
    if (l->pieces <= 1) return vt_load_all();
    vt_load_parts parts = {l->piece_begin[p], l->piece_begin[p + 1], p == 0, p == l->pieces - 1};
    return parts;
}

/* The piece a tensor belongs to: its layer's; the embedding the first, the final norm and head the last. */
static int piece_of(const vt_hf_layout *l, const vt_hf_tensor *t) {
    if (t->layer < 0) return t->kind == VT_HF_EMBED ? 0 : l->pieces - 1;
    int p = 0;
    while (p + 1 < l->pieces && t->layer >= l->piece_begin[p + 1]) p++;
    return p;
}

/* The tensors of piece p (-1: of the whole checkpoint; data from m when given), the file each
 * goes to (*shard_of, malloc'ed) and the checkpoint's number of files. */
static int plan_files(const vt_config *c, const vt_hf_layout *l, int p, const vt_model *m, vt_hf_tensor **t, int *n,
                      int **shard_of, int *n_files) {
    if (vt_hf_tensor_list(c, p < 0 ? vt_load_all() : piece_parts(l, p), m, t, n)) return -1;
    *shard_of = vt_malloc(sizeof(int) * (size_t)(*n ? *n : 1), "shard plan");
    if (!*shard_of) {
        free(*t);
        return -1;
    }
    if (l->pieces <= 1) {
        *n_files = vt_hf_plan_shards(*t, *n, l->dtype, l->shard_bytes, *shard_of);
    } else {
        *n_files = l->pieces;
        for (int i = 0; i < *n; i++) (*shard_of)[i] = piece_of(l, &(*t)[i]);
    }
    return 0;
}

int vt_hf_write_piece(const vt_model *part, int piece, const vt_hf_layout *l, const char *dir) {
    vt_hf_tensor *t;
    int n, *shard_of, n_files;
    if (plan_files(&part->cfg, l, l->pieces > 1 ? piece : -1, part, &t, &n, &shard_of, &n_files)) return -1;
    /* The files of this piece: all of them for the whole model, else the piece's one. */
    int s_end = l->pieces > 1 ? piece + 1 : n_files, rc = 0;
    char path[VT_PATH_MAX], name[64];
    for (int s = l->pieces > 1 ? piece : 0, first = 0; rc == 0 && s < s_end; s++) {
        int last = first;
        while (last < n && shard_of[last] == s) last++;
        vt_hf_shard_name(s, n_files, name, sizeof name);
        rc = vt_path_join(path, sizeof path, dir, name);
        if (rc == 0) rc = write_shard(path, &part->cfg, t + first, last - first, l->dtype);
        first = last;
    }
    free(shard_of);
    free(t);
    return rc;
}

/* The HF files beside the weights and tokenizer that loaders read (chat template, special tokens,
 * generation defaults), copied from the source model directory when it has them. */
static int copy_companions(const char *source, const char *dir) {
    static const char *const names[] = {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json"};
    if (!source || !vt_is_dir(source)) return 0;
    char from[VT_PATH_MAX], to[VT_PATH_MAX];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (vt_path_join(from, sizeof from, source, names[i]) || vt_path_join(to, sizeof to, dir, names[i])) return -1;
        if (vt_path_exists(from) && vt_copy_file(from, to)) return -1;
    }
    return 0;
}

int vt_hf_write_common(const vt_config *c, const vt_hf_layout *l, const char *tokenizer, const char *source,
                       const char *dir) {
    char path[VT_PATH_MAX];
    if (vt_path_join(path, sizeof path, dir, "config.json") || vt_hf_config_write(path, c, l->dtype)) return -1;
    vt_hf_tensor *t;
    int n, *shard_of, n_files;
    if (plan_files(c, l, -1, NULL, &t, &n, &shard_of, &n_files)) return -1;
    int rc = 0;
    if (n_files > 1) {
        rc = vt_path_join(path, sizeof path, dir, "model.safetensors.index.json");
        if (rc == 0) rc = write_index(path, t, n, shard_of, n_files, l->dtype);
    }
    if (rc == 0 && tokenizer) {
        /* Under the name the format has, so vt_tokenizer_locate finds it. */
        rc = vt_path_join(path, sizeof path, dir, vt_tokenizer_is_json(tokenizer) ? "tokenizer.json" : "tokenizer.bin");
        if (rc == 0) rc = vt_copy_file(tokenizer, path);
    }
    if (rc == 0) rc = copy_companions(source, dir);
    free(shard_of);
    free(t);
    return rc;
}

int vt_hf_write(const vt_model *m, const char *out_dir, vt_dtype dtype, size_t shard_bytes,
                const char *tokenizer_path) {
    return vt_hf_write_from(m, out_dir, dtype, shard_bytes, tokenizer_path, NULL);
}

int vt_hf_write_from(const vt_model *m, const char *out_dir, vt_dtype dtype, size_t shard_bytes,
                     const char *tokenizer_path, const char *source) {
    if (m->layer_begin != 0 || m->layer_end != m->cfg.n_layers || !m->has_embed || !m->has_head)
        return vt_fail("%s: writing a checkpoint needs the whole model (it holds layers [%d, %d) of %d%s%s)", out_dir,
                       m->layer_begin, m->layer_end, m->cfg.n_layers, m->has_embed ? "" : ", no embedding",
                       m->has_head ? "" : ", no head");
    if (vt_config_validate(&m->cfg, out_dir)) return -1;
    vt_outdir o;
    if (vt_outdir_begin(&o, out_dir, 0)) return -1;
    vt_hf_layout l = {dtype, shard_bytes, 1, NULL}; /* the whole model: one piece */
    if (vt_hf_write_piece(m, 0, &l, o.tmp) || vt_hf_write_common(&m->cfg, &l, tokenizer_path, source, o.tmp) ||
        vt_outdir_commit(&o)) {
        vt_outdir_abort(&o);
        return -1;
    }
    return 0;
}
