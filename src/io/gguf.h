/* gguf.h — the GGUF v3 container (llama.cpp's model file): a checked reader over a read-only map
 * (header, typed key/value metadata including arrays, tensor infos, aligned data) and the element
 * types a LLaMA checkpoint uses (F32, F16, BF16, Q8_0) converted to fp32. */
#ifndef VT_GGUF_H
#define VT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "util/fsutil.h"

/* Metadata value types, numbered as in the GGUF specification. */
enum {
    VT_GGUF_U8 = 0, VT_GGUF_I8 = 1, VT_GGUF_U16 = 2, VT_GGUF_I16 = 3, VT_GGUF_U32 = 4, VT_GGUF_I32 = 5,
    VT_GGUF_F32 = 6, VT_GGUF_BOOL = 7, VT_GGUF_STRING = 8, VT_GGUF_ARRAY = 9, VT_GGUF_U64 = 10,
    VT_GGUF_I64 = 11, VT_GGUF_F64 = 12
};

/* Tensor element types this project reads and writes (ggml_type numbers). */
enum { VT_GGML_F32 = 0, VT_GGML_F16 = 1, VT_GGML_Q8_0 = 8, VT_GGML_BF16 = 30 };
#define VT_Q8_0_BLOCK 32 /* elements per Q8_0 block: one fp16 scale, then 32 int8 */
#define VT_GGUF_DEFAULT_ALIGNMENT 32

typedef struct {
    const char *str; /* not NUL-terminated; points into the map */
    uint64_t len;
} vt_gguf_str;

typedef struct {
    vt_gguf_str key;
    uint32_t type;      /* VT_GGUF_* */
    uint32_t elem_type; /* for arrays: their element type */
    uint64_t count;     /* for arrays: their length */
    const unsigned char *value; /* the encoded value (for arrays: the first element) */
} vt_gguf_kv;

typedef struct {
    vt_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[4];   /* ne[0] is the innermost (contiguous) dimension */
    uint32_t type;    /* VT_GGML_* */
    uint64_t offset;  /* from the start of the data section */
    uint64_t bytes;
    const unsigned char *data;
} vt_gguf_tensor;

typedef struct {
    char path[VT_PATH_MAX];
    vt_mapped_file map;
    uint32_t version;
    uint64_t alignment;
    int n_kv, n_tensors;
    vt_gguf_kv *kv;
    vt_gguf_tensor *tensors;
} vt_gguf;

/* 1 when path ends in ".gguf" or is a file that starts with the GGUF magic. */
int vt_gguf_is_file(const char *path);

/* Maps and checks the whole file: magic, version 2 or 3, every key/value and tensor info inside
 * the file, counts bounded by the file size before anything is allocated, tensor types known,
 * every tensor's data inside the data section. Errors name the file and the item. */
int vt_gguf_open(vt_gguf *g, const char *path);
void vt_gguf_close(vt_gguf *g);

const vt_gguf_kv *vt_gguf_find_kv(const vt_gguf *g, const char *key);
const vt_gguf_tensor *vt_gguf_find_tensor(const vt_gguf *g, const char *name);

/* A scalar integer value (any integer type or bool) / float (f32, f64 or integer); errors name key. */
int vt_gguf_kv_int(const vt_gguf *g, const vt_gguf_kv *kv, int64_t *out);
int vt_gguf_kv_float(const vt_gguf *g, const vt_gguf_kv *kv, double *out);
/* Element i of an integer or float array. */
int64_t vt_gguf_arr_int(const vt_gguf_kv *kv, uint64_t i);
double vt_gguf_arr_float(const vt_gguf_kv *kv, uint64_t i);
/* The strings of a string array, in order: fills out[0..count) (pointers into the map). */
void vt_gguf_arr_strings(const vt_gguf_kv *kv, vt_gguf_str *out);

/* "F32", "F16", "BF16", "Q8_0", or "type N". */
const char *vt_ggml_type_name(uint32_t type);
/* Bytes for n elements of type (n a multiple of the block size for Q8_0). */
uint64_t vt_ggml_row_bytes(uint32_t type, uint64_t n);
/* Converts a tensor's n elements to fp32. */
void vt_ggml_to_f32(float *dst, const unsigned char *src, uint32_t type, uint64_t n);
/* Converts n fp32 values to type (F32, F16, BF16, Q8_0 with n a multiple of 32). */
void vt_ggml_from_f32(unsigned char *dst, const float *src, uint32_t type, uint64_t n);

#endif
