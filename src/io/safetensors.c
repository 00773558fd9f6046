/* safetensors.c — validating safetensors reader (mmap) and streaming fp32 -> F32/F16/BF16 writer. */
#include "io/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

/* Every element type of the safetensors format, with its size. */
static const struct {
    const char *name;
    size_t size;
    int dtype;
} known_dtypes[] = {
    {"F32", 4, VT_F32}, {"F16", 2, VT_F16}, {"BF16", 2, VT_BF16}, {"F64", 8, -1},   {"I64", 8, -1},
    {"U64", 8, -1},     {"I32", 4, -1},     {"U32", 4, -1},       {"I16", 2, -1},   {"U16", 2, -1},
    {"I8", 1, -1},      {"U8", 1, -1},      {"BOOL", 1, -1},      {"F8_E4M3", 1, -1}, {"F8_E5M2", 1, -1},
};

static uint64_t read_u64le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

void vt_shape_str(const int64_t *shape, int ndim, char *out, size_t cap) {
    size_t w = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && w < cap; i++)
        w += (size_t)snprintf(out + w, cap - w, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (w < cap) snprintf(out + w, cap - w, "]");
}

/* A non-negative JSON integer, or -1. */
static long long json_nonneg(const json_t *v) {
    if (!json_is_integer(v)) return -1;
    long long x = json_integer_value(v);
    return x < 0 ? -1 : x;
}

/* Parses one header entry into t (name already set). */
static int parse_entry(const char *path, const char *name, json_t *v, uint64_t data_size, vt_st_tensor *t) {
    if (!json_is_object(v)) return vt_fail("%s: tensor %s: header entry is not a JSON object", path, name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return vt_fail("%s: tensor %s: missing or non-string \"dtype\"", path, name);
    if (!json_is_array(shape)) return vt_fail("%s: tensor %s: missing or non-array \"shape\"", path, name);
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return vt_fail("%s: tensor %s: \"data_offsets\" must be an array of two integers", path, name);
    const char *dname = json_string_value(dt);
    t->dtype = -2;
    for (size_t i = 0; i < sizeof known_dtypes / sizeof known_dtypes[0]; i++) {
        if (strcmp(dname, known_dtypes[i].name) == 0) {
            t->dtype = known_dtypes[i].dtype;
            t->elem_size = known_dtypes[i].size;
            snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dname);
        }
    }
    if (t->dtype == -2) return vt_fail("%s: tensor %s: unknown dtype '%s'", path, name, dname);
    if (json_array_size(shape) > VT_ST_MAX_DIMS)
        return vt_fail("%s: tensor %s: %zu dimensions (at most %d supported)", path, name, json_array_size(shape),
                       VT_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        long long d = json_nonneg(json_array_get(shape, (size_t)i));
        if (d < 0) return vt_fail("%s: tensor %s: shape entry %d is not a non-negative integer", path, name, i);
        t->shape[i] = d;
        if (d && n > UINT64_MAX / 16 / (uint64_t)d)
            return vt_fail("%s: tensor %s: shape is too large", path, name);
        n *= (uint64_t)d;
    }
    t->n_elems = n;
    long long b = json_nonneg(json_array_get(offs, 0)), e = json_nonneg(json_array_get(offs, 1));
    if (b < 0 || e < 0) return vt_fail("%s: tensor %s: data_offsets must be non-negative integers", path, name);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    if (t->end < t->begin)
        return vt_fail("%s: tensor %s: data_offsets [%llu, %llu] end before they begin", path, name,
                       (unsigned long long)b, (unsigned long long)e);
    if (t->end > data_size)
        return vt_fail("%s: tensor %s: data_offsets [%llu, %llu] are out of range: the data buffer has %llu bytes",
                       path, name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
    if (n * t->elem_size != t->end - t->begin) {
        char s[256];
        vt_shape_str(t->shape, t->ndim, s, sizeof s);
        return vt_fail("%s: tensor %s: shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] span %llu", path,
                       name, s, dname, (unsigned long long)(n * t->elem_size), (unsigned long long)b,
                       (unsigned long long)e, (unsigned long long)(t->end - t->begin));
    }
    return 0;
}

static int by_offset(const void *a, const void *b) {
    const vt_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const vt_st_tensor *)a)->name, ((const vt_st_tensor *)b)->name);
}

/* Sorted by offset, the spans must follow each other from 0 to the end of the data buffer. */
static int check_tiling(const vt_safetensors *st) {
    uint64_t expect = 0;
    const char *prev = NULL;
    for (int i = 0; i < st->n_tensors; i++) {
        const vt_st_tensor *t = &st->tensors[i];
        if (t->begin < expect)
            return vt_fail("%s: tensor %s: data_offsets [%llu, %llu] overlap tensor %s, which ends at %llu", st->path,
                           t->name, (unsigned long long)t->begin, (unsigned long long)t->end, prev,
                           (unsigned long long)expect);
        if (t->begin > expect)
            return vt_fail("%s: tensor %s: gap of %llu unused bytes before its data_offsets [%llu, %llu]", st->path,
                           t->name, (unsigned long long)(t->begin - expect), (unsigned long long)t->begin,
                           (unsigned long long)t->end);
        expect = t->end;
        prev = t->name;
    }
    if (expect != st->data_size)
        return vt_fail("%s: the tensors cover %llu bytes of the %llu-byte data buffer (%llu unused bytes at the end)",
                       st->path, (unsigned long long)expect, (unsigned long long)st->data_size,
                       (unsigned long long)(st->data_size - expect));
    return 0;
}

/* Keeps the metadata's string entries (safetensors metadata maps strings to strings; others are
 * skipped), e.g. the aliases torch's save_model records for shared tensors it stored once. */
static int keep_metadata(vt_safetensors *st, json_t *meta) {
    st->meta = vt_calloc(2 * json_object_size(meta) + 1, sizeof *st->meta, "safetensors metadata");
    if (!st->meta) return -1;
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        if (!json_is_string(val)) continue;
        char **kv = &st->meta[2 * st->n_meta];
        st->n_meta++;
        if (!(kv[0] = strdup(key)) || !(kv[1] = strdup(json_string_value(val))))
            return vt_fail("out of memory reading %s", st->path);
    }
    return 0;
}

static int parse_header(vt_safetensors *st) {
    const char *path = st->path;
    if (st->file.size < 8)
        return vt_fail("%s: %zu bytes is too short for a safetensors file (8-byte header length missing)", path,
                       st->file.size);
    uint64_t hlen = read_u64le(st->file.data);
    if (hlen > st->file.size - 8)
        return vt_fail("%s: header length %llu runs past the end of the file (%zu bytes)", path,
                       (unsigned long long)hlen, st->file.size);
    st->data = st->file.data + 8 + hlen;
    st->data_size = st->file.size - 8 - hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)st->file.data + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return vt_fail("%s: invalid JSON header at line %d, column %d: %s", path, jerr.line, jerr.column, jerr.text);
    int rc = 0;
    if (!json_is_object(root)) rc = vt_fail("%s: the header is not a JSON object", path);
    size_t cap = rc ? 0 : json_object_size(root);
    st->tensors = rc ? NULL : vt_calloc(cap, sizeof *st->tensors, "safetensors entries");
    if (!rc && !st->tensors) rc = -1;
    const char *key;
    json_t *val;
    if (!rc) {
        json_object_foreach(root, key, val) {
            if (strcmp(key, "__metadata__") == 0) {
                if (!json_is_object(val)) {
                    rc = vt_fail("%s: \"__metadata__\" is not a JSON object", path);
                    break;
                }
                rc = keep_metadata(st, val);
                if (rc) break;
                continue;
            }
            vt_st_tensor *t = &st->tensors[st->n_tensors];
            t->name = strdup(key);
            if (!t->name) {
                rc = vt_fail("out of memory reading %s", path);
                break;
            }
            st->n_tensors++;
            if ((rc = parse_entry(path, key, val, st->data_size, t)) != 0) break;
            t->data = st->data + t->begin;
        }
    }
    json_decref(root);
    if (rc) return -1;
    qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, by_offset);
    if (check_tiling(st)) return -1;
    qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, by_name);
    return 0;
}

int vt_st_open(vt_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    st->path = strdup(path);
    if (!st->path) return vt_fail("out of memory opening %s", path);
    if (vt_map_file(&st->file, path) || parse_header(st)) {
        vt_st_close(st);
        return -1;
    }
    return 0;
}

void vt_st_close(vt_safetensors *st) {
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    vt_unmap_file(&st->file);
    free(st->path);
    memset(st, 0, sizeof *st);
}

const char *vt_st_meta(const vt_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

const vt_st_tensor *vt_st_find(const vt_safetensors *st, const char *name) {
    vt_st_tensor key = {0};
    key.name = (char *)name;
    return st->n_tensors ? bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof key, by_name) : NULL;
}

int vt_st_read_f32(const vt_safetensors *st, const vt_st_tensor *t, float *dst) {
    if (t->dtype < 0)
        return vt_fail("%s: tensor %s has dtype %s; only F32, F16 and BF16 weights are supported", st->path, t->name,
                       t->dtype_name);
    vt_convert_to_f32(dst, t->data, (vt_dtype)t->dtype, (size_t)t->n_elems);
    return 0;
}

void vt_st_release(const vt_safetensors *st, const vt_st_tensor *t) {
    vt_mapped_release(&st->file, t->data, (size_t)(t->end - t->begin));
}

/* ---- writer ---- */

uint64_t vt_st_entry_elems(const vt_st_entry *e) {
    uint64_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= (uint64_t)e->shape[i];
    return n;
}

/* The JSON header for entries laid out in order, padded with spaces to a multiple of 8. */
static char *make_header(const vt_st_entry *e, int n, vt_dtype dtype, const char *const *meta_kv, int n_meta,
                         size_t *len) {
    json_t *root = json_object(), *meta = json_object();
    if (n_meta == 0) json_object_set_new(meta, "format", json_string("pt"));
    for (int i = 0; i < n_meta; i++) json_object_set_new(meta, meta_kv[2 * i], json_string(meta_kv[2 * i + 1]));
    json_object_set_new(root, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array(), *offs = json_array(), *ent = json_object();
        for (int d = 0; d < e[i].ndim; d++) json_array_append_new(shape, json_integer(e[i].shape[d]));
        uint64_t bytes = vt_st_entry_elems(&e[i]) * vt_dtype_size(dtype);
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + bytes)));
        off += bytes;
        json_object_set_new(ent, "dtype", json_string(vt_dtype_name(dtype)));
        json_object_set_new(ent, "shape", shape);
        json_object_set_new(ent, "data_offsets", offs);
        json_object_set_new(root, e[i].name, ent);
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (!text) {
        vt_fail("out of memory building a safetensors header");
        return NULL;
    }
    size_t raw = strlen(text), padded = (raw + 7) / 8 * 8;
    char *out = vt_malloc(padded, "safetensors header");
    if (out) {
        memcpy(out, text, raw);
        memset(out + raw, ' ', padded - raw);
        *len = padded;
    }
    free(text);
    return out;
}

/* Streams one entry's data, converted, in chunks of whole rows. */
static int write_entry(FILE *f, const char *path, const vt_st_entry *e, vt_dtype dtype, unsigned char *buf,
                       size_t buf_elems) {
    uint64_t total = vt_st_entry_elems(e);
    if (total == 0) return 0;
    uint64_t rows = e->ndim ? (uint64_t)e->shape[0] : 1, row_len = rows ? total / rows : 0;
    size_t esz = vt_dtype_size(dtype);
    if (e->row_order) {
        for (uint64_t r = 0; r < rows; r++) {
            for (uint64_t c = 0; c < row_len; c += buf_elems) {
                size_t k = (size_t)(row_len - c < buf_elems ? row_len - c : buf_elems);
                vt_convert_from_f32(buf, e->data + (uint64_t)e->row_order[r] * row_len + c, dtype, k);
                if (fwrite(buf, esz, k, f) != k) return vt_fail("%s: write failed: %s", path, strerror(errno));
            }
        }
        return 0;
    }
    for (uint64_t c = 0; c < total; c += buf_elems) {
        size_t k = (size_t)(total - c < buf_elems ? total - c : buf_elems);
        vt_convert_from_f32(buf, e->data + c, dtype, k);
        if (fwrite(buf, esz, k, f) != k) return vt_fail("%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

int vt_st_write(const char *path, const vt_st_entry *entries, int n, vt_dtype dtype) {
    return vt_st_write_meta(path, entries, n, dtype, NULL, 0);
}

int vt_st_write_meta(const char *path, const vt_st_entry *entries, int n, vt_dtype dtype, const char *const *meta_kv,
                     int n_meta) {
    for (int i = 0; i < n; i++) {
        if (entries[i].ndim < 1 || entries[i].ndim > VT_ST_MAX_DIMS)
            return vt_fail("%s: tensor %s: %d dimensions", path, entries[i].name, entries[i].ndim);
        if (strcmp(entries[i].name, "__metadata__") == 0)
            return vt_fail("%s: a tensor cannot be called __metadata__", path);
    }
    size_t hlen = 0;
    char *header = make_header(entries, n, dtype, meta_kv, n_meta, &hlen);
    if (!header) return -1;
    enum { BUF_ELEMS = 1 << 16 };
    unsigned char *buf = vt_malloc(BUF_ELEMS * 4, "safetensors write buffer");
    FILE *f = buf ? fopen(path, "wb") : NULL;
    int rc = 0;
    if (!buf) rc = -1;
    else if (!f) rc = vt_fail("%s: cannot create: %s", path, strerror(errno));
    if (!rc) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
        if (fwrite(len8, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen)
            rc = vt_fail("%s: write failed: %s", path, strerror(errno));
    }
    for (int i = 0; i < n && !rc; i++) rc = write_entry(f, path, &entries[i], dtype, buf, BUF_ELEMS);
    if (f) {
        if (!rc && (fflush(f) != 0 || fsync(fileno(f)) != 0))
            rc = vt_fail("%s: flushing to disk failed: %s", path, strerror(errno));
        if (fclose(f) != 0 && !rc) rc = vt_fail("%s: close failed: %s", path, strerror(errno));
    }
    free(buf);
    free(header);
    return rc;
}
