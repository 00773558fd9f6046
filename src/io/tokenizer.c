/* tokenizer.c — llama2.c tokenizer.bin: load, encode with greedy merges, decode, locate. */
#include "io/tokenizer.h"

#include <dirent.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/tokenizer_bpe.h"
#include "io/tokenizer_hf.h"
#include "util/error.h"
#include "util/fsutil.h"

/* A file of more than this many bytes is not a tokenizer.bin (LLaMA's is about 0.5 MB). */
#define MAX_TOKENIZER_BYTES (1u << 30)
#define MAX_PIECE_BYTES 65536u


static int32_t get_i32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

static float get_f32(const unsigned char *p) {
    int32_t i = get_i32(p);
    float f;
    memcpy(&f, &i, 4);
    return f;
}

static int compare_bytes(const char *a, size_t alen, const char *b, size_t blen) {
    size_t m = alen < blen ? alen : blen;
    int c = memcmp(a, b, m);
    if (c) return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int compare_pieces(const void *pa, const void *pb) {
    const vt_piece_ref *a = pa, *b = pb;
    int c = compare_bytes(a->str, a->len, b->str, b->len);
    return c ? c : (a->id > b->id) - (a->id < b->id);
}

int vt_tokenizer_lookup(const vt_tokenizer *t, const char *s, size_t len) {
    /* Lower bound, so duplicated pieces resolve to the smallest id. */
    size_t lo = 0, hi = (size_t)t->vocab_size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (compare_bytes(t->sorted[mid].str, t->sorted[mid].len, s, len) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo < (size_t)t->vocab_size && compare_bytes(t->sorted[lo].str, t->sorted[lo].len, s, len) == 0)
        return t->sorted[lo].id;
    return -1;
}

void vt_tokenizer_free(vt_tokenizer *t) {
    if (t->hf) {
        vt_hf_free(t);
        return;
    }
    if (t->vocab) free(t->vocab[0]);
    free(t->vocab);
    free(t->vocab_len);
    free(t->scores);
    free(t->sorted);
    memset(t, 0, sizeof *t);
}

/* Reads the file and checks its header; a weights file given by mistake is refused before it is
 * read. On success *data (size bytes) is the caller's to free. */
static int read_tokenizer_file(const char *path, unsigned char **data, size_t *size, int32_t *max_len) {
    struct stat st;
    if (stat(path, &st) == 0 && (uint64_t)st.st_size > MAX_TOKENIZER_BYTES)
        return vt_fail("%s: %lld bytes, more than the %u a tokenizer file may have: is this the tokenizer?", path,
                       (long long)st.st_size, MAX_TOKENIZER_BYTES);
    if (vt_read_file(path, (char **)data, size)) return -1;
    if (*size < 4) {
        free(*data);
        return vt_fail("%s: tokenizer file is %zu bytes, shorter than its 4-byte header", path, *size);
    }
    *max_len = get_i32(*data);
    if (*max_len <= 0 || (uint32_t)*max_len > MAX_PIECE_BYTES) {
        free(*data);
        return vt_fail("%s: max_token_length %d in the header is not in [1, %u]; not a llama2.c tokenizer.bin",
                       path, (int)*max_len, MAX_PIECE_BYTES);
    }
    return 0;
}

/* The first pass: validates the records and counts them and their bytes (with a NUL each). */
static int count_records(const char *path, const unsigned char *data, size_t size, int32_t max_len, size_t *count,
                         size_t *text_bytes) {
    *count = *text_bytes = 0;
    for (size_t off = 4; off < size; ++*count) {
        if (size - off < 8)
            return vt_fail("%s: record %zu at byte %zu is truncated (%zu bytes left, need 8 for score and length)",
                           path, *count, off, size - off);
        int32_t len = get_i32(data + off + 4);
        if (len <= 0 || len > max_len)
            return vt_fail("%s: record %zu at byte %zu has length %d, outside [1, max_token_length=%d]", path,
                           *count, off, (int)len, (int)max_len);
        if (size - off - 8 < (size_t)len)
            return vt_fail("%s: record %zu at byte %zu is truncated (piece of %d bytes, %zu left)", path, *count,
                           off, (int)len, size - off - 8);
        off += 8 + (size_t)len;
        *text_bytes += (size_t)len + 1;
    }
    if (*count == 0 || *count > INT32_MAX) return vt_fail("%s: tokenizer has %zu tokens", path, *count);
    return 0;
}

/* The second pass over records count_records accepted: pieces, scores and the sorted index. */
static int fill_vocabulary(vt_tokenizer *t, const char *path, const unsigned char *data, size_t count,
                           size_t text_bytes) {
    t->vocab_size = (int)count;
    t->vocab = vt_calloc(count, sizeof *t->vocab, "tokenizer vocabulary");
    t->vocab_len = vt_malloc(count * sizeof *t->vocab_len, "tokenizer piece lengths");
    t->scores = vt_malloc(count * sizeof *t->scores, "tokenizer scores");
    t->sorted = vt_malloc(count * sizeof *t->sorted, "tokenizer index");
    char *text = vt_malloc(text_bytes, "tokenizer pieces");
    if (!t->vocab || !t->vocab_len || !t->scores || !t->sorted || !text) {
        free(text);
        vt_tokenizer_free(t);
        return vt_fail_context("%s", path);
    }
    size_t off = 4;
    for (size_t i = 0; i < count; i++) {
        size_t len = (size_t)get_i32(data + off + 4);
        t->scores[i] = get_f32(data + off);
        t->vocab[i] = text;
        t->vocab_len[i] = (unsigned)len;
        memcpy(text, data + off + 8, len);
        text[len] = '\0';
        text += len + 1;
        off += 8 + len;
        t->sorted[i] = (vt_piece_ref){t->vocab[i], (unsigned)len, (int)i};
    }
    qsort(t->sorted, count, sizeof *t->sorted, compare_pieces);
    return 0;
}

int vt_tokenizer_is_json(const char *path) {
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".json") == 0) return 1;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int c = fgetc(f);
    fclose(f);
    return c == '{';
}

int vt_tokenizer_load(vt_tokenizer *t, const char *path) {
    memset(t, 0, sizeof *t);
    if (vt_tokenizer_is_json(path)) return vt_hf_load(t, path);
    unsigned char *data = NULL;
    size_t size = 0, count = 0, text_bytes = 0;
    int32_t max_len = 0;
    if (read_tokenizer_file(path, &data, &size, &max_len)) return -1;
    int rc = count_records(path, data, size, max_len, &count, &text_bytes);
    /* llama2.c's BOS and EOS are ids 1 and 2: a vocabulary without them would be encoded out of
     * its arrays (fuzz_tokenizer: a file of one piece) */
    if (rc == 0 && count < 3)
        rc = vt_fail("%s: %zu piece%s; a llama2.c tokenizer has at least 3 (<unk>, BOS 1, EOS 2)", path, count,
                     count == 1 ? "" : "s");
    if (rc || fill_vocabulary(t, path, data, count, text_bytes)) {
        free(data);
        return -1;
    }
    free(data);
    t->max_token_length = (unsigned)max_len;
    for (int b = 0; b < 256; b++) {
        t->byte_pieces[2 * b] = (char)b;
        t->byte_pieces[2 * b + 1] = '\0';
    }
    t->space_id = vt_tokenizer_lookup(t, " ", 1);
    t->bos_id = VT_TOKEN_BOS;
    t->eos_id = VT_TOKEN_EOS;
    t->unk_id = vt_tokenizer_lookup(t, "<unk>", 5);
    t->add_bos = t->sp_style = 1;
    return 0;
}

const char *vt_decode_piece(const vt_tokenizer *t, int prev_token, int token) {
    if (token < 0 || token >= t->vocab_size) return NULL;
    const char *piece = t->text ? t->text[token] : t->vocab[token];
    if (!t->sp_style) return piece;
    /* tokenizer.json's Strip decoder drops the text's first space: after BOS, or at the start (-1). */
    if ((prev_token == t->bos_id || (t->text && prev_token < 0)) && piece[0] == ' ') piece++;
    unsigned char byte;
    if (sscanf(piece, "<0x%02hhX>", &byte) == 1) piece = t->byte_pieces + 2 * byte;
    return piece;
}

/* ---- encoding ---- */

typedef struct {
    const vt_tokenizer *t;
    char *buf; /* room for two pieces */
} bin_pairs;

/* A pair merges when its concatenation is a piece; llama2.c only merges pairs scoring above its
 * initial best of -1e10. */
static int bin_pair(const void *ctx, int a, int b, int *id, float *score) {
    const bin_pairs *p = ctx;
    const vt_tokenizer *t = p->t;
    unsigned la = t->vocab_len[a], lb = t->vocab_len[b];
    memcpy(p->buf, t->vocab[a], la);
    memcpy(p->buf + la, t->vocab[b], lb);
    *id = vt_tokenizer_lookup(t, p->buf, (size_t)la + lb);
    if (*id < 0 || !(t->scores[*id] > -1e10f)) return 0;
    *score = t->scores[*id];
    return 1;
}

/* Whether id is the byte piece "<0xXX>" of byte b (llama2.c assumes byte b is id b + 3). */
static int is_byte_piece(const vt_tokenizer *t, int id, unsigned char b) {
    char want[8];
    snprintf(want, sizeof want, "<0x%02X>", b);
    return id < t->vocab_size && t->vocab_len[id] == 6 && memcmp(t->vocab[id], want, 6) == 0;
}

/* Appends code point cp[0..cp_len) as its piece, its byte pieces, or <unk> (counted). */
static int push_code_point(const vt_tokenizer *t, const char *cp, size_t cp_len, int *tok, size_t *k,
                           size_t *n_unk) {
    int id = vt_tokenizer_lookup(t, cp, cp_len);
    if (id >= 0) {
        tok[(*k)++] = id;
        return 0;
    }
    int bytes_ok = 1;
    for (size_t j = 0; j < cp_len; j++) bytes_ok &= is_byte_piece(t, (unsigned char)cp[j] + 3, (unsigned char)cp[j]);
    if (bytes_ok) {
        for (size_t j = 0; j < cp_len; j++) tok[(*k)++] = (unsigned char)cp[j] + 3;
        return 0;
    }
    if (t->unk_id < 0)
        return vt_fail("cannot encode byte 0x%02X: not in the vocabulary, which has no byte pieces and no <unk>",
                       (unsigned char)cp[0]);
    tok[(*k)++] = t->unk_id;
    ++*n_unk;
    return 0;
}

/* llama2.c's encode(): dummy prefix, one piece per UTF-8 code point (byte pieces when the code
 * point is not a piece), then merges by score. */
static int bin_encode(const vt_tokenizer *t, const char *text, size_t len, int *tok, size_t *k, size_t *n_unk) {
    if (len > 0) { /* the dummy prefix; byte fallback for a vocabulary without " " */
        if (t->space_id >= 0) tok[(*k)++] = t->space_id;
        else if (push_code_point(t, " ", 1, tok, k, n_unk)) return -1;
    }
    /* One piece per UTF-8 code point: a lead byte and up to three continuation bytes, exactly as
     * llama2.c groups them (malformed sequences included). */
    char cp[4];
    size_t cp_len = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) != 0x80) cp_len = 0;
        cp[cp_len++] = (char)c;
        int next_is_continuation = i + 1 < len && ((unsigned char)text[i + 1] & 0xC0) == 0x80;
        if (next_is_continuation && cp_len < 4) continue;
        if (push_code_point(t, cp, cp_len, tok, k, n_unk)) return -1;
        cp_len = 0;
    }
    return 0;
}

/* llama2.c merges over everything pushed so far, BOS included. */
static int bin_merge(const vt_tokenizer *t, int *tok, size_t *k) {
    bin_pairs p = {t, vt_malloc(2 * (size_t)t->max_token_length + 1, "encoder buffer")};
    int rc = p.buf ? vt_bpe_merge(tok, *k, bin_pair, &p, k) : -1;
    free(p.buf);
    return rc;
}

int vt_tokenizer_encode(const vt_tokenizer *t, const char *text, size_t len, int bos, int eos, int **ids, size_t *n,
                        size_t *n_unk) {
    *ids = NULL;
    *n = 0;
    size_t unk = 0;
    if (n_unk) *n_unk = 0;
    if (len > ((size_t)1 << 40)) return vt_fail("text of %zu bytes is too long to encode", len);
    if (t->hf) return vt_hf_encode(t, text, len, bos, eos, ids, n, n_unk);
    /* At most: BOS, dummy prefix, one token per byte, EOS. */
    int *tok = vt_malloc((len + 3) * sizeof *tok, "encoded tokens");
    if (!tok) return -1;
    size_t k = 0;
    if (bos) tok[k++] = t->bos_id;
    if (bin_encode(t, text, len, tok, &k, &unk) || bin_merge(t, tok, &k)) {
        free(tok);
        return -1;
    }
    if (eos) tok[k++] = t->eos_id;
    *ids = tok;
    *n = k;
    if (n_unk) *n_unk = unk;
    return 0;
}

int vt_encode(const vt_tokenizer *t, const char *text, size_t len, int bos, int eos, int **ids, size_t *n) {
    return vt_tokenizer_encode(t, text, len, bos, eos, ids, n, NULL);
}

/* ---- finding the tokenizer of a model ---- */

static int is_readable_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int copy_path(char *out, size_t cap, const char *path) {
    if (strlen(path) >= cap) return vt_fail("%s: path too long", path);
    memcpy(out, path, strlen(path) + 1);
    return 0;
}

/* dir + "/" + name into out[cap]; 0 when it fits. */
static int join_path(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

int vt_tokenizer_locate(const char *model_path, const char *given, char *out, size_t cap) {
    if (given) return copy_path(out, cap, given);
    char candidate[VT_PATH_MAX];
    struct stat st;
    if (stat(model_path, &st) != 0) return vt_fail("%s: model not found", model_path);
    if (S_ISDIR(st.st_mode)) {
        if (join_path(candidate, sizeof candidate, model_path, "tokenizer.json") == 0 && is_readable_file(candidate))
            return copy_path(out, cap, candidate);
        if (join_path(candidate, sizeof candidate, model_path, "tokenizer.bin") == 0 && is_readable_file(candidate))
            return copy_path(out, cap, candidate);
        return vt_fail("no tokenizer given and none found in %s (looked for tokenizer.json and tokenizer.bin); "
                       "pass --tokenizer", model_path);
    }
    /* A file: look in its directory (llama2.c's names first, then an HF tokenizer.json). */
    const char *slash = strrchr(model_path, '/');
    const char *base = slash ? slash + 1 : model_path;
    char dir[VT_PATH_MAX];
    size_t dir_len = !slash ? 1 : slash == model_path ? 1 : (size_t)(slash - model_path);
    if (dir_len >= sizeof dir) return vt_fail("%s: path too long", model_path);
    memcpy(dir, !slash ? "." : slash == model_path ? "/" : model_path, dir_len);
    dir[dir_len] = '\0';

    if (strcmp(base, "tokenizer.bin") != 0 && join_path(candidate, sizeof candidate, dir, "tokenizer.bin") == 0 &&
        is_readable_file(candidate))
        return copy_path(out, cap, candidate);
    DIR *d = opendir(dir);
    if (!d) return vt_fail("%s: cannot list directory to find a tokenizer; pass --tokenizer", dir);
    char found[2][256];
    int n_found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 7 || strncmp(e->d_name, "tok", 3) != 0 || strcmp(e->d_name + len - 4, ".bin") != 0) continue;
        if (strcmp(e->d_name, base) == 0 || len >= sizeof found[0]) continue;
        if (join_path(candidate, sizeof candidate, dir, e->d_name) || !is_readable_file(candidate)) continue;
        if (n_found < 2) memcpy(found[n_found], e->d_name, len + 1);
        n_found++;
    }
    closedir(d);
    if (n_found == 0) {
        if (join_path(candidate, sizeof candidate, dir, "tokenizer.json") == 0 && is_readable_file(candidate))
            return copy_path(out, cap, candidate);
        return vt_fail("no tokenizer given and none found next to %s (no tokenizer.bin, tok*.bin or tokenizer.json in "
                       "%s); pass --tokenizer", model_path, dir);
    }
    if (n_found > 1)
        return vt_fail("no tokenizer given and %d candidates next to %s (%s, %s, ...); pass --tokenizer",
                       n_found, model_path, found[0], found[1]);
    if (join_path(candidate, sizeof candidate, dir, found[0])) return vt_fail("%s: path too long", dir);
    return copy_path(out, cap, candidate);
}
