/* test_safetensors.c — safetensors writer/reader round trip and every malformed-file error. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "io/safetensors.h"


/* Writes a raw safetensors file: 8-byte length (header_len, or strlen(header) when -1), the
 * header text, then data_bytes zero bytes. */
static const char *raw_file(const char *name, long long header_len, const char *header, size_t data_bytes) {
    size_t hl = strlen(header);
    size_t n = 8 + hl + data_bytes;
    unsigned char *buf = calloc(1, n);
    uint64_t len = header_len < 0 ? hl : (uint64_t)header_len;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, header, hl);
    const char *path = tu_in_dir(name);
    assert_int_equal(tu_write_file(path, buf, n), 0);
    free(buf);
    return path;
}

/* Opening path fails with a message that contains each of the fragments. */
static void expect_error(const char *path, const char *frag1, const char *frag2) {
    vt_safetensors st;
    vt_error_clear();
    assert_int_equal(vt_st_open(&st, path), -1);
    const char *msg = vt_error();
    if (!strstr(msg, path) || !strstr(msg, frag1) || (frag2 && !strstr(msg, frag2)))
        fail_msg("error '%s' should name %s, '%s' and '%s'", msg, path, frag1, frag2 ? frag2 : "");
}

/* x as stored in dtype t and read back. */
static float stored(float x, int t) {
    return t == VT_F32 ? x : t == VT_F16 ? vt_f16_to_f32(vt_f32_to_f16(x)) : vt_bf16_to_f32(vt_f32_to_bf16(x));
}

static void test_round_trip(void **state) {
    (void)state;
    float a[6] = {1.0f, -2.5f, 0.125f, 3.0f, 1e-3f, -7.75f}, b[3] = {0.5f, 0.25f, -1.0f};
    int order[3] = {2, 0, 1};
    vt_st_entry e[3] = {
        {"b.weight", 1, {3}, b, NULL},
        {"a.weight", 2, {3, 2}, a, order},
        {"empty", 2, {0, 4}, a, NULL},
    };
    for (int t = 0; t < VT_N_DTYPES; t++) {
        const char *path = tu_in_dir("rt.safetensors");
        assert_int_equal(vt_st_write(path, e, 3, (vt_dtype)t), 0);
        vt_safetensors st;
        assert_int_equal(vt_st_open(&st, path), 0);
        assert_int_equal(st.n_tensors, 3);
        /* Header: 8-byte aligned, padded with spaces, metadata first. */
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | st.file.data[i];
        assert_int_equal(hlen % 8, 0);
        assert_memory_equal(st.file.data + 8, "{\"__metadata__\":{\"format\":\"pt\"}", 31);
        assert_int_equal(st.file.size, 8 + hlen + (6 + 3) * vt_dtype_size((vt_dtype)t));
        /* Data in the order written: b first, then a. */
        const vt_st_tensor *ta = vt_st_find(&st, "a.weight"), *tb = vt_st_find(&st, "b.weight");
        assert_non_null(ta);
        assert_non_null(tb);
        assert_null(vt_st_find(&st, "c.weight"));
        assert_int_equal(tb->begin, 0);
        assert_int_equal(ta->begin, 3 * vt_dtype_size((vt_dtype)t));
        assert_string_equal(ta->dtype_name, vt_dtype_name((vt_dtype)t));
        assert_int_equal(ta->ndim, 2);
        assert_int_equal(ta->shape[0], 3);
        assert_int_equal(ta->shape[1], 2);
        float got[6];
        assert_int_equal(vt_st_read_f32(&st, ta, got), 0);
        for (int r = 0; r < 3; r++) /* stored row r is source row order[r] */
            for (int c = 0; c < 2; c++) assert_true(got[r * 2 + c] == stored(a[order[r] * 2 + c], t));
        assert_int_equal(vt_st_read_f32(&st, tb, got), 0);
        for (int i = 0; i < 3; i++) assert_true(got[i] == stored(b[i], t));
        assert_int_equal(vt_st_find(&st, "empty")->n_elems, 0);
        vt_st_close(&st);
    }
    /* The same input gives the same bytes. */
    char *x, *y;
    size_t nx, ny;
    const char *p1 = tu_in_dir("det1.safetensors"), *p2 = tu_in_dir("det2.safetensors");
    assert_int_equal(vt_st_write(p1, e, 3, VT_F16), 0);
    assert_int_equal(vt_st_write(p2, e, 3, VT_F16), 0);
    FILE *f1 = fopen(p1, "rb"), *f2 = fopen(p2, "rb");
    x = malloc(4096);
    y = malloc(4096);
    nx = fread(x, 1, 4096, f1);
    ny = fread(y, 1, 4096, f2);
    fclose(f1);
    fclose(f2);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    free(x);
    free(y);
}

static void test_other_dtypes_are_listed_not_converted(void **state) {
    (void)state;
    const char *p = raw_file("i64.safetensors", -1,
                             "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16);
    vt_safetensors st;
    assert_int_equal(vt_st_open(&st, p), 0);
    const vt_st_tensor *t = vt_st_find(&st, "ids");
    assert_non_null(t);
    assert_int_equal(t->dtype, -1);
    float out[2];
    assert_int_equal(vt_st_read_f32(&st, t, out), -1);
    assert_non_null(strstr(vt_error(), "I64"));
    vt_st_close(&st);
}

static void test_header_length_past_end(void **state) {
    (void)state;
    const char *p = raw_file("long.safetensors", 1000, "{}", 0);
    expect_error(p, "header length 1000", "past the end");
    p = raw_file("short.safetensors", -1, "", 0);
    assert_int_equal(tu_write_file(p, "abc", 3), 0);
    expect_error(p, "too short", NULL);
}

static void test_invalid_json(void **state) {
    (void)state;
    const char *p = raw_file("json.safetensors", -1, "{\"a\":\n{\"dtype\":\"F32\",,}}", 0);
    expect_error(p, "invalid JSON", "line 2");
    p = raw_file("array.safetensors", -1, "[1,2]", 0);
    expect_error(p, "not a JSON object", NULL);
    p = raw_file("meta.safetensors", -1, "{\"__metadata__\":3}", 0);
    expect_error(p, "__metadata__", NULL);
    p = raw_file("dup.safetensors", -1,
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_error(p, "invalid JSON", "duplicate");
}

static void test_unknown_dtype(void **state) {
    (void)state;
    const char *p = raw_file("dtype.safetensors", -1,
                             "{\"w\":{\"dtype\":\"F13\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    expect_error(p, "tensor w", "unknown dtype 'F13'");
}

static void test_shape_span_mismatch(void **state) {
    (void)state;
    const char *p = raw_file("span.safetensors", -1,
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16);
    expect_error(p, "tensor w", "needs 24 bytes");
    p = raw_file("neg.safetensors", -1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_error(p, "tensor w", "shape");
    p = raw_file("noshape.safetensors", -1, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4);
    expect_error(p, "tensor w", "shape");
}

static void test_out_of_range_offsets(void **state) {
    (void)state;
    const char *p = raw_file("range.safetensors", -1,
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 12);
    expect_error(p, "tensor b", "out of range");
    p = raw_file("backwards.safetensors", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8);
    expect_error(p, "tensor a", "end before they begin");
}

static void test_overlapping_offsets(void **state) {
    (void)state;
    const char *p = raw_file("overlap.safetensors", -1,
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    expect_error(p, "tensor b", "overlap tensor a");
}

static void test_gapped_offsets(void **state) {
    (void)state;
    const char *p = raw_file("gap.safetensors", -1,
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20);
    expect_error(p, "tensor b", "gap of 4 unused bytes");
    p = raw_file("first.safetensors", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    expect_error(p, "tensor a", "gap of 4");
    p = raw_file("tail.safetensors", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12);
    expect_error(p, "8 unused bytes at the end", NULL);
}

static void test_missing_file(void **state) {
    (void)state;
    expect_error(tu_in_dir("nope.safetensors"), "cannot open", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_other_dtypes_are_listed_not_converted),
        cmocka_unit_test(test_header_length_past_end),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_shape_span_mismatch),
        cmocka_unit_test(test_out_of_range_offsets),
        cmocka_unit_test(test_overlapping_offsets),
        cmocka_unit_test(test_gapped_offsets),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
