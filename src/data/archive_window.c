/* archive_window.c — an archive's kind and its decompressors' declared windows (archive_window.h). */
#include "data/archive_window.h"

#include <lzma.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"

static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

static uint32_t le32(const unsigned char *p) { return le16(p) | le16(p + 2) << 16; }

static int too_big(const char *path, const char *what, unsigned long long at, unsigned long long bytes) {
    return vt_fail("%s: byte %llu: %s declares a %.1f MiB decompression window, over the %u MiB read (the "
                   "decompressor would allocate it as declared); recompress with xz -9 or less, or zstd without "
                   "--long or --ultra",
                   path, at, what, (double)bytes / (1 << 20), VT_ARCHIVE_WINDOW_MAX >> 20);
}

/* The filters of the xz block whose header starts at byte at. */
static int xz_block_check(const char *path, const unsigned char *d, size_t n, uint64_t at, lzma_check check) {
    lzma_filter filters[LZMA_FILTERS_MAX + 1];
    lzma_block b = {.version = 1, .check = check, .filters = filters};
    if (at >= n) return vt_fail("%s: xz index points past the end (byte %llu)", path, (unsigned long long)at);
    b.header_size = lzma_block_header_size_decode(d[at]);
    if (b.header_size > n - at || lzma_block_header_decode(&b, NULL, d + at) != LZMA_OK)
        return vt_fail("%s: byte %llu: bad xz block header", path, (unsigned long long)at);
    uint64_t dict = 0, use = lzma_raw_decoder_memusage(filters);
    for (int i = 0; filters[i].id != LZMA_VLI_UNKNOWN; i++)
        if (filters[i].id == LZMA_FILTER_LZMA1 || filters[i].id == LZMA_FILTER_LZMA2)
            dict = ((const lzma_options_lzma *)filters[i].options)->dict_size;
    lzma_filters_free(filters, NULL);
    if (use == UINT64_MAX) return vt_fail("%s: byte %llu: xz block with unsupported filters", path, (unsigned long long)at);
    return dict > VT_ARCHIVE_WINDOW_MAX ? too_big(path, "xz block", at, dict) : 0;
}

/* Every block of every stream of an .xz file, found through the streams' indexes (liblzma's
 * file-info decoder, its own memory bounded too). */
static int xz_check(const char *path, const unsigned char *d, size_t n) {
    lzma_stream s = LZMA_STREAM_INIT;
    lzma_index *idx = NULL;
    lzma_ret r = lzma_file_info_decoder(&s, &idx, VT_ARCHIVE_WINDOW_MAX, n);
    s.next_in = d;
    s.avail_in = n;
    while (r == LZMA_OK || r == LZMA_SEEK_NEEDED) {
        if (r == LZMA_SEEK_NEEDED) {
            if (s.seek_pos > n) break;
            s.next_in = d + s.seek_pos;
            s.avail_in = n - s.seek_pos;
        } else if (s.avail_in == 0) {
            break; /* all of the file was given: not a complete xz file */
        }
        r = lzma_code(&s, LZMA_RUN);
    }
    lzma_end(&s);
    if (r != LZMA_STREAM_END)
        return vt_fail("%s: not a complete .xz file (liblzma: %s)", path,
                       r == LZMA_MEMLIMIT_ERROR ? "its index needs too much memory" : "bad or truncated stream");
    lzma_index_iter it;
    lzma_index_iter_init(&it, idx);
    int rc = 0;
    while (rc == 0 && !lzma_index_iter_next(&it, LZMA_INDEX_ITER_BLOCK))
        rc = xz_block_check(path, d, n, it.block.compressed_file_offset, it.stream.flags->check);
    lzma_index_end(idx, NULL);
    return rc;
}

/* The zstd frame at byte at: its window (the content size for a single-segment frame) checked, then
 * its blocks skipped; *end is where the next frame starts. */
static int zstd_frame(const char *path, const unsigned char *d, size_t n, size_t at, size_t *end) {
    static const size_t dict_id_bytes[4] = {0, 1, 2, 4};
    if (n - at < 6) return vt_fail("%s: byte %zu: truncated zstd frame header", path, at);
    unsigned fhd = d[at + 4], single = fhd >> 5 & 1, fcs_code = fhd >> 6;
    size_t p = at + 5, fcs_bytes = fcs_code ? (size_t)1 << fcs_code : single;
    uint64_t window = 0;
    if (!single) {
        unsigned wd = d[p++];
        window = (uint64_t)1 << (10 + (wd >> 3));
        window += window / 8 * (wd & 7);
    }
    p += dict_id_bytes[fhd & 3];
    if (p + fcs_bytes > n) return vt_fail("%s: byte %zu: truncated zstd frame header", path, at);
    if (single) {
        for (size_t k = 0; k < fcs_bytes; k++) window |= (uint64_t)d[p + k] << (8 * k);
        if (fcs_bytes == 2) window += 256;
    }
    if (window > VT_ARCHIVE_WINDOW_MAX) return too_big(path, "zstd frame", at, window);
    p += fcs_bytes;
    for (int last = 0; !last;) {
        if (n - p < 3) return vt_fail("%s: byte %zu: truncated zstd frame", path, at);
        uint32_t bh = d[p] | (uint32_t)d[p + 1] << 8 | (uint32_t)d[p + 2] << 16;
        size_t size = (bh >> 1 & 3) == 1 ? 1 : bh >> 3; /* an RLE block stores one byte */
        p += 3;
        last = bh & 1;
        if ((bh >> 1 & 3) == 3 || size > n - p) return vt_fail("%s: byte %zu: bad zstd block", path, p - 3);
        p += size;
    }
    if (fhd >> 2 & 1) p += 4; /* content checksum */
    if (p > n) return vt_fail("%s: byte %zu: truncated zstd frame", path, at);
    *end = p;
    return 0;
}

/* Every frame of a .zst file (skippable frames skipped). */
static int zstd_check(const char *path, const unsigned char *d, size_t n) {
    for (size_t at = 0; at < n;) {
        uint32_t magic = n - at >= 8 ? le32(d + at) : 0;
        if ((magic & 0xFFFFFFF0u) == 0x184D2A50u) {
            if (le32(d + at + 4) > n - at - 8) return vt_fail("%s: byte %zu: truncated zstd skippable frame", path, at);
            at += 8 + (size_t)le32(d + at + 4);
        } else if (magic != 0xFD2FB528u) {
            return vt_fail("%s: byte %zu: not a zstd frame", path, at);
        } else if (zstd_frame(path, d, n, at, &at)) {
            return -1;
        }
    }
    return 0;
}

/* The zip local file header at byte at: LZMA's dictionary and PPMd's memory are in the member's
 * first bytes; an XZ member's blocks are not reachable without decompressing, so it is refused. */
static int zip_member_check(const char *path, const unsigned char *d, size_t n, size_t at) {
    /* libarchive keeps the method's low byte only (a char): 0x4A0E is LZMA to it */
    unsigned method = d[at + 8], name_len = le16(d + at + 26);
    size_t data = at + 30 + name_len + le16(d + at + 28);
    const char *name = (const char *)d + at + 30;
    int shown = name_len > n - at - 30 ? (int)(n - at - 30) : (int)name_len;
    char what[300];
    snprintf(what, sizeof what, "zip member %.*s (%s)", shown > 200 ? 200 : shown, name,
             method == 14 ? "LZMA" : method == 98 ? "PPMd" : "XZ");
    if (method == 95)
        return vt_fail("%s: byte %zu: %s: XZ-compressed zip members are not read (their dictionaries cannot be "
                       "checked before decompressing); use deflate",
                       path, at, what);
    if (method == 14 && data < n && n - data >= 9 && le32(d + data + 5) > VT_ARCHIVE_WINDOW_MAX)
        return too_big(path, what, at, le32(d + data + 5));
    if (method == 98 && data < n && n - data >= 2) {
        uint64_t mem = (uint64_t)((le16(d + data) >> 4 & 0xFF) + 1) << 20; /* libarchive's PPMd8 memory */
        if (mem > VT_ARCHIVE_WINDOW_MAX) return too_big(path, what, at, mem);
    }
    return 0;
}

/* Every local file header of a zip: every "PK\3\4", wherever it is, covers both the central
 * directory's members and those a streaming read finds. */
static int zip_check(const char *path, const unsigned char *d, size_t n) {
    for (size_t at = 0; n >= 30 && at <= n - 30; at++) {
        const unsigned char *p = memchr(d + at, 'P', n - 30 + 1 - at);
        if (!p) break;
        at = (size_t)(p - d);
        if (memcmp(p, "PK\3\4", 4) == 0 && zip_member_check(path, d, n, at)) return -1;
    }
    return 0;
}

int vt_archive_inspect(const char *path, vt_archive_kind *kind) {
    vt_mapped_file f;
    if (vt_map_file(&f, path)) return -1;
    const unsigned char *d = f.data;
    size_t n = f.size;
    int rc = 0;
    *kind = VT_ARCHIVE_TAR;
    if (n >= 2 && d[0] == 0x1F && d[1] == 0x8B) {
        *kind = VT_ARCHIVE_GZIP;
    } else if (n >= 3 && memcmp(d, "BZh", 3) == 0) {
        *kind = VT_ARCHIVE_BZIP2;
    } else if (n >= 6 && memcmp(d, "\xFD" "7zXZ\0", 6) == 0) {
        *kind = VT_ARCHIVE_XZ;
        rc = xz_check(path, d, n);
    } else if (n >= 4 && (le32(d) == 0xFD2FB528u || (le32(d) & 0xFFFFFFF0u) == 0x184D2A50u)) {
        *kind = VT_ARCHIVE_ZSTD;
        rc = zstd_check(path, d, n);
    } else if (n >= 4 && (memcmp(d, "PK\3\4", 4) == 0 || memcmp(d, "PK\5\6", 4) == 0 || memcmp(d, "PK\7\10", 4) == 0)) {
        /* a local file header, an empty zip's end record, a split zip's marker (a tar starting with
         * a member named PKG-INFO stays a tar) */
        *kind = VT_ARCHIVE_ZIP;
        rc = zip_check(path, d, n);
    }
    vt_unmap_file(&f);
    return rc;
}
