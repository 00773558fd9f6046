/* plugin_file.c — a plugin's safetensors file: the base model's fingerprint, atomic writing, and
 * loading checked against the model it is meant for. */
#include "io/plugin_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "util/error.h"
#include "util/fsutil.h"

/* ---- fingerprint ---- */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t rd64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t xround(uint64_t acc, uint64_t in) { return rotl(acc + in * P2, 31) * P1; }
static uint64_t xmerge(uint64_t h, uint64_t v) { return (h ^ xround(0, v)) * P1 + P4; }

/* XXH64 (Yann Collet's xxHash, 64-bit): four lanes over 32-byte stripes, a few GB/s, so hashing a
 * 7B model's weights costs seconds next to the minutes of loading them. Little-endian hosts. */
uint64_t vt_xxh64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data, *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        for (; end - p >= 32; p += 32) {
            v1 = xround(v1, rd64(p)), v2 = xround(v2, rd64(p + 8));
            v3 = xround(v3, rd64(p + 16)), v4 = xround(v4, rd64(p + 24));
        }
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
        h = xmerge(xmerge(xmerge(xmerge(h, v1), v2), v3), v4);
    } else {
        h = seed + P5;
    }
    h += (uint64_t)len;
    for (; end - p >= 8; p += 8) h = rotl(h ^ xround(0, rd64(p)), 27) * P1 + P4;
    if (end - p >= 4) h = rotl(h ^ (uint64_t)rd32(p) * P1, 23) * P2 + P3, p += 4;
    for (; p < end; p++) h = rotl(h ^ *p * P5, 11) * P1;
    h ^= h >> 33, h *= P2, h ^= h >> 29, h *= P3, h ^= h >> 32;
    return h;
}

static uint64_t tensor_hash(const float *x, size_t n) { return x ? vt_xxh64(x, n * sizeof(float), 0) : 0; }

uint64_t vt_fingerprint_embed(const vt_model *m) {
    return tensor_hash(m->embed, (size_t)m->cfg.vocab * m->cfg.dim);
}

uint64_t vt_fingerprint_layer(const vt_model *m, int l) {
    const vt_config *c = &m->cfg;
    const vt_layer_weights *w = &m->layers[l];
    size_t d = (size_t)c->dim, q = (size_t)c->layers[l].n_heads * c->head_dim;
    size_t kv = (size_t)c->layers[l].n_kv_heads * c->head_dim, f = (size_t)c->layers[l].ffn;
    uint64_t v[] = {
        (uint64_t)c->layers[l].n_heads, (uint64_t)c->layers[l].n_kv_heads, (uint64_t)f,
        tensor_hash(w->attn_norm, d), tensor_hash(w->wq, q * d), tensor_hash(w->wk, kv * d),
        tensor_hash(w->wv, kv * d), tensor_hash(w->wo, d * q), tensor_hash(w->ffn_norm, d),
        tensor_hash(w->w_gate, f * d), tensor_hash(w->w_up, f * d), tensor_hash(w->w_down, d * f),
    };
    return vt_xxh64(v, sizeof v, 0);
}

uint64_t vt_fingerprint_head(const vt_model *m) {
    size_t d = (size_t)m->cfg.dim;
    uint64_t v[2] = {tensor_hash(m->final_norm, d),
                     m->cfg.tied ? 0 : tensor_hash(m->lm_head, (size_t)m->cfg.vocab * d)};
    return vt_xxh64(v, sizeof v, 0);
}

uint64_t vt_fingerprint_combine(const vt_config *c, uint64_t embed, const uint64_t *layers, uint64_t head) {
    uint64_t shape[] = {(uint64_t)c->dim, (uint64_t)c->n_layers, (uint64_t)c->head_dim, (uint64_t)c->vocab,
                        (uint64_t)c->tied, (uint64_t)c->rope, embed, head};
    uint64_t h = vt_xxh64(shape, sizeof shape, 0);
    return vt_xxh64(layers, sizeof(uint64_t) * (size_t)c->n_layers, h);
}

int vt_model_fingerprint(const vt_model *m, uint64_t *fingerprint) {
    if (!m->has_embed || !m->has_head || m->layer_begin != 0 || m->layer_end != m->cfg.n_layers)
        return vt_fail("model fingerprint: needs the whole model (embedding, layers 0..%d, head); this part holds "
                       "layers %d..%d%s%s", m->cfg.n_layers - 1, m->layer_begin, m->layer_end - 1,
                       m->has_embed ? "" : ", no embedding", m->has_head ? "" : ", no head");
    uint64_t *lh = vt_malloc(sizeof(uint64_t) * (size_t)m->cfg.n_layers, "layer fingerprints");
    if (!lh) return -1;
    for (int l = 0; l < m->cfg.n_layers; l++) lh[l] = vt_fingerprint_layer(m, l);
    *fingerprint = vt_fingerprint_combine(&m->cfg, vt_fingerprint_embed(m), lh, vt_fingerprint_head(m));
    free(lh);
    return 0;
}

/* ---- metadata ---- */

static const char *const PART[5] = {"score", "w1", "b1", "w2", "b2"};

/* Layer l's five tensors of p: pointer and shape, in the order of PART. */
static void layer_parts(const vt_plugin *p, int l, float *ptr[5], int64_t shape[5][2], int ndim[5]) {
    const vt_plugin_layer *L = &p->layers[l];
    float *q[5] = {L->w, L->w1, L->b1, L->w2, L->b2};
    int64_t d = p->dim, r = p->r, s[5][2] = {{d, 0}, {r, 2 * d}, {r, 0}, {d, r}, {d, 0}};
    for (int i = 0; i < 5; i++) ptr[i] = q[i], shape[i][0] = s[i][0], shape[i][1] = s[i][1], ndim[i] = s[i][1] ? 2 : 1;
}

void vt_plugin_meta_free(vt_plugin_meta *meta) {
    free(meta->ffn);
    memset(meta, 0, sizeof *meta);
}

/* A metadata value that must be a decimal integer >= lo. */
static int meta_int(const char *path, json_t *md, const char *key, int lo, int *out) {
    const char *s = json_string_value(json_object_get(md, key));
    if (!s) return vt_fail("%s: plugin metadata has no \"%s\"", path, key);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > 1 << 30)
        return vt_fail("%s: plugin metadata \"%s\" is \"%s\"; expected an integer >= %d", path, key, s, lo);
    *out = (int)v;
    return 0;
}

/* The FFN sizes, "172,172,0,..." (0: a removed MLP block), one per layer. */
static int meta_ffn(const char *path, json_t *md, vt_plugin_meta *meta) {
    const char *s = json_string_value(json_object_get(md, "ffn"));
    if (!s) return vt_fail("%s: plugin metadata has no \"ffn\"", path);
    meta->ffn = vt_calloc((size_t)meta->n_layers, sizeof(int), "plugin ffn sizes");
    if (!meta->ffn) return -1;
    const char *q = s;
    for (int l = 0; l < meta->n_layers; l++) {
        char *end;
        errno = 0;
        long v = strtol(q, &end, 10);
        if (end == q || errno || v < 0 || v > 1 << 30 || *end != (l + 1 < meta->n_layers ? ',' : '\0'))
            return vt_fail("%s: plugin metadata \"ffn\" is \"%s\"; expected %d comma-separated sizes", path, s,
                           meta->n_layers);
        meta->ffn[l] = (int)v;
        q = end + 1;
    }
    return 0;
}

static int meta_fingerprint(const char *path, json_t *md, uint64_t *fp) {
    const char *s = json_string_value(json_object_get(md, "fingerprint"));
    char *end = NULL;
    if (s && strlen(s) == 16) *fp = strtoull(s, &end, 16);
    if (!s || strlen(s) != 16 || *end)
        return vt_fail("%s: plugin metadata \"fingerprint\" is %s%s%s; expected 16 hex digits", path, s ? "\"" : "",
                       s ? s : "missing", s ? "\"" : "");
    return 0;
}

/* The metadata of an opened (validated) safetensors file. */
static int meta_from_st(const vt_safetensors *st, vt_plugin_meta *meta) {
    const char *path = st->path;
    memset(meta, 0, sizeof *meta);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)st->file.data[i] << (8 * i);
    json_t *root = json_loadb((const char *)st->file.data + 8, (size_t)hlen, 0, NULL);
    json_t *md = json_object_get(root, "__metadata__");
    const char *fmt = json_string_value(json_object_get(md, "format"));
    int rc = 0;
    if (!fmt || strcmp(fmt, VT_PLUGIN_FORMAT) != 0)
        rc = vt_fail("%s: not a plugin file: its metadata format is %s%s%s, not \"" VT_PLUGIN_FORMAT "\"", path,
                     fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
    if (!rc) rc = meta_int(path, md, "version", 1, &meta->version);
    if (!rc && meta->version != VT_PLUGIN_VERSION && meta->version != 2)
        rc = vt_fail("%s: plugin format version %d; this build reads versions 2 and %d", path, meta->version,
                     VT_PLUGIN_VERSION);
    const char *act = json_string_value(json_object_get(md, "activation"));
    if (!rc && (!act || strcmp(act, VT_PLUGIN_ACTIVATION) != 0))
        rc = vt_fail("%s: plugin adapter activation is %s; this build has \"" VT_PLUGIN_ACTIVATION "\" only", path,
                     act ? act : "missing");
    if (!rc) rc = meta_int(path, md, "k", 1, &meta->k);
    if (!rc) rc = meta_int(path, md, "r", 1, &meta->r);
    meta->exact_tail = 1; /* version 2 predates plugin.exact_tail: it ran exactly the last position only */
    if (!rc && meta->version >= 3) rc = meta_int(path, md, "exact_tail", 1, &meta->exact_tail);
    if (!rc) rc = meta_int(path, md, "dim", 1, &meta->dim);
    if (!rc) rc = meta_int(path, md, "n_layers", 1, &meta->n_layers);
    if (!rc) rc = meta_ffn(path, md, meta);
    if (!rc) rc = meta_fingerprint(path, md, &meta->fingerprint);
    const char *base = json_string_value(json_object_get(md, "base_model"));
    if (!rc) snprintf(meta->base_model, sizeof meta->base_model, "%s", base ? base : "(unnamed)");
    json_decref(root);
    if (rc) vt_plugin_meta_free(meta);
    return rc;
}

int vt_plugin_file_meta(const char *path, vt_plugin_meta *meta) {
    vt_safetensors st;
    if (vt_st_open(&st, path)) return vt_fail_context("reading plugin %s", path);
    int rc = meta_from_st(&st, meta);
    vt_st_close(&st);
    return rc;
}

/* ---- writing ---- */

/* p fits the model of config c: same width and depth, a plugin exactly at the layers that have one
 * (vt_plugin_has_layer: those with an FFN but the last). */
static int plugin_fits(const vt_plugin *p, const vt_config *c, const char *what) {
    if (p->dim != c->dim || p->n_layers != c->n_layers)
        return vt_fail("%s: plugin of dim %d, %d layers for a model of dim %d, %d layers", what, p->dim, p->n_layers,
                       c->dim, c->n_layers);
    for (int l = 0; l < c->n_layers; l++)
        if ((p->layers[l].w != NULL) != vt_plugin_has_layer(c, l))
            return vt_fail("%s: layer %d: the plugin %s one there, the model's layer %s", what, l,
                           p->layers[l].w ? "has" : "has no",
                           vt_plugin_has_layer(c, l) ? "needs one" : "has none (no FFN, or the last layer)");
    return 0;
}

/* The metadata strings: (key, value) pairs into kv, their text into buf. */
static int make_meta(const vt_plugin *p, const vt_config *c, uint64_t fp, const char *base, const char *kv[22],
                     char *buf, size_t cap) {
    static const char *const keys[] = {"format", "version", "activation", "k", "r", "exact_tail", "dim",
                                       "n_layers", "fingerprint", "base_model"};
    size_t n = 0;
    int nk = 0;
#define PUT(...)                                                                 \
    do {                                                                         \
        kv[2 * nk] = keys[nk], kv[2 * nk + 1] = buf + n, nk++;                   \
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__) + 1; \
    } while (0)
    PUT("%s", VT_PLUGIN_FORMAT);
    PUT("%d", VT_PLUGIN_VERSION);
    PUT("%s", VT_PLUGIN_ACTIVATION);
    PUT("%d", p->k);
    PUT("%d", p->r);
    PUT("%d", p->tail);
    PUT("%d", c->dim);
    PUT("%d", c->n_layers);
    PUT("%016" PRIx64, fp);
    PUT("%s", base ? base : "");
#undef PUT
    kv[2 * nk] = "ffn", kv[2 * nk + 1] = buf + n;
    for (int l = 0; l < c->n_layers; l++)
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%d", l ? "," : "", c->layers[l].ffn);
    return n < cap ? nk + 1 : vt_fail("plugin metadata: more than %zu bytes (base model path too long?)", cap);
}

int vt_plugin_save(const char *path, const vt_plugin *p, const vt_config *c, uint64_t fp, const char *base_model) {
    if (plugin_fits(p, c, path)) return -1;
    int n = 0;
    vt_st_entry *e = vt_calloc((size_t)c->n_layers * 5, sizeof *e, "plugin file entries");
    char(*names)[64] = vt_calloc((size_t)c->n_layers * 5, 64, "plugin tensor names");
    char *buf = vt_malloc(1 << 16, "plugin metadata");
    const char *kv[22];
    int n_meta = e && names && buf ? make_meta(p, c, fp, base_model, kv, buf, 1 << 16) : -1;
    for (int l = 0; l < c->n_layers && n_meta > 0; l++) {
        if (!p->layers[l].w) continue;
        float *ptr[5];
        int64_t shape[5][2];
        int ndim[5];
        layer_parts(p, l, ptr, shape, ndim);
        for (int i = 0; i < 5; i++, n++) {
            snprintf(names[n], 64, "layers.%d.plugin.%s", l, PART[i]);
            e[n] = (vt_st_entry){.name = names[n], .ndim = ndim[i], .shape = {shape[i][0], shape[i][1]}, .data = ptr[i]};
        }
    }
    vt_atomic_file a;
    int rc = n_meta > 0 ? vt_atomic_begin(&a, path) : -1;
    if (rc == 0) { /* the safetensors writer takes a path: write the temporary file by name */
        fclose(a.f);
        a.f = NULL;
        rc = vt_st_write_meta(a.tmp, e, n, VT_F32, kv, n_meta) ? -1 : vt_atomic_commit(&a);
        if (rc) vt_atomic_abort(&a);
    }
    free(e), free(names), free(buf);
    return rc ? vt_fail_context("saving plugin %s", path) : 0;
}

/* ---- loading ---- */

/* The plugin's shape against the model's: both files named. */
static int meta_fits(const vt_plugin_meta *meta, const vt_config *c, const char *path, const char *model_path) {
    int same = meta->dim == c->dim && meta->n_layers == c->n_layers;
    int bad_layer = -1;
    for (int l = 0; same && l < c->n_layers; l++)
        if (meta->ffn[l] != c->layers[l].ffn) bad_layer = l, same = 0;
    if (same) return 0;
    if (bad_layer >= 0)
        return vt_fail("%s: plugin made for another model: layer %d has FFN size %d there, %d in %s", path, bad_layer,
                       meta->ffn[bad_layer], c->layers[bad_layer].ffn, model_path);
    return vt_fail("%s: plugin made for another model: dim %d, %d layers there; %s has dim %d, %d layers", path,
                   meta->dim, meta->n_layers, model_path, c->dim, c->n_layers);
}

/* Layer l's five tensors from st into p, each present with its exact shape. */
static int read_layer(const vt_safetensors *st, vt_plugin *p, int l) {
    float *ptr[5];
    int64_t shape[5][2];
    int ndim[5];
    layer_parts(p, l, ptr, shape, ndim);
    for (int i = 0; i < 5; i++) {
        char name[64], want[64], got[64];
        snprintf(name, sizeof name, "layers.%d.plugin.%s", l, PART[i]);
        const vt_st_tensor *t = vt_st_find(st, name);
        if (!t) return vt_fail("%s: tensor %s is missing", st->path, name);
        vt_shape_str(shape[i], ndim[i], want, sizeof want);
        vt_shape_str(t->shape, t->ndim, got, sizeof got);
        if (strcmp(want, got) != 0)
            return vt_fail("%s: tensor %s has shape %s; k = %d, r = %d at dim %d needs %s", st->path, name, got, p->k,
                           p->r, p->dim, want);
        if (vt_st_read_f32(st, t, ptr[i])) return -1;
    }
    return 0;
}

/* No tensor besides the plugin's: a stray one means the file is not what its metadata says. */
static int no_extra(const vt_safetensors *st, const vt_config *c) {
    for (int i = 0; i < st->n_tensors; i++) {
        int l = -1, end = 0;
        char part[16] = "";
        sscanf(st->tensors[i].name, "layers.%d.plugin.%15[a-z0-9]%n", &l, part, &end);
        int ok = end > 0 && st->tensors[i].name[end] == '\0' && l >= 0 && l < c->n_layers && vt_plugin_has_layer(c, l);
        for (int j = 0; ok && j < 5; j++)
            if (strcmp(part, PART[j]) == 0) ok = 2;
        if (ok != 2) return vt_fail("%s: unexpected tensor %s in a plugin file", st->path, st->tensors[i].name);
    }
    return 0;
}

int vt_plugin_load(const char *path, const vt_config *c, uint64_t fp, const char *model_path, vt_plugin *p) {
    memset(p, 0, sizeof *p);
    vt_safetensors st;
    vt_plugin_meta meta;
    if (vt_st_open(&st, path)) return vt_fail_context("loading plugin %s", path);
    int rc = meta_from_st(&st, &meta);
    if (rc) {
        vt_st_close(&st);
        return -1;
    }
    rc = meta_fits(&meta, c, path, model_path);
    if (!rc) rc = vt_plugin_alloc(p, c, meta.k, meta.r);
    if (!rc) p->tail = meta.exact_tail;
    for (int l = 0; l < c->n_layers && !rc; l++)
        if (vt_plugin_has_layer(c, l)) rc = read_layer(&st, p, l);
    if (!rc) rc = no_extra(&st, c);
    if (!rc && meta.fingerprint != fp)
        rc = vt_fail("%s: plugin made for another model: trained on %s (weights fingerprint %016" PRIx64
                     "), but %s has fingerprint %016" PRIx64 "; a plugin fits only the exact weights it was "
                     "trained with (a pruned checkpoint needs its own)",
                     path, meta.base_model, meta.fingerprint, model_path, fp);
    vt_plugin_meta_free(&meta);
    vt_st_close(&st);
    if (rc) vt_plugin_free(p);
    return rc;
}
