/* test_archive_window.c — archives whose headers declare a huge decompression window are refused
 * before libarchive reads them (finding 8 of docs/RELIABILITY.md), the same archives with a small
 * window are read, and a decompressor inside another is not reached. */
#include <archive.h>
#include <archive_entry.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "data/archive_window.h"
#include "data/data.h"
#include "util/error.h"

static const uint32_t IDS[4] = {5, 6, 7, 8};

/* A tar holding t.u32 (four token ids), in memory. */
static size_t make_tar(unsigned char *buf, size_t cap) {
    struct archive *a = archive_write_new();
    size_t used = 0;
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "t.u32");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, sizeof IDS);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, IDS, sizeof IDS), (la_ssize_t)sizeof IDS);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    return used;
}

/* data as one .xz stream (preset 0: a 256 KiB dictionary) appended to out at *n. */
static void xz_append(unsigned char *out, size_t cap, size_t *n, const unsigned char *data, size_t size) {
    assert_int_equal(lzma_easy_buffer_encode(0, LZMA_CHECK_CRC32, NULL, data, size, out, n, cap), LZMA_OK);
}

/* Sets the LZMA2 dictionary byte ((2 | b & 1) << (b / 2 + 11) bytes) of the first block of the xz
 * stream at out + at, and the header's CRC32; returns the byte it replaced. */
static uint8_t xz_set_dict(unsigned char *out, size_t at, uint8_t dict_byte) {
    unsigned char *h = out + at + 12; /* the block header follows the 12-byte stream header */
    size_t size = ((size_t)h[0] + 1) * 4, p = 2;
    assert_int_equal(h[1] & 3, 0); /* one filter */
    if (h[1] & 0x40) while (h[p++] & 0x80) {} /* compressed size */
    if (h[1] & 0x80) while (h[p++] & 0x80) {} /* uncompressed size */
    assert_int_equal(h[p], LZMA_FILTER_LZMA2);
    assert_int_equal(h[p + 1], 1);
    uint8_t old = h[p + 2];
    h[p + 2] = dict_byte;
    uint32_t crc = lzma_crc32(h, size - 4, 0);
    for (int k = 0; k < 4; k++) h[size - 4 + k] = (unsigned char)(crc >> (8 * k));
    return old;
}

static void expect_read(const char *path) {
    vt_tokens out = {0};
    vt_data_stats st;
    if (vt_data_read(path, NULL, &out, &st) != 0) fail_msg("%s: %s", path, vt_error());
    assert_int_equal(out.n, 4);
    assert_int_equal(out.ids[3], 8);
    vt_tokens_free(&out);
}

static void expect_refused(const char *path, const char *what, const char *size) {
    vt_tokens out = {0};
    vt_data_stats st;
    assert_int_equal(vt_data_read(path, NULL, &out, &st), -1);
    if (!strstr(vt_error(), path) || !strstr(vt_error(), what) || (size && !strstr(vt_error(), size)))
        fail_msg("expected an error naming %s, %s and %s; got: %s", path, what, size ? size : "", vt_error());
    vt_tokens_free(&out);
}

static void test_xz(void **state) {
    (void)state;
    unsigned char tar[16384], xz[32768];
    size_t n_tar = make_tar(tar, sizeof tar), n = 0;
    xz_append(xz, sizeof xz, &n, tar, n_tar);
    const char *p = tu_in_dir("ok.tar.xz");
    assert_int_equal(tu_write_file(p, xz, n), 0);
    expect_read(p);
    /* 1.5 GiB (dictionary byte 37) in the only block */
    uint8_t preset0 = xz_set_dict(xz, 0, 37);
    p = tu_in_dir("huge.tar.xz");
    assert_int_equal(tu_write_file(p, xz, n), 0);
    expect_refused(p, "byte 12: xz block", "1536.0 MiB");
    /* a valid archive, then a second stream whose block declares 1.5 GiB: every block is checked */
    xz_set_dict(xz, 0, preset0);
    size_t first = n;
    xz_append(xz, sizeof xz, &n, (const unsigned char *)"padding", 7);
    xz_set_dict(xz, first, 37);
    p = tu_in_dir("second.tar.xz");
    assert_int_equal(tu_write_file(p, xz, n), 0);
    expect_refused(p, "xz block", "1536.0 MiB");
    /* 64 MiB (xz -9's dictionary) is read */
    xz_set_dict(xz, first, 28);
    p = tu_in_dir("xz9.tar.xz");
    assert_int_equal(tu_write_file(p, xz, n), 0);
    expect_read(p);
}

/* The tar as one zstd frame of one raw block, with the given window descriptor. */
static size_t zstd_raw_frame(unsigned char *out, const unsigned char *tar, size_t n_tar, uint8_t window) {
    static const unsigned char head[6] = {0x28, 0xB5, 0x2F, 0xFD, 0x00, 0};
    memcpy(out, head, 6);
    out[5] = window;
    uint32_t bh = 1 | (uint32_t)n_tar << 3; /* last, raw */
    for (int k = 0; k < 3; k++) out[6 + k] = (unsigned char)(bh >> (8 * k));
    memcpy(out + 9, tar, n_tar);
    return 9 + n_tar;
}

static void test_zstd(void **state) {
    (void)state;
    unsigned char tar[16384], zst[16400];
    size_t n_tar = make_tar(tar, sizeof tar);
    const char *p = tu_in_dir("ok.tar.zst");
    assert_int_equal(tu_write_file(p, zst, zstd_raw_frame(zst, tar, n_tar, 0x50)), 0); /* 1 MiB */
    expect_read(p);
    p = tu_in_dir("huge.tar.zst");
    assert_int_equal(tu_write_file(p, zst, zstd_raw_frame(zst, tar, n_tar, 0x88)), 0); /* 128 MiB: libzstd's own limit */
    expect_refused(p, "byte 0: zstd frame", "128.0 MiB");
}

/* A zip's first local file header for member x.txt with the given method and first data bytes. */
static void zip_member(const char *name, unsigned method, const unsigned char *data, size_t n_data) {
    unsigned char z[64] = "PK\3\4";
    z[8] = (unsigned char)method;
    z[9] = (unsigned char)(method >> 8);
    z[26] = 5; /* name length */
    memcpy(z + 30, "x.txt", 5);
    memcpy(z + 35, data, n_data);
    assert_int_equal(tu_write_file(tu_in_dir(name), z, 35 + n_data), 0);
}

static void test_zip_members(void **state) {
    (void)state;
    /* LZMA: version 2 bytes, properties size 2 bytes, properties (lc/lp/pb, 32-bit dictionary) */
    const unsigned char lzma[9] = {9, 20, 5, 0, 0x5D, 0, 0, 0, 0x60}; /* 1.5 GiB */
    zip_member("lzma.zip", 14, lzma, 9);
    expect_refused(tu_in_dir("lzma.zip"), "zip member x.txt (LZMA)", "1536.0 MiB");
    const unsigned char ppmd[2] = {0xF5, 0x0F}; /* libarchive's PPMd8: ((0xFF5 >> 4) & 0xFF) + 1 = 256 MiB */
    zip_member("ppmd.zip", 98, ppmd, 2);
    expect_refused(tu_in_dir("ppmd.zip"), "zip member x.txt (PPMd)", "256.0 MiB");
    zip_member("xz.zip", 95, (const unsigned char *)"\xFD" "7zXZ", 5);
    expect_refused(tu_in_dir("xz.zip"), "zip member x.txt (XZ)", "use deflate");
    /* libarchive reads the method's low byte only: 0x4A0E is LZMA (fuzz_archive) */
    zip_member("lzma-high.zip", 0x4A0E, lzma, 9);
    expect_refused(tu_in_dir("lzma-high.zip"), "zip member x.txt (LZMA)", "1536.0 MiB");
    /* a small LZMA dictionary passes the check */
    const unsigned char small[9] = {9, 20, 5, 0, 0x5D, 0, 0, 1, 0};
    zip_member("small.zip", 14, small, 9);
    vt_archive_kind kind;
    assert_int_equal(vt_archive_inspect(tu_in_dir("small.zip"), &kind), 0);
    assert_int_equal(kind, VT_ARCHIVE_ZIP);
}

/* An .xz inside a gzip: libarchive would chain the two decompressors; only gzip is enabled. */
static void test_no_chain(void **state) {
    (void)state;
    unsigned char tar[16384], xz[32768], gz[40000];
    size_t n_tar = make_tar(tar, sizeof tar), n = 0, used = 0;
    xz_append(xz, sizeof xz, &n, tar, n_tar);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_raw(a), ARCHIVE_OK);
    assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, gz, sizeof gz, &used), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_filetype(e, AE_IFREG);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, xz, n), (la_ssize_t)n);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    const char *p = tu_in_dir("chain.tar.gz");
    assert_int_equal(tu_write_file(p, gz, used), 0);
    expect_refused(p, "cannot open as an archive", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xz),
        cmocka_unit_test(test_zstd),
        cmocka_unit_test(test_zip_members),
        cmocka_unit_test(test_no_chain),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
