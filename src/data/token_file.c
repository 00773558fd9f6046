/* token_file.c — token streams: growth, llm.c shards and raw uint32 files (read and atomic write). */
#include "data/token_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"
#include "util/fsutil.h"

void vt_tokens_free(vt_tokens *t) {
    free(t->ids);
    memset(t, 0, sizeof *t);
}

static int reserve(vt_tokens *t, size_t extra) {
    if (t->n + extra <= t->cap) return 0;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->n + extra) cap *= 2;
    int32_t *ids = realloc(t->ids, cap * sizeof *ids);
    if (!ids) return vt_fail("out of memory growing a token stream to %zu tokens", cap);
    t->ids = ids;
    t->cap = cap;
    return 0;
}

int vt_tokens_append(vt_tokens *t, const int *ids, size_t n) {
    if (reserve(t, n)) return -1;
    for (size_t i = 0; i < n; i++) t->ids[t->n + i] = (int32_t)ids[i];
    t->n += n;
    return 0;
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

int vt_is_token_shard(const unsigned char *data, size_t size) {
    if (size < 4) return 0;
    uint32_t magic = get_u32(data);
    return magic == VT_SHARD_MAGIC_U16 || magic == VT_SHARD_MAGIC_U32;
}

/* Appends count ids of `width` bytes (2 or 4, little-endian), checking each against vocab_size. */
static int append_ids(const char *name, const unsigned char *p, size_t count, int width, int vocab_size,
                      vt_tokens *out) {
    if (reserve(out, count)) return vt_fail_context("%s", name);
    for (size_t i = 0; i < count; i++) {
        uint32_t id = width == 2 ? (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8 : get_u32(p + 4 * i);
        if (id > INT32_MAX || (vocab_size > 0 && id >= (uint32_t)vocab_size))
            return vt_fail("%s: token %zu has id %u, outside the vocabulary of %d", name, i, id, vocab_size);
        out->ids[out->n + i] = (int32_t)id;
    }
    out->n += count;
    return 0;
}

int vt_tokens_parse_shard(const char *name, const unsigned char *data, size_t size, int vocab_size, vt_tokens *out) {
    if (size < VT_SHARD_HEADER_BYTES)
        return vt_fail("%s: %zu bytes, shorter than the %d-byte token shard header", name, size, VT_SHARD_HEADER_BYTES);
    uint32_t magic = get_u32(data), version = get_u32(data + 4), count = get_u32(data + 8);
    int width;
    if (magic == VT_SHARD_MAGIC_U16 && version == 1) width = 2;
    else if (magic == VT_SHARD_MAGIC_U32 && version == 7) width = 4;
    else
        return vt_fail("%s: not an llm.c token shard (magic %u version %u; expected %d/1 or %d/7)", name, magic,
                       version, VT_SHARD_MAGIC_U16, VT_SHARD_MAGIC_U32);
    size_t body = size - VT_SHARD_HEADER_BYTES;
    if (count > INT32_MAX || body != (size_t)count * (size_t)width)
        return vt_fail("%s: header says %u tokens of %d bytes but the file holds %zu bytes after the header%s", name,
                       count, width, body, body < (size_t)count * (size_t)width ? " (truncated)" : "");
    return append_ids(name, data + VT_SHARD_HEADER_BYTES, count, width, vocab_size, out);
}

int vt_tokens_parse_u32(const char *name, const unsigned char *data, size_t size, int vocab_size, vt_tokens *out) {
    if (size % 4 != 0) return vt_fail("%s: %zu bytes is not a whole number of uint32 tokens", name, size);
    return append_ids(name, data, size / 4, 4, vocab_size, out);
}

int vt_tokens_write(const char *path, const vt_tokens *t, int vocab_size) {
    if (t->n > INT32_MAX) return vt_fail("%s: %zu tokens do not fit one llm.c shard", path, t->n);
    int width = vocab_size <= 65536 ? 2 : 4;
    for (size_t i = 0; i < t->n; i++)
        if (t->ids[i] < 0 || (vocab_size > 0 && t->ids[i] >= vocab_size))
            return vt_fail("%s: token %zu has id %d, outside the vocabulary of %d", path, i, (int)t->ids[i], vocab_size);

    vt_atomic_file a;
    if (vt_atomic_begin(&a, path)) return -1;
    FILE *f = a.f;

    unsigned char header[VT_SHARD_HEADER_BYTES] = {0};
    put_u32(header, width == 2 ? VT_SHARD_MAGIC_U16 : VT_SHARD_MAGIC_U32);
    put_u32(header + 4, width == 2 ? 1 : 7);
    put_u32(header + 8, (uint32_t)t->n);
    int ok = fwrite(header, 1, sizeof header, f) == sizeof header;

    unsigned char buf[16384];
    size_t fill = 0;
    for (size_t i = 0; ok && i < t->n; i++) {
        uint32_t id = (uint32_t)t->ids[i];
        if (width == 2) {
            buf[fill++] = (unsigned char)id;
            buf[fill++] = (unsigned char)(id >> 8);
        } else {
            put_u32(buf + fill, id);
            fill += 4;
        }
        if (fill == sizeof buf || i + 1 == t->n) {
            ok = fwrite(buf, 1, fill, f) == fill;
            fill = 0;
        }
    }
    if (!ok) {
        vt_atomic_abort(&a);
        return vt_fail("%s: write failed (disk full or not writable?)", path);
    }
    return vt_atomic_commit(&a);
}
