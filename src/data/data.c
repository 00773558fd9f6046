/* data.c — reading a data file or archive into one token stream, each part by its file name. */
#include "data/data.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/archive_window.h"
#include "data/documents.h"
#include "util/error.h"
#include "util/fsutil.h"

static int ends_with(const char *name, const char *suffix) {
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcasecmp(name + n - k, suffix) == 0;
}

vt_data_kind vt_data_kind_of(const char *name) {
    static const struct {
        const char *suffix;
        vt_data_kind kind;
    } table[] = {
        {".txt", VT_DATA_TEXT},       {".text", VT_DATA_TEXT},       {".md", VT_DATA_TEXT},
        {".jsonl", VT_DATA_JSONL},    {".ndjson", VT_DATA_JSONL},    {".json", VT_DATA_JSONL},
        {".bin", VT_DATA_SHARD},      {".tok", VT_DATA_SHARD},       {".u32", VT_DATA_U32},
        {".tar", VT_DATA_ARCHIVE},    {".tar.gz", VT_DATA_ARCHIVE},  {".tgz", VT_DATA_ARCHIVE},
        {".tar.zst", VT_DATA_ARCHIVE}, {".tzst", VT_DATA_ARCHIVE},   {".tar.xz", VT_DATA_ARCHIVE},
        {".txz", VT_DATA_ARCHIVE},    {".tar.bz2", VT_DATA_ARCHIVE}, {".tbz2", VT_DATA_ARCHIVE},
        {".zip", VT_DATA_ARCHIVE},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (ends_with(name, table[i].suffix)) return table[i].kind;
    return VT_DATA_UNKNOWN;
}

/* Appends the tokens of one file's bytes, parsed as `kind`. */
static int parse_part(const char *name, vt_data_kind kind, const unsigned char *data, size_t size,
                      const vt_tokenizer *tok, vt_tokens *out, vt_data_stats *stats) {
    int vocab = tok ? tok->vocab_size : 0;
    if ((kind == VT_DATA_TEXT || kind == VT_DATA_JSONL) && !tok)
        return vt_fail("%s: text data needs a tokenizer", name);
    switch (kind) {
    case VT_DATA_TEXT: return vt_text_append_tokens(name, (const char *)data, size, tok, out, &stats->text);
    case VT_DATA_JSONL: return vt_jsonl_append_tokens(name, (const char *)data, size, tok, out, &stats->text);
    case VT_DATA_SHARD: return vt_tokens_parse_shard(name, data, size, vocab, out);
    case VT_DATA_U32: return vt_tokens_parse_u32(name, data, size, vocab, out);
    default: return vt_fail("%s: not a data file this program reads", name);
    }
}


/* ---- archives ---- */

typedef struct {
    char *name;
    unsigned char *data;
    size_t size;
} member;

static int by_name(const void *a, const void *b) {
    return strcmp(((const member *)a)->name, ((const member *)b)->name);
}

static int usable_member(const char *name) {
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    if (base[0] == '.' || base[0] == '\0') return 0; /* hidden files, e.g. macOS "._x.txt" */
    vt_data_kind kind = vt_data_kind_of(base);
    return kind != VT_DATA_UNKNOWN && kind != VT_DATA_ARCHIVE;
}

static int read_member(struct archive *a, const char *archive_path, const char *name, member *m) {
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) return vt_fail("%s: out of memory reading member %s", archive_path, name);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                return vt_fail("%s: out of memory reading member %s", archive_path, name);
            }
            buf = grown;
        }
        la_ssize_t got = archive_read_data(a, buf + n, cap - n);
        if (got < 0) {
            free(buf);
            return vt_fail("%s: member %s: %s", archive_path, name, archive_error_string(a));
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    m->name = strdup(name);
    if (!m->name) {
        free(buf);
        return vt_fail("%s: out of memory", archive_path);
    }
    m->data = buf;
    m->size = n;
    return 0;
}

/* Reads the usable members of an archive into *members (sorted by name). */
static int read_archive(const char *path, member **members, size_t *n_members) {
    *members = NULL;
    *n_members = 0;
    /* The documented formats only (docs/FORMATS.md): libarchive's other readers (7-Zip, RAR, CAB,
     * ISO, cpio, legacy .lzma, filters that run external programs) would each parse a stranger's
     * file for nothing; fuzz_archive found a 73-byte .lzma that made liblzma allocate a 128 MiB
     * dictionary. One decompressor at most, the one the first bytes name, after its declared
     * windows were checked (archive_window.h): a filter chain (xz inside gzip) would reach a
     * decompressor unchecked. */
    vt_archive_kind kind;
    if (vt_archive_inspect(path, &kind)) return -1;
    struct archive *a = archive_read_new();
    if (!a) return vt_fail("%s: cannot create an archive reader", path);
    if (kind == VT_ARCHIVE_GZIP) archive_read_support_filter_gzip(a);
    if (kind == VT_ARCHIVE_BZIP2) archive_read_support_filter_bzip2(a);
    if (kind == VT_ARCHIVE_XZ) archive_read_support_filter_xz(a);
    if (kind == VT_ARCHIVE_ZSTD) archive_read_support_filter_zstd(a);
    if (kind == VT_ARCHIVE_ZIP) archive_read_support_format_zip(a);
    else archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        int compressed = kind != VT_ARCHIVE_TAR && kind != VT_ARCHIVE_ZIP;
        vt_fail("%s: cannot open as an archive: %s%s", path, archive_error_string(a),
                compressed ? " (a tar, once decompressed; a compressed stream inside another is not read)" : "");
        archive_read_free(a);
        return -1;
    }
    size_t cap = 0;
    int rc = 0;
    struct archive_entry *entry;
    for (;;) {
        int r = archive_read_next_header(a, &entry);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = vt_fail("%s: broken archive: %s", path, archive_error_string(a));
            break;
        }
        const char *name = archive_entry_pathname(entry);
        if (archive_entry_filetype(entry) != AE_IFREG || !name || !usable_member(name)) continue;
        if (*n_members == cap) {
            cap = cap ? 2 * cap : 16;
            member *grown = realloc(*members, cap * sizeof *grown);
            if (!grown) {
                rc = vt_fail("%s: out of memory listing members", path);
                break;
            }
            *members = grown;
        }
        if (read_member(a, path, name, &(*members)[*n_members])) {
            rc = -1;
            break;
        }
        (*n_members)++;
    }
    archive_read_free(a);
    if (rc == 0 && *n_members > 1) qsort(*members, *n_members, sizeof **members, by_name);
    return rc;
}

static void free_members(member *members, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(members[i].name);
        free(members[i].data);
    }
    free(members);
}

static int read_archive_tokens(const char *path, const vt_tokenizer *tok, vt_tokens *out, vt_data_stats *stats) {
    member *members;
    size_t n;
    if (read_archive(path, &members, &n)) {
        free_members(members, n);
        return -1;
    }
    if (n == 0) {
        free_members(members, n);
        return vt_fail("%s: archive has no usable member (expected .txt, .jsonl, .bin or .u32 files)", path);
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char name[VT_PATH_MAX];
        if ((rc = vt_path_fmt(name, sizeof name, "%s:%s", path, members[i].name))) break;
        const char *slash = strrchr(members[i].name, '/');
        vt_data_kind kind = vt_data_kind_of(slash ? slash + 1 : members[i].name);
        rc = parse_part(name, kind, members[i].data, members[i].size, tok, out, stats);
        stats->files++;
    }
    free_members(members, n);
    return rc;
}

int vt_data_read(const char *path, const vt_tokenizer *tok, vt_tokens *out, vt_data_stats *stats) {
    vt_data_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    memset(out, 0, sizeof *out);

    vt_data_kind kind = vt_data_kind_of(path);
    int rc;
    if (kind == VT_DATA_UNKNOWN) {
        return vt_fail("%s: unknown data format (expected .txt, .md, .jsonl, .json, .bin or .tok token shard, .u32, "
                       "or a .tar, .tar.gz, .tar.zst or .zip archive of them)", path);
    } else if (kind == VT_DATA_ARCHIVE) {
        rc = read_archive_tokens(path, tok, out, stats);
    } else {
        unsigned char *data = NULL;
        size_t size = 0;
        if (vt_read_file(path, (char **)&data, &size)) return -1;
        rc = parse_part(path, kind, data, size, tok, out, stats);
        stats->files = 1;
        free(data);
    }
    if (rc == 0 && out->n == 0)
        rc = vt_fail("%s: empty data: no tokens (no document with non-whitespace text)", path);
    if (rc) vt_tokens_free(out);
    return rc;
}

int vt_data_tokens(const char *path, const vt_tokenizer *tok, vt_tokens *out) {
    return vt_data_read(path, tok, out, NULL);
}

int vt_data_tokens_note(const char *path, const vt_tokenizer *tok, vt_tokens *out, FILE *note) {
    vt_data_stats stats;
    if (vt_data_read(path, tok, out, &stats)) return -1;
    if (note && stats.text.unk) vt_data_note_unk(note, path, &stats, tok);
    return 0;
}

void vt_data_note_unk(FILE *note, const char *path, const vt_data_stats *stats, const vt_tokenizer *tok) {
    fprintf(note, "note: %s: %zu character%s not in the tokenizer's vocabulary became <unk> (id %d)\n", path,
            stats->text.unk, stats->text.unk == 1 ? "" : "s", tok ? tok->unk_id : -1);
}
