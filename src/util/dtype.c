/* dtype.c — F16/BF16 <-> fp32 conversions with round-to-nearest-even, and bulk converters. */
#include "util/dtype.h"

#include <ctype.h>
#include <string.h>

#include "util/error.h"

/* Stored tensors are little-endian, as safetensors and llama2.c write them; so is every host we
 * build for, which lets F32 data be copied as is. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vtrans-dist reads and writes little-endian tensors and needs a little-endian host"
#endif

static const char *const safetensors_names[VT_N_DTYPES] = {"F32", "F16", "BF16"};
static const char *const torch_names[VT_N_DTYPES] = {"float32", "float16", "bfloat16"};
static const char *const cli_names[VT_N_DTYPES] = {"f32", "f16", "bf16"};

const char *vt_dtype_name(vt_dtype t) { return safetensors_names[t]; }

const char *vt_dtype_torch_name(vt_dtype t) { return torch_names[t]; }

size_t vt_dtype_size(vt_dtype t) { return t == VT_F32 ? 4 : 2; }

static int same_nocase(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

int vt_dtype_parse(const char *s, vt_dtype *out) {
    for (int t = 0; t < VT_N_DTYPES; t++) {
        if (same_nocase(s, safetensors_names[t]) || same_nocase(s, torch_names[t]) || same_nocase(s, cli_names[t])) {
            *out = (vt_dtype)t;
            return 0;
        }
    }
    return vt_fail("unknown dtype '%s' (expected f32, f16 or bf16)", s);
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t vt_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* >= 65520 (the tie above 65504 rounds to even, i.e. up): infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* normal F16 (>= 2^-14) */
        uint32_t h = ((((a >> 23) - 127u + 15u) << 10) | ((a >> 13) & 0x3ffu));
        uint32_t rest = a & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* a carry into the exponent is right */
        return (uint16_t)(sign | h);
    }
    if (a <= 0x33000000u) /* <= 2^-25, half the smallest subnormal: ties to even, i.e. zero */
        return sign;
    /* Subnormal F16: value = mant * 2^(e-150), in units of 2^-24 that is mant >> (126 - e). */
    uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u, shift = 126u - e;
    uint32_t h = mant >> shift, rest = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float vt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 0x1p-24f; /* zero or subnormal: exact in fp32 */
        return sign ? -v : v;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t vt_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even; overflow carries into infinity */
    return (uint16_t)(u >> 16);
}

float vt_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

void vt_convert_to_f32(float *dst, const void *src, vt_dtype t, size_t n) {
    const unsigned char *s = src;
    if (t == VT_F32) {
        memcpy(dst, s, n * 4);
        return;
    }
    if (t == VT_BF16) { /* a shift the compiler vectorises: the matmuls widen 16-bit weights here per block */
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            uint32_t u = (uint32_t)h << 16;
            memcpy(&dst[i], &u, sizeof u);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = vt_f16_to_f32(h);
    }
}

void vt_convert_from_f32(void *dst, const float *src, vt_dtype t, size_t n) {
    unsigned char *d = dst;
    if (t == VT_F32) {
        memcpy(d, src, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = t == VT_F16 ? vt_f32_to_f16(src[i]) : vt_f32_to_bf16(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

int vt_dtype_exact(const float *x, size_t n, vt_dtype t) {
    if (t == VT_F32) return 1;
    for (size_t i = 0; i < n; i++) {
        float back = t == VT_F16 ? vt_f16_to_f32(vt_f32_to_f16(x[i])) : vt_bf16_to_f32(vt_f32_to_bf16(x[i]));
        if (memcmp(&back, &x[i], sizeof back)) return 0;
    }
    return 1;
}
