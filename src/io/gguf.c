/* gguf.c — the GGUF reader: every length and count is checked against the bytes left in the file
 * before it is used, so a truncated or hostile file gets an error, never a huge allocation. */
#include "io/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/dtype.h"
#include "util/error.h"

typedef struct {
    const unsigned char *p, *end;
    const char *path;
} cursor;

static int need(cursor *c, uint64_t n, const char *what) {
    if ((uint64_t)(c->end - c->p) < n) return vt_fail("%s: truncated GGUF file (reading %s)", c->path, what);
    return 0;
}

static int get_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return -1;
    memcpy(v, c->p, 4);
    c->p += 4;
    return 0;
}

static int get_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return -1;
    memcpy(v, c->p, 8);
    c->p += 8;
    return 0;
}

static int get_str(cursor *c, vt_gguf_str *s, const char *what) {
    if (get_u64(c, &s->len, what) || need(c, s->len, what)) return -1;
    s->str = (const char *)c->p;
    c->p += s->len;
    return 0;
}

/* Size of one scalar of a metadata type; 0 for strings/arrays/unknown. */
static uint64_t scalar_size(uint32_t type) {
    switch (type) {
    case VT_GGUF_U8: case VT_GGUF_I8: case VT_GGUF_BOOL: return 1;
    case VT_GGUF_U16: case VT_GGUF_I16: return 2;
    case VT_GGUF_U32: case VT_GGUF_I32: case VT_GGUF_F32: return 4;
    case VT_GGUF_U64: case VT_GGUF_I64: case VT_GGUF_F64: return 8;
    default: return 0;
    }
}

static int skip_value(cursor *c, uint32_t type, const char *key) {
    if (type == VT_GGUF_STRING) {
        vt_gguf_str s;
        return get_str(c, &s, key);
    }
    uint64_t n = scalar_size(type);
    if (!n) return vt_fail("%s: key %s has unknown value type %u", c->path, key, type);
    if (need(c, n, key)) return -1;
    c->p += n;
    return 0;
}

static int read_kv(cursor *c, vt_gguf_kv *kv) {
    char key[128];
    if (get_str(c, &kv->key, "a metadata key")) return -1;
    snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 100 ? kv->key.len : 100), kv->key.str);
    if (get_u32(c, &kv->type, key)) return -1;
    if (kv->type == VT_GGUF_ARRAY) {
        if (get_u32(c, &kv->elem_type, key) || get_u64(c, &kv->count, key)) return -1;
        if (kv->elem_type == VT_GGUF_ARRAY) return vt_fail("%s: key %s is a nested array", c->path, key);
        /* Every element takes at least one byte, so the count is bounded by the bytes left. */
        if (kv->count > (uint64_t)(c->end - c->p))
            return vt_fail("%s: key %s: array of %llu elements is longer than the file", c->path, key,
                           (unsigned long long)kv->count);
        kv->value = c->p;
        for (uint64_t i = 0; i < kv->count; i++)
            if (skip_value(c, kv->elem_type, key)) return -1;
        return 0;
    }
    kv->value = c->p;
    return skip_value(c, kv->type, key);
}

static int read_tensor_info(cursor *c, vt_gguf_tensor *t, int index) {
    char what[64];
    snprintf(what, sizeof what, "tensor info %d", index);
    if (get_str(c, &t->name, what) || get_u32(c, &t->n_dims, what)) return -1;
    if (t->n_dims < 1 || t->n_dims > 4)
        return vt_fail("%s: tensor %.*s has %u dimensions (1 to 4 allowed)", c->path, (int)t->name.len, t->name.str,
                       t->n_dims);
    uint64_t n = 1;
    for (uint32_t d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (get_u64(c, &t->ne[d], what)) return -1;
        if (t->ne[d] == 0 || t->ne[d] > (UINT64_C(1) << 40) || n > (UINT64_C(1) << 50) / t->ne[d])
            return vt_fail("%s: tensor %.*s has an impossible dimension %llu", c->path, (int)t->name.len,
                           t->name.str, (unsigned long long)t->ne[d]);
        n *= t->ne[d];
    }
    if (get_u32(c, &t->type, what) || get_u64(c, &t->offset, what)) return -1;
    if (t->type != VT_GGML_F32 && t->type != VT_GGML_F16 && t->type != VT_GGML_BF16 && t->type != VT_GGML_Q8_0)
        return vt_fail("%s: tensor %.*s has type %s; supported: F32, F16, BF16, Q8_0", c->path, (int)t->name.len,
                       t->name.str, vt_ggml_type_name(t->type));
    if (t->type == VT_GGML_Q8_0 && t->ne[0] % VT_Q8_0_BLOCK)
        return vt_fail("%s: tensor %.*s: Q8_0 rows of %llu are not whole blocks", c->path, (int)t->name.len,
                       t->name.str, (unsigned long long)t->ne[0]);
    t->bytes = vt_ggml_row_bytes(t->type, n);
    return 0;
}

static int read_header(cursor *c, vt_gguf *g, uint64_t *n_tensors, uint64_t *n_kv) {
    uint32_t magic;
    if (get_u32(c, &magic, "the magic")) return -1;
    if (memcmp(&magic, "GGUF", 4)) return vt_fail("%s: not a GGUF file (bad magic)", g->path);
    if (get_u32(c, &g->version, "the version")) return -1;
    if (g->version != 2 && g->version != 3)
        return vt_fail("%s: GGUF version %u is not supported (2 or 3)", g->path, g->version);
    if (get_u64(c, n_tensors, "the tensor count") || get_u64(c, n_kv, "the metadata count")) return -1;
    /* A key/value takes at least 12 bytes, a tensor info at least 28: bound the counts by the size. */
    uint64_t left = (uint64_t)(c->end - c->p);
    if (*n_kv > left / 12 || *n_tensors > left / 28)
        return vt_fail("%s: header claims %llu keys and %llu tensors, more than the file can hold", g->path,
                       (unsigned long long)*n_kv, (unsigned long long)*n_tensors);
    return 0;
}

static int read_alignment(vt_gguf *g) {
    g->alignment = VT_GGUF_DEFAULT_ALIGNMENT;
    const vt_gguf_kv *kv = vt_gguf_find_kv(g, "general.alignment");
    if (!kv) return 0;
    int64_t a;
    if (vt_gguf_kv_int(g, kv, &a)) return -1;
    if (a <= 0 || a > 65536 || (a & (a - 1)))
        return vt_fail("%s: general.alignment %lld is not a power of two", g->path, (long long)a);
    g->alignment = (uint64_t)a;
    return 0;
}

static int place_tensors(vt_gguf *g, const unsigned char *info_end) {
    uint64_t at = (uint64_t)(info_end - g->map.data);
    uint64_t data_off = (at + g->alignment - 1) / g->alignment * g->alignment;
    if (data_off > g->map.size && g->n_tensors)
        return vt_fail("%s: truncated GGUF file (no tensor data)", g->path);
    uint64_t data_size = g->map.size - (data_off < g->map.size ? data_off : g->map.size);
    for (int i = 0; i < g->n_tensors; i++) {
        vt_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return vt_fail("%s: tensor %.*s: offset %llu is not aligned to %llu", g->path, (int)t->name.len,
                           t->name.str, (unsigned long long)t->offset, (unsigned long long)g->alignment);
        if (t->offset > data_size || t->bytes > data_size - t->offset)
            return vt_fail("%s: tensor %.*s: data [%llu, +%llu) is outside the file's %llu data bytes", g->path,
                           (int)t->name.len, t->name.str, (unsigned long long)t->offset,
                           (unsigned long long)t->bytes, (unsigned long long)data_size);
        t->data = g->map.data + data_off + t->offset;
    }
    return 0;
}

int vt_gguf_is_file(const char *path) {
    size_t len = strlen(path);
    if (len > 5 && !strcasecmp(path + len - 5, ".gguf")) return 1; /* then a bad magic is reported as such */
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4];
    int ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(f);
    return ok;
}

static int by_name(const void *a, const void *b) {
    const vt_gguf_str *x = &(*(const vt_gguf_tensor *const *)a)->name, *y = &(*(const vt_gguf_tensor *const *)b)->name;
    int c = memcmp(x->str, y->str, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* No tensor name twice: sorted, then neighbours compared (a file may list millions of tensors,
 * and comparing every pair would take hours). */
static int names_unique(const vt_gguf *g) {
    if (g->n_tensors < 2) return 0;
    const vt_gguf_tensor **v = vt_malloc(sizeof *v * (size_t)g->n_tensors, "GGUF tensor names");
    if (!v) return -1;
    for (int i = 0; i < g->n_tensors; i++) v[i] = &g->tensors[i];
    qsort(v, (size_t)g->n_tensors, sizeof *v, by_name);
    int rc = 0;
    for (int i = 1; i < g->n_tensors && rc == 0; i++)
        if (by_name(&v[i - 1], &v[i]) == 0)
            rc = vt_fail("%s: tensor %.*s is listed twice", g->path, (int)v[i]->name.len, v[i]->name.str);
    free(v);
    return rc;
}

static int parse(vt_gguf *g) {
    /* an empty file maps to NULL, and NULL + 0 is undefined (fuzz_gguf) */
    if (!g->map.data) return vt_fail("%s: empty, not a GGUF file", g->path);
    cursor c = {g->map.data, g->map.data + g->map.size, g->path};
    uint64_t n_tensors = 0, n_kv = 0;
    if (read_header(&c, g, &n_tensors, &n_kv)) return -1;
    g->kv = vt_calloc(n_kv ? n_kv : 1, sizeof *g->kv, "GGUF metadata");
    g->tensors = vt_calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors, "GGUF tensor infos");
    if (!g->kv || !g->tensors) return -1;
    for (uint64_t i = 0; i < n_kv; i++, g->n_kv++)
        if (read_kv(&c, &g->kv[i])) return -1;
    for (uint64_t i = 0; i < n_tensors; i++, g->n_tensors++)
        if (read_tensor_info(&c, &g->tensors[i], (int)i)) return -1;
    return names_unique(g) || read_alignment(g) || place_tensors(g, c.p);
}

int vt_gguf_open(vt_gguf *g, const char *path) {
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", path);
    if (vt_map_file(&g->map, path)) return -1;
    if (parse(g)) {
        vt_gguf_close(g);
        return -1;
    }
    return 0;
}

void vt_gguf_close(vt_gguf *g) {
    vt_unmap_file(&g->map);
    free(g->kv);
    free(g->tensors);
    g->kv = NULL;
    g->tensors = NULL;
    g->n_kv = g->n_tensors = 0;
}

static int str_is(vt_gguf_str s, const char *z) { return s.len == strlen(z) && memcmp(s.str, z, s.len) == 0; }

const vt_gguf_kv *vt_gguf_find_kv(const vt_gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (str_is(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const vt_gguf_tensor *vt_gguf_find_tensor(const vt_gguf *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (str_is(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int64_t int_at(const unsigned char *p, uint32_t type) {
    switch (type) {
    case VT_GGUF_U8: case VT_GGUF_BOOL: return p[0];
    case VT_GGUF_I8: return (int8_t)p[0];
    case VT_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case VT_GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case VT_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case VT_GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case VT_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); return v > INT64_MAX ? INT64_MAX : (int64_t)v; }
    case VT_GGUF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return 0;
    }
}

static double float_at(const unsigned char *p, uint32_t type) {
    if (type == VT_GGUF_F32) { float v; memcpy(&v, p, 4); return v; }
    if (type == VT_GGUF_F64) { double v; memcpy(&v, p, 8); return v; }
    return (double)int_at(p, type);
}

static int is_int_type(uint32_t t) { return scalar_size(t) && t != VT_GGUF_F32 && t != VT_GGUF_F64; }

int vt_gguf_kv_int(const vt_gguf *g, const vt_gguf_kv *kv, int64_t *out) {
    if (!is_int_type(kv->type))
        return vt_fail("%s: key %.*s is not an integer (type %u)", g->path, (int)kv->key.len, kv->key.str, kv->type);
    *out = int_at(kv->value, kv->type);
    return 0;
}

int vt_gguf_kv_float(const vt_gguf *g, const vt_gguf_kv *kv, double *out) {
    if (!scalar_size(kv->type) || kv->type == VT_GGUF_BOOL)
        return vt_fail("%s: key %.*s is not a number (type %u)", g->path, (int)kv->key.len, kv->key.str, kv->type);
    *out = float_at(kv->value, kv->type);
    return 0;
}

int64_t vt_gguf_arr_int(const vt_gguf_kv *kv, uint64_t i) {
    return int_at(kv->value + i * scalar_size(kv->elem_type), kv->elem_type);
}

double vt_gguf_arr_float(const vt_gguf_kv *kv, uint64_t i) {
    return float_at(kv->value + i * scalar_size(kv->elem_type), kv->elem_type);
}

void vt_gguf_arr_strings(const vt_gguf_kv *kv, vt_gguf_str *out) {
    const unsigned char *p = kv->value;
    for (uint64_t i = 0; i < kv->count; i++) {
        memcpy(&out[i].len, p, 8);
        out[i].str = (const char *)p + 8;
        p += 8 + out[i].len;
    }
}

const char *vt_ggml_type_name(uint32_t type) {
    static char buf[32];
    switch (type) {
    case VT_GGML_F32: return "F32";
    case VT_GGML_F16: return "F16";
    case VT_GGML_BF16: return "BF16";
    case VT_GGML_Q8_0: return "Q8_0";
    default: snprintf(buf, sizeof buf, "type %u", type); return buf;
    }
}

uint64_t vt_ggml_row_bytes(uint32_t type, uint64_t n) {
    switch (type) {
    case VT_GGML_F32: return 4 * n;
    case VT_GGML_Q8_0: return n / VT_Q8_0_BLOCK * (2 + VT_Q8_0_BLOCK);
    default: return 2 * n;
    }
}

void vt_ggml_to_f32(float *dst, const unsigned char *src, uint32_t type, uint64_t n) {
    if (type != VT_GGML_Q8_0) {
        vt_convert_to_f32(dst, src, type == VT_GGML_F32 ? VT_F32 : type == VT_GGML_F16 ? VT_F16 : VT_BF16, n);
        return;
    }
    for (uint64_t b = 0; b < n / VT_Q8_0_BLOCK; b++) {
        const unsigned char *blk = src + b * (2 + VT_Q8_0_BLOCK);
        uint16_t h;
        memcpy(&h, blk, 2);
        float d = vt_f16_to_f32(h);
        for (int i = 0; i < VT_Q8_0_BLOCK; i++) dst[b * VT_Q8_0_BLOCK + i] = d * (float)(int8_t)blk[2 + i];
    }
}

/* ggml's quantize_row_q8_0_ref: scale = max|x| / 127, q = round(x / scale). */
static void q8_0_block(unsigned char *blk, const float *x) {
    float amax = 0.0f;
    for (int i = 0; i < VT_Q8_0_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t h = vt_f32_to_f16(d);
    memcpy(blk, &h, 2);
    for (int i = 0; i < VT_Q8_0_BLOCK; i++) blk[2 + i] = (unsigned char)(int8_t)roundf(x[i] * id);
}

void vt_ggml_from_f32(unsigned char *dst, const float *src, uint32_t type, uint64_t n) {
    if (type != VT_GGML_Q8_0) {
        vt_convert_from_f32(dst, src, type == VT_GGML_F32 ? VT_F32 : type == VT_GGML_F16 ? VT_F16 : VT_BF16, n);
        return;
    }
    for (uint64_t b = 0; b < n / VT_Q8_0_BLOCK; b++) q8_0_block(dst + b * (2 + VT_Q8_0_BLOCK), src + b * VT_Q8_0_BLOCK);
}
