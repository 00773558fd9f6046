/* safetensors.h — the safetensors format: a validating read-only (mmap) reader with lookup by
 * name, and a writer that stores fp32 tensors as F32, F16 or BF16. */
#ifndef VT_SAFETENSORS_H
#define VT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/dtype.h"
#include "util/fsutil.h"

#define VT_ST_MAX_DIMS 8

typedef struct {
    char *name;
    char dtype_name[12]; /* as stored: "F32", "BF16", "I64", ... */
    int dtype;           /* a vt_dtype, or -1 for a valid safetensors type we do not compute with */
    size_t elem_size;
    int ndim;
    int64_t shape[VT_ST_MAX_DIMS];
    uint64_t n_elems;
    uint64_t begin, end;       /* data_offsets: bytes into the data buffer */
    const unsigned char *data; /* begin, in the mapped file */
} vt_st_tensor;

typedef struct {
    char *path;
    vt_mapped_file file;
    const unsigned char *data; /* the data buffer, after the header */
    uint64_t data_size;
    int n_tensors;
    vt_st_tensor *tensors; /* sorted by name */
    int n_meta;
    char **meta; /* the "__metadata__" string entries: key meta[2 i], value meta[2 i + 1] */
} vt_safetensors;

/* Maps and validates a file: the header length lies inside the file, the header is a JSON object
 * of {name: {dtype, shape, data_offsets}} plus an optional "__metadata__" object, every dtype is a
 * safetensors type, every span is shape x element size and inside the data buffer, and the spans,
 * sorted, tile the data buffer exactly. Errors name the file and the tensor. */
int vt_st_open(vt_safetensors *st, const char *path);
void vt_st_close(vt_safetensors *st);
/* The tensor called name, or NULL. */
const vt_st_tensor *vt_st_find(const vt_safetensors *st, const char *name);
/* The "__metadata__" value of key (a string entry), or NULL. */
const char *vt_st_meta(const vt_safetensors *st, const char *key);
/* Converts a F32/F16/BF16 tensor to fp32 into dst[n_elems]; other dtypes are an error. */
int vt_st_read_f32(const vt_safetensors *st, const vt_st_tensor *t, float *dst);
/* Drops t's pages of the mapped file from resident memory once read (vt_mapped_release). */
void vt_st_release(const vt_safetensors *st, const vt_st_tensor *t);
/* A shape as errors print it: "[172, 64]" (cut at cap). */
void vt_shape_str(const int64_t *shape, int ndim, char *out, size_t cap);

/* One tensor to write, from fp32 data. When row_order is given, row i of the stored tensor is row
 * row_order[i] of data (rows are the first dimension); the writer permutes while streaming. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[VT_ST_MAX_DIMS];
    const float *data;
    const int *row_order;
} vt_st_entry;

uint64_t vt_st_entry_elems(const vt_st_entry *e);

/* Writes entries to path in the order given, converted to dtype, with the header
 * {"__metadata__": {"format": "pt"}, ...} (keys sorted) padded with spaces to a multiple of 8.
 * The file is fsynced. The caller provides atomicity (write into a vt_outdir). */
int vt_st_write(const char *path, const vt_st_entry *entries, int n, vt_dtype dtype);
/* The same with the metadata given as n_meta (key, value) string pairs, meta_kv[2 i] and
 * meta_kv[2 i + 1], in place of {"format": "pt"} (safetensors metadata maps strings to strings). */
int vt_st_write_meta(const char *path, const vt_st_entry *entries, int n, vt_dtype dtype, const char *const *meta_kv,
                     int n_meta);

#endif
