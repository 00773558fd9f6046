/* test_dtype.c — F16/BF16 conversions: exhaustive round trips, round-to-nearest-even against an
 * independent reference, infinities, NaNs, subnormals, bulk converters. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/dtype.h"
#include "util/rng.h"

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static int is_nan16(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }

/* Every F16 value survives F16 -> F32 -> F16 unchanged (NaNs stay NaN). */
static void test_f16_round_trip_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float x = vt_f16_to_f32((uint16_t)h);
        uint16_t back = vt_f32_to_f16(x);
        if (is_nan16((uint16_t)h)) {
            assert_true(isnan(x));
            assert_true(is_nan16(back));
        } else {
            assert_int_equal(back, h);
        }
    }
}

static void test_bf16_round_trip_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float x = vt_bf16_to_f32((uint16_t)h);
        assert_int_equal(f32_bits(x), h << 16);
        uint16_t back = vt_f32_to_bf16(x);
        if (isnan(x)) assert_true(isnan(vt_bf16_to_f32(back)));
        else assert_int_equal(back, h);
    }
}

static void test_f16_known_values(void **state) {
    (void)state;
    assert_int_equal(vt_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(vt_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(vt_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(vt_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(vt_f32_to_f16(-0.0f), 0x8000);
    assert_true(vt_f16_to_f32(0x0001) == 0x1p-24f);     /* smallest subnormal */
    assert_true(vt_f16_to_f32(0x0400) == 0x1p-14f);     /* smallest normal */
    assert_true(vt_f16_to_f32(0x3555) == 0.333251953125f);
    assert_true(isinf(vt_f16_to_f32(0x7c00)) && vt_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(vt_f16_to_f32(0xfc00)) && vt_f16_to_f32(0xfc00) < 0);
}

static void test_f16_rounding_and_specials(void **state) {
    (void)state;
    /* Ties go to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10. */
    assert_int_equal(vt_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(vt_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(vt_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    /* Overflow: 65519 rounds down to 65504, 65520 (the tie) to infinity. */
    assert_int_equal(vt_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(vt_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(vt_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(vt_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(vt_f32_to_f16(-INFINITY), 0xfc00);
    assert_true(is_nan16(vt_f32_to_f16(NAN)));
    assert_true(is_nan16(vt_f32_to_f16(bits_f32(0x7f800001u)))); /* signalling NaN, low payload */
    /* Underflow: half the smallest subnormal is a tie to zero; just above rounds up. */
    assert_int_equal(vt_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(vt_f32_to_f16(0x1p-25f * 1.0001f), 0x0001);
    assert_int_equal(vt_f32_to_f16(-0x1p-26f), 0x8000);
    assert_int_equal(vt_f32_to_f16(3 * 0x1p-25f), 0x0002); /* 1.5 units: tie to even 2 */
    assert_int_equal(vt_f32_to_f16(1e-45f), 0x0000);       /* fp32 subnormal */
    /* Rounding up out of the subnormals gives the smallest normal. */
    assert_int_equal(vt_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400);
}

static void test_bf16_rounding_and_specials(void **state) {
    (void)state;
    assert_int_equal(vt_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(vt_f32_to_bf16(bits_f32(0x3f808000u)), 0x3f80); /* tie, even stays */
    assert_int_equal(vt_f32_to_bf16(bits_f32(0x3f818000u)), 0x3f82); /* tie, odd rounds up */
    assert_int_equal(vt_f32_to_bf16(bits_f32(0x3f808001u)), 0x3f81);
    assert_int_equal(vt_f32_to_bf16(bits_f32(0x7f7fffffu)), 0x7f80); /* FLT_MAX rounds to infinity */
    assert_int_equal(vt_f32_to_bf16(-INFINITY), 0xff80);
    assert_true(isnan(vt_bf16_to_f32(vt_f32_to_bf16(NAN))));
    assert_true(isnan(vt_bf16_to_f32(vt_f32_to_bf16(bits_f32(0x7f800001u))))); /* must not become inf */
    assert_int_equal(vt_f32_to_bf16(bits_f32(0x00000001u)), 0x0000);       /* subnormals round too */
    assert_int_equal(vt_f32_to_bf16(bits_f32(0x00018000u)), 0x0002);
}

/* An independent reference: the F16 value nearest to x (double arithmetic over all finite F16
 * values), ties to the even bit pattern; infinity past 65520. */
static double f16_values[32768]; /* non-negative finite F16 values by bit pattern 0..0x7bff */

static uint16_t reference_f16(float x) {
    double a = fabs((double)x);
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (a >= 65520.0) return sign | 0x7c00;
    int lo = 0, hi = 0x7bff; /* largest pattern with value <= a */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (f16_values[mid] <= a) lo = mid;
        else hi = mid - 1;
    }
    if (lo == 0x7bff) return sign | 0x7bff;
    double dlo = a - f16_values[lo], dhi = f16_values[lo + 1] - a;
    int pick = dlo < dhi ? lo : dhi < dlo ? lo + 1 : (lo % 2 == 0 ? lo : lo + 1);
    return (uint16_t)(sign | pick);
}

static void test_f16_matches_reference(void **state) {
    (void)state;
    for (int h = 0; h <= 0x7bff; h++) f16_values[h] = vt_f16_to_f32((uint16_t)h);
    uint64_t s = 12345;
    for (int i = 0; i < 400000; i++) {
        vt_xorshift64(&s);
        /* Exponents around the F16 range, all mantissas, both signs. */
        uint32_t exp = 90 + (uint32_t)(s >> 58) % 60, u = (uint32_t)(s & 0x807fffffu) | exp << 23;
        float x = bits_f32(u);
        assert_int_equal(vt_f32_to_f16(x), reference_f16(x));
    }
    /* Exact ties between neighbours. */
    for (int h = 0; h < 0x7bff; h++) {
        float mid = (float)((f16_values[h] + f16_values[h + 1]) / 2);
        assert_int_equal(vt_f32_to_f16(mid), reference_f16(mid));
    }
}

static void test_bulk_and_names(void **state) {
    (void)state;
    float src[5] = {1.0f, -0.5f, 3.14159f, 65504.0f, 1e-3f}, back[5];
    unsigned char buf[1 + 5 * 4]; /* odd offset: the converters must not need alignment */
    for (int t = 0; t < VT_N_DTYPES; t++) {
        vt_convert_from_f32(buf + 1, src, (vt_dtype)t, 5);
        vt_convert_to_f32(back, buf + 1, (vt_dtype)t, 5);
        for (int i = 0; i < 5; i++) {
            float tol = t == VT_F32 ? 0.0f : t == VT_F16 ? 1e-3f : 8e-3f;
            assert_true(fabsf(back[i] - src[i]) <= tol * fabsf(src[i]));
        }
    }
    vt_convert_from_f32(buf, src, VT_F16, 1);
    assert_int_equal(buf[0] | buf[1] << 8, 0x3c00); /* little-endian storage */
    assert_string_equal(vt_dtype_name(VT_BF16), "BF16");
    assert_string_equal(vt_dtype_torch_name(VT_F16), "float16");
    assert_int_equal(vt_dtype_size(VT_F32), 4);
    assert_int_equal(vt_dtype_size(VT_BF16), 2);
    vt_dtype d;
    assert_int_equal(vt_dtype_parse("bf16", &d), 0);
    assert_int_equal(d, VT_BF16);
    assert_int_equal(vt_dtype_parse("float16", &d), 0);
    assert_int_equal(d, VT_F16);
    assert_int_equal(vt_dtype_parse("F32", &d), 0);
    assert_int_equal(d, VT_F32);
    assert_int_equal(vt_dtype_parse("f64", &d), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_round_trip_exhaustive), cmocka_unit_test(test_bf16_round_trip_exhaustive),
        cmocka_unit_test(test_f16_known_values),          cmocka_unit_test(test_f16_rounding_and_specials),
        cmocka_unit_test(test_bf16_rounding_and_specials), cmocka_unit_test(test_f16_matches_reference),
        cmocka_unit_test(test_bulk_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
