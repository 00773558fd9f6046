/* dtype.h — stored tensor element types (F32, F16, BF16) and their conversions to and from fp32. */
#ifndef VT_DTYPE_H
#define VT_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { VT_F32 = 0, VT_F16 = 1, VT_BF16 = 2 } vt_dtype;
#define VT_N_DTYPES 3

/* "F32", "F16", "BF16" (the safetensors names). */
const char *vt_dtype_name(vt_dtype t);
/* "float32", "float16", "bfloat16" (config.json torch_dtype). */
const char *vt_dtype_torch_name(vt_dtype t);
/* Bytes per element: 4, 2, 2. */
size_t vt_dtype_size(vt_dtype t);
/* Parses a safetensors name ("F16"), a torch name ("float16") or a command-line name ("f16"),
 * case-insensitively. Returns 0, or -1 with an error naming the text. */
int vt_dtype_parse(const char *s, vt_dtype *out);

/* Scalar conversions. Narrowing rounds to nearest, ties to even; infinities stay infinite, NaNs
 * stay NaN (quiet), values past the largest finite F16 become infinity, tiny values become
 * subnormals or signed zero. */
uint16_t vt_f32_to_f16(float x);
float vt_f16_to_f32(uint16_t h);
uint16_t vt_f32_to_bf16(float x);
float vt_bf16_to_f32(uint16_t h);

/* A matrix of values held in fp32 (f) or, when f is NULL, in the 16-bit type t (h): a model's
 * weights as held (vt_model.raw), widened to fp32 where read. Widening is exact. */
typedef struct {
    const float *f;
    const uint16_t *h;
    vt_dtype t;
} vt_wmat;

/* Element i as fp32. */
static inline float vt_wmat_at(vt_wmat w, size_t i) {
    return w.f ? w.f[i] : w.t == VT_BF16 ? vt_bf16_to_f32(w.h[i]) : vt_f16_to_f32(w.h[i]);
}

/* Bulk conversions of n elements. `src`/`dst` in the stored type need not be aligned. */
void vt_convert_to_f32(float *dst, const void *src, vt_dtype src_type, size_t n);
void vt_convert_from_f32(void *dst, const float *src, vt_dtype dst_type, size_t n);
/* 1 when every one of x[n] converts to t and back to the same bits (fp32 weights read from a
 * checkpoint stored in t do), 0 at the first that does not. */
int vt_dtype_exact(const float *x, size_t n, vt_dtype t);

#endif
