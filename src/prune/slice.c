/* slice.c — turns a gated model into a smaller one: kept units' rows and columns are gathered into
 * a fresh model (gates optionally folded in), and the kept gates into a matching gate layout. */
#include "prune/slice.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/budget.h"
#include "util/error.h"

/* What survives: original indices of the kept units, in the order the sliced model uses (kept
 * query heads ascending are already grouped by KV head; budget.h, vt_keep_kv_heads). */
typedef struct {
    int n_dims, *dims;                  /* kept hidden dims */
    int *n_heads, *n_ffn;               /* per layer: kept query heads and neurons (0: block removed) */
    int **heads, **neurons;             /* per layer */
    int *buf;
} slice_plan;

static void plan_free(slice_plan *p) {
    free(p->dims);
    free(p->n_heads);
    free(p->n_ffn);
    free(p->heads);
    free(p->neurons);
    free(p->buf);
    memset(p, 0, sizeof *p);
}

/* Indices i < n with keep[i], into out; returns how many. */
static int kept_list(const uint8_t *keep, int n, int *out) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (keep[i]) out[k++] = i;
    return k;
}

/* The kept units of the gate layout mk, by the rules of vt_keep_structure: a block goes when its
 * gate is not kept or it keeps no head (neuron), and takes its units with it. */
static int plan_build(slice_plan *p, const vt_masks *mk, const uint8_t *keep) {
    memset(p, 0, sizeof *p);
    int L = mk->n_layers;
    size_t room = (size_t)mk->dim;
    for (int l = 0; l < L; l++) room += (size_t)mk->heads[l] + mk->ffn[l];
    p->dims = vt_malloc(sizeof(int) * (size_t)mk->dim, "slice plan");
    p->n_heads = vt_calloc((size_t)L + 1, sizeof(int), "slice plan");
    p->n_ffn = vt_calloc((size_t)L + 1, sizeof(int), "slice plan");
    p->heads = vt_calloc((size_t)L + 1, sizeof(int *), "slice plan");
    p->neurons = vt_calloc((size_t)L + 1, sizeof(int *), "slice plan");
    p->buf = vt_malloc(sizeof(int) * (room + 1), "slice plan");
    if (!p->dims || !p->n_heads || !p->n_ffn || !p->heads || !p->neurons || !p->buf) {
        plan_free(p);
        return -1;
    }
    p->n_dims = kept_list(keep, mk->dim, p->dims);
    if (p->n_dims == 0) {
        plan_free(p);
        return vt_fail("slicing: all %d hidden dims are pruned; at least one must stay", mk->dim);
    }
    int *at = p->buf;
    for (int l = 0; l < L; l++) {
        const uint8_t *kb = keep + vt_gate_blocks(mk, l);
        p->heads[l] = at;
        p->n_heads[l] = kb[0] ? kept_list(keep + vt_gate_heads(mk, l), mk->heads[l], at) : 0;
        at += p->n_heads[l];
        p->neurons[l] = at;
        p->n_ffn[l] = kb[1] ? kept_list(keep + vt_gate_ffn(mk, l), mk->ffn[l], at) : 0;
        at += p->n_ffn[l];
    }
    return 0;
}

/* dst[r, c] = src[rows[r], cols[c]] * row_scale[r] * col_scale[c] for a row-major src with
 * src_cols columns, held as vt_model.raw says (the slice is fp32). NULL rows: rows 0..n_rows-1;
 * NULL scales: 1. */
static void gather(float *dst, vt_wmat src, int src_cols, const int *rows, int n_rows, const int *cols, int n_cols,
                   const float *row_scale, const float *col_scale) {
    for (int r = 0; r < n_rows; r++) {
        size_t s = (size_t)(rows ? rows[r] : r) * src_cols;
        float *d = dst + (size_t)r * n_cols, rs = row_scale ? row_scale[r] : 1.0f;
        if (src.f)
            for (int k = 0; k < n_cols; k++) d[k] = src.f[s + cols[k]] * rs * (col_scale ? col_scale[k] : 1.0f);
        else
            for (int k = 0; k < n_cols; k++) d[k] = vt_wmat_at(src, s + cols[k]) * rs * (col_scale ? col_scale[k] : 1.0f);
    }
}

/* Row indices of whole units of `width` rows each: out[u*width + i] = units[u]*width + i. */
static void expand(const int *units, int n, int width, int *out) {
    for (int u = 0; u < n; u++)
        for (int i = 0; i < width; i++) out[u * width + i] = units[u] * width + i;
}

/* out[i] = w[dims[i]] * scale. */
static void gather_norm(float *out, const float *w, const int *dims, int n, float scale) {
    for (int i = 0; i < n; i++) out[i] = w[dims[i]] * scale;
}

/* Slices layer l of m into the same layer of out, keeping the KV heads kv[]. With z (folding),
 * o_proj/down_proj columns take the head/neuron gates and their rows z_block * z_hidden. */
static void slice_layer(const vt_model *m, const vt_masks *mk, const slice_plan *p, int l, const int *kv,
                        const float *z, float norm_scale, int *idx, float *row_scale, float *col_scale,
                        vt_model *out) {
    const vt_layer_weights *w = &m->layers[l];
    vt_layer_weights *o = &out->layers[l];
    const vt_layer_shape *s = &out->cfg.layers[l], *s0 = &m->cfg.layers[l];
    int d = m->cfg.dim, n = p->n_dims, hd = m->cfg.head_dim;
    const float *zb = z ? z + vt_gate_blocks(mk, l) : NULL;
    if (s->n_heads) {
        gather_norm(o->attn_norm, w->attn_norm, p->dims, n, norm_scale);
        expand(p->heads[l], s->n_heads, hd, idx);
        gather(o->wq, VT_WMAT(m, w, wq), d, idx, s->n_heads * hd, p->dims, n, NULL, NULL);
        expand(kv, s->n_kv_heads, hd, idx);
        gather(o->wk, VT_WMAT(m, w, wk), d, idx, s->n_kv_heads * hd, p->dims, n, NULL, NULL);
        gather(o->wv, VT_WMAT(m, w, wv), d, idx, s->n_kv_heads * hd, p->dims, n, NULL, NULL);
        expand(p->heads[l], s->n_heads, hd, idx);
        if (z) {
            for (int j = 0; j < n; j++) row_scale[j] = zb[0] * z[p->dims[j]];
            for (int i = 0; i < s->n_heads * hd; i++) col_scale[i] = z[vt_gate_heads(mk, l) + (size_t)(idx[i] / hd)];
        }
        gather(o->wo, VT_WMAT(m, w, wo), s0->n_heads * hd, p->dims, n, idx, s->n_heads * hd, z ? row_scale : NULL,
               z ? col_scale : NULL);
    }
    if (s->ffn) {
        const int *nr = p->neurons[l];
        gather_norm(o->ffn_norm, w->ffn_norm, p->dims, n, norm_scale);
        gather(o->w_gate, VT_WMAT(m, w, w_gate), d, nr, s->ffn, p->dims, n, NULL, NULL);
        gather(o->w_up, VT_WMAT(m, w, w_up), d, nr, s->ffn, p->dims, n, NULL, NULL);
        if (z) {
            for (int j = 0; j < n; j++) row_scale[j] = zb[1] * z[p->dims[j]];
            for (int i = 0; i < s->ffn; i++) col_scale[i] = z[vt_gate_ffn(mk, l) + (size_t)nr[i]];
        }
        gather(o->w_down, VT_WMAT(m, w, w_down), s0->ffn, p->dims, n, nr, s->ffn, z ? row_scale : NULL, z ? col_scale : NULL);
    }
}

/* Embedding, final norm and classifier of a sliced model. Folding puts the hidden gates into the
 * embedding's columns; a tied classifier shares them, so the final norm divides them out. */
static void slice_ends(const vt_model *m, const slice_plan *p, const float *z, float norm_scale, float *zcol,
                       vt_model *out) {
    int d = m->cfg.dim, n = p->n_dims, V = m->cfg.vocab, tied = m->cfg.tied;
    if (z)
        for (int j = 0; j < n; j++) zcol[j] = z[p->dims[j]];
    if (m->has_embed) gather(out->embed, vt_embed_wmat(m), d, NULL, V, p->dims, n, NULL, z ? zcol : NULL);
    if (!m->has_head) return;
    gather_norm(out->final_norm, m->final_norm, p->dims, n, norm_scale);
    if (z && tied)
        for (int j = 0; j < n; j++)
            if (zcol[j] != 0.0f) out->final_norm[j] /= zcol[j];
    if (out->lm_head != out->embed) /* untied, or a tied head held without the embedding */
        gather(out->lm_head, (vt_wmat){m->lm_head, NULL, VT_F32}, d, NULL, V, p->dims, n, NULL, (z && tied) ? zcol : NULL);
}

int vt_slice_model(const vt_model *m, const vt_masks *mk, const float *z, const uint8_t *keep, int fold_gates,
                   vt_model *out) {
    memset(out, 0, sizeof *out);
    const vt_config *c = &m->cfg;
    if (fold_gates && !z) return vt_fail("slicing: folding the gates into the weights needs their values");
    if (c->attn_bias || c->mlp_bias) /* the re-fit's output: its biases live on the kept dims only */
        return vt_fail("slicing: the model carries biases (attention_bias/mlp_bias); pruning a biased model is "
                       "not supported");
    vt_config sc; /* the pruned structure; checks the layout and the GQA groups */
    if (vt_keep_structure(mk, c, keep, &sc)) return vt_fail_context("slicing");
    slice_plan p;
    if (plan_build(&p, mk, keep)) {
        vt_config_free(&sc);
        return -1;
    }
    sc.norm_eps = (float)((double)c->norm_eps * c->dim / sc.dim);
    vt_load_parts parts = {m->layer_begin, m->layer_end, m->has_embed, m->has_head};
    int rc = vt_model_alloc(out, &sc, parts);
    vt_config_free(&sc);
    if (rc == 0 && !fold_gates) out->hold = m->hold; /* a slice keeps the values; folded gates scale them */

    /* Scratch: unit row indices and per-row / per-column scales, sized for the widest tensor. */
    size_t widest = (size_t)c->dim, most_kv = 1;
    for (int l = 0; l < c->n_layers; l++) {
        size_t q = (size_t)c->layers[l].n_heads * c->head_dim, f = (size_t)c->layers[l].ffn;
        widest = q > widest ? q : widest;
        widest = f > widest ? f : widest;
        most_kv = (size_t)c->layers[l].n_kv_heads > most_kv ? (size_t)c->layers[l].n_kv_heads : most_kv;
    }
    int *idx = vt_malloc(sizeof(int) * widest, "slicing scratch");
    int *kv = vt_malloc(sizeof(int) * most_kv, "slicing scratch");
    float *row_scale = vt_malloc(sizeof(float) * widest, "slicing scratch");
    float *col_scale = vt_malloc(sizeof(float) * widest, "slicing scratch");
    if (rc == 0 && idx && kv && row_scale && col_scale) {
        const float *zf = fold_gates ? z : NULL;
        float norm_scale = (float)sqrt((double)c->dim / p.n_dims);
        for (int l = m->layer_begin; l < m->layer_end; l++) {
            vt_keep_kv_heads(mk, c, keep, l, kv);
            slice_layer(m, mk, &p, l, kv, zf, norm_scale, idx, row_scale, col_scale, out);
        }
        slice_ends(m, &p, zf, norm_scale, row_scale, out);
    } else {
        if (rc == 0) vt_model_free(out);
        rc = -1;
    }
    free(idx);
    free(kv);
    free(row_scale);
    free(col_scale);
    plan_free(&p);
    return rc;
}

int vt_slice_masks(const vt_masks *mk, const uint8_t *keep, vt_masks *out) {
    memset(out, 0, sizeof *out);
    slice_plan p;
    if (plan_build(&p, mk, keep)) return -1;
    if (vt_masks_alloc(out, p.n_dims, mk->n_layers, p.n_heads, p.n_ffn)) goto fail;
    size_t n = out->n;
    /* Source gate of each sliced gate, in the sliced layout's order. */
    size_t k = 0;
    for (int i = 0; i < p.n_dims; i++) out->unit_id[k++] = p.dims[i];
    for (int l = 0; l < mk->n_layers; l++) {
        for (int h = 0; h < out->heads[l]; h++) out->unit_id[k++] = (int64_t)vt_gate_heads(mk, l) + p.heads[l][h];
        for (int j = 0; j < out->ffn[l]; j++) out->unit_id[k++] = (int64_t)vt_gate_ffn(mk, l) + p.neurons[l][j];
        for (int b = 0; b < 2; b++) out->unit_id[k++] = (int64_t)vt_gate_blocks(mk, l) + b;
    }
    for (size_t i = 0; i < n; i++) {
        size_t src = (size_t)out->unit_id[i];
        out->mu[i] = mk->mu[src];
        out->logvar[i] = mk->logvar[src];
        out->group[i] = mk->group[src];
        out->layer[i] = mk->layer[src];
        out->unit_id[i] = mk->unit_id[src];
    }
    plan_free(&p);
    return 0;
fail:
    plan_free(&p);
    vt_masks_free(out);
    return -1;
}

void vt_slice_map_free(vt_slice_map *map) {
    for (int l = 0; l < map->n_layers; l++) {
        if (map->qkv_rows) free(map->qkv_rows[l]);
        if (map->gate_up_rows) free(map->gate_up_rows[l]);
    }
    free(map->qkv_rows);
    free(map->gate_up_rows);
    free(map->dims);
    free(map->z);
    memset(map, 0, sizeof *map);
}

/* Layer l's dense rows: the kept query heads' q rows, then the kept KV heads' k rows and v rows
 * (the order slice_layer gathers them in); the kept neurons' gate rows, then their up rows. */
static int map_layer(vt_slice_map *map, const vt_masks *mk, const vt_config *c, const uint8_t *keep,
                     const slice_plan *p, int l, int *kv) {
    int hd = c->head_dim, qd = c->layers[l].n_heads * hd, kvd = c->layers[l].n_kv_heads * hd;
    if (p->n_heads[l]) {
        int nkv = vt_keep_kv_heads(mk, c, keep, l, kv), q = p->n_heads[l] * hd, k = nkv * hd;
        int *r = map->qkv_rows[l] = vt_malloc(sizeof(int) * (size_t)(q + 2 * k), "slice map");
        if (!r) return -1;
        expand(p->heads[l], p->n_heads[l], hd, r);
        expand(kv, nkv, hd, r + q);
        for (int i = 0; i < k; i++) r[q + i] += qd, r[q + k + i] = r[q + i] + kvd;
    }
    if (p->n_ffn[l]) {
        int f = p->n_ffn[l], *r = map->gate_up_rows[l] = vt_malloc(sizeof(int) * (size_t)(2 * f), "slice map");
        if (!r) return -1;
        for (int i = 0; i < f; i++) r[i] = p->neurons[l][i], r[f + i] = c->layers[l].ffn + p->neurons[l][i];
    }
    return 0;
}

int vt_slice_map_build(vt_slice_map *map, const vt_masks *mk, const vt_config *c, const float *z,
                       const uint8_t *keep) {
    memset(map, 0, sizeof *map);
    slice_plan p;
    if (plan_build(&p, mk, keep)) return -1;
    int L = c->n_layers, rc = 0, most_kv = 1;
    for (int l = 0; l < L; l++) most_kv = c->layers[l].n_kv_heads > most_kv ? c->layers[l].n_kv_heads : most_kv;
    map->n = p.n_dims;
    map->n_layers = L;
    map->dims = vt_malloc(sizeof(int) * (size_t)p.n_dims, "slice map");
    map->z = vt_malloc(sizeof(float) * (size_t)p.n_dims, "slice map");
    map->qkv_rows = vt_calloc((size_t)L, sizeof(int *), "slice map");
    map->gate_up_rows = vt_calloc((size_t)L, sizeof(int *), "slice map");
    int *kv = vt_malloc(sizeof(int) * (size_t)most_kv, "slice map");
    if (!map->dims || !map->z || !map->qkv_rows || !map->gate_up_rows || !kv) rc = -1;
    for (int i = 0; rc == 0 && i < p.n_dims; i++) map->dims[i] = p.dims[i], map->z[i] = z ? z[p.dims[i]] : 1.0f;
    for (int l = 0; rc == 0 && l < L; l++) rc = map_layer(map, mk, c, keep, &p, l, kv);
    free(kv);
    plan_free(&p);
    if (rc) vt_slice_map_free(map);
    return rc;
}

/* Layer l's dense query head of from's query head h (masks.h: head h's id is dim + l U + h). */
static int dense_head(const vt_masks *mk, const vt_config *dense, int l, int h) {
    int64_t base = dense->dim + (int64_t)l * (dense->n_heads + dense->ffn_dim + 2);
    return (int)(mk->unit_id[vt_gate_heads(mk, l) + (size_t)h] - base);
}

/* One fused QKV row of from's layer l as the dense layer's row. */
static int dense_qkv_row(const vt_masks *mk, const vt_config *from, const vt_config *dense, int l, int v) {
    int hd = from->head_dim;
    const vt_layer_shape *f = &from->layers[l], *d = &dense->layers[l];
    int qf = f->n_heads * hd, kvf = f->n_kv_heads * hd, qd = d->n_heads * hd, kvd = d->n_kv_heads * hd;
    if (v < qf) return dense_head(mk, dense, l, v / hd) * hd + v % hd;
    int part = v >= qf + kvf, w = v - qf - part * kvf, kv = w / hd; /* part 0: k rows, 1: v rows */
    int first_q = kv * (f->n_heads / f->n_kv_heads);
    int dense_kv = dense_head(mk, dense, l, first_q) / (d->n_heads / d->n_kv_heads);
    return qd + part * kvd + dense_kv * hd + w % hd;
}

/* One fused gate/up row of from's layer l as the dense layer's row. */
static int dense_gate_up_row(const vt_masks *mk, const vt_config *from, const vt_config *dense, int l, int v) {
    int64_t base = dense->dim + (int64_t)l * (dense->n_heads + dense->ffn_dim + 2) + dense->n_heads;
    int ff = from->layers[l].ffn, up = v >= ff, j = v - up * ff;
    return up * dense->layers[l].ffn + (int)(mk->unit_id[vt_gate_ffn(mk, l) + (size_t)j] - base);
}

void vt_slice_map_to_dense(vt_slice_map *map, const vt_masks *mk, const vt_config *from, const vt_config *sliced,
                           const vt_config *dense) {
    for (int i = 0; i < map->n; i++) map->dims[i] = (int)mk->unit_id[map->dims[i]];
    for (int l = 0; l < map->n_layers; l++) {
        const vt_layer_shape *s = &sliced->layers[l];
        int nq = map->qkv_rows[l] ? (s->n_heads + 2 * s->n_kv_heads) * sliced->head_dim : 0;
        int ng = map->gate_up_rows[l] ? 2 * s->ffn : 0;
        for (int r = 0; r < nq; r++) map->qkv_rows[l][r] = dense_qkv_row(mk, from, dense, l, map->qkv_rows[l][r]);
        for (int r = 0; r < ng; r++)
            map->gate_up_rows[l][r] = dense_gate_up_row(mk, from, dense, l, map->gate_up_rows[l][r]);
    }
}
