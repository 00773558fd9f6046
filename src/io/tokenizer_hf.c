/* tokenizer_hf.c — encodes with a tokenizer.json BPE model as HF tokenizers does: added tokens split
 * out of the raw text, then the normalized text, each gap normalized, pre-tokenized into words
 * (PCRE2 for regex splits) and merged by rank; unencodable characters become <unk>, counted. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer_bpe.h"
#include "io/tokenizer_hf.h"
#include "util/error.h"

typedef struct {
    int *ids;
    size_t n, cap, n_unk;
} id_buf;

static int push_id(id_buf *b, int id) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        int *grown = realloc(b->ids, cap * sizeof *grown);
        if (!grown) return vt_fail("out of memory for encoded tokens");
        b->ids = grown;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
    return 0;
}

/* ---- normalizer ---- */

/* The first occurrence of needle[0..k) in s[0..n), or NULL (memmem without _GNU_SOURCE). */
static const char *find_bytes(const char *s, size_t n, const char *needle, size_t k) {
    for (size_t i = 0; k && i + k <= n; i++)
        if (s[i] == needle[0] && memcmp(s + i, needle, k) == 0) return s + i;
    return NULL;
}

static char *apply_norm(const vt_norm_op *op, const char *s, size_t n, size_t *out_n) {
    size_t la = strlen(op->a), lb = op->b ? strlen(op->b) : 0, count = 0;
    if (op->kind == VT_NORM_REPLACE)
        for (const char *p = s; (p = find_bytes(p, n - (size_t)(p - s), op->a, la)) != NULL; p += la) count++;
    char *out = vt_malloc(n + la + count * lb + 1, "normalized text");
    if (!out) return NULL;
    size_t k = 0;
    if (op->kind == VT_NORM_PREPEND) {
        if (n) memcpy(out, op->a, la), k = la; /* HF prepends to non-empty text only */
        memcpy(out + k, s, n);
        k += n;
    } else {
        for (size_t i = 0; i < n;) {
            if (n - i >= la && memcmp(s + i, op->a, la) == 0) {
                memcpy(out + k, op->b, lb);
                k += lb;
                i += la;
            } else {
                out[k++] = s[i++];
            }
        }
    }
    out[k] = '\0';
    *out_n = k;
    return out;
}

char *vt_hf_normalize(const struct vt_hf_model *m, const char *text, size_t len, size_t *out_len) {
    char *cur = vt_malloc(len + 1, "normalized text");
    if (!cur) return NULL;
    memcpy(cur, text, len);
    cur[len] = '\0';
    *out_len = len;
    for (size_t i = 0; i < m->n_norm && cur; i++) {
        char *next = apply_norm(&m->norm[i], cur, *out_len, out_len);
        free(cur);
        cur = next;
    }
    return cur;
}

/* ---- one word through the model ---- */

/* A character's length from its lead byte (vt_utf8_sequence's for valid text), so that malformed
 * text still advances and reaches the byte fallback in whatever groups its bytes form. */
static size_t utf8_len(const char *s, size_t n) {
    unsigned char c = (unsigned char)s[0];
    size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1, k = 1;
    while (k < want && k < n && ((unsigned char)s[k] & 0xC0) == 0x80) k++;
    return k;
}

/* The word's characters as pieces: the character's piece, else its byte pieces (byte fallback),
 * else <unk> (consecutive ones fused when the model says so), counted in *n_unk. */
static size_t initial_symbols(const vt_tokenizer *t, const char *w, size_t n, int *sym, size_t *n_unk) {
    const struct vt_hf_model *m = t->hf;
    size_t k = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = m->byte_level ? 1 : utf8_len(w + i, n - i);
        int id = m->byte_level ? m->byte_char_id[(unsigned char)w[i]] : vt_tokenizer_lookup(t, w + i, cl);
        int bytes_ok = m->byte_fallback;
        for (size_t j = 0; id < 0 && j < cl; j++) bytes_ok &= m->byte_id[(unsigned char)w[i + j]] >= 0;
        if (id >= 0) {
            sym[k++] = id;
        } else if (bytes_ok) {
            for (size_t j = 0; j < cl; j++) sym[k++] = m->byte_id[(unsigned char)w[i + j]];
        } else {
            ++*n_unk;
            if (t->unk_id >= 0 && !(m->fuse_unk && last_unk)) sym[k++] = t->unk_id;
        }
        last_unk = id < 0 && !bytes_ok;
        i += cl;
    }
    return k;
}

static int hf_pair(const void *ctx, int a, int b, int *id, float *score) {
    int rank;
    if (!vt_hf_merge_find(ctx, a, b, &rank, id)) return 0;
    *score = -(float)rank; /* the lowest rank merges first */
    return 1;
}

/* ignore_merges (LLaMA-3): a word that is itself a piece is that piece. */
static int whole_word(const vt_tokenizer *t, const int *sym, size_t k) {
    size_t len = 0;
    for (size_t i = 0; i < k; i++) len += t->vocab_len[sym[i]];
    char *buf = vt_malloc(len + 1, "word");
    if (!buf) return -1;
    len = 0;
    for (size_t i = 0; i < k; i++) memcpy(buf + len, t->vocab[sym[i]], t->vocab_len[sym[i]]), len += t->vocab_len[sym[i]];
    int id = vt_tokenizer_lookup(t, buf, len);
    free(buf);
    return id;
}

static int encode_word(const vt_tokenizer *t, const char *w, size_t n, id_buf *out) {
    int *sym = vt_malloc((n + 1) * sizeof *sym, "word symbols");
    if (!sym) return -1;
    size_t k = initial_symbols(t, w, n, sym, &out->n_unk);
    int whole = t->hf->ignore_merges && k > 1 ? whole_word(t, sym, k) : -1;
    if (whole >= 0) sym[0] = whole, k = 1;
    int rc = whole >= 0 ? 0 : vt_bpe_merge(sym, k, hf_pair, t->hf, &k);
    for (size_t i = 0; rc == 0 && i < k; i++) rc = push_id(out, sym[i]);
    free(sym);
    return rc;
}

/* ---- pre-tokenizer ---- */

typedef struct {
    size_t *start, *end;
    size_t n, cap;
} span_list;

static int add_span(span_list *l, size_t a, size_t b) {
    if (a >= b) return 0; /* empty pieces are dropped, as HF does */
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        size_t *s = realloc(l->start, cap * sizeof *s);
        if (s) l->start = s;
        size_t *e = s ? realloc(l->end, cap * sizeof *e) : NULL;
        if (!e) return vt_fail("out of memory for pre-tokenized words");
        l->end = e;
        l->cap = cap;
    }
    l->start[l->n] = a;
    l->end[l->n++] = b;
    return 0;
}

/* The next match in s[0..n) from off: [*ms, *me), or 0 when none. A regex or a literal. */
static int next_match(const vt_pre_op *op, pcre2_match_data *md, const char *s, size_t n, size_t off, size_t *ms,
                      size_t *me) {
    if (op->kind == VT_PRE_METASPACE) {
        size_t rl = strlen(op->replacement);
        const char *p = off < n ? find_bytes(s + off, n - off, op->replacement, rl) : NULL;
        if (!p) return 0;
        *ms = (size_t)(p - s);
        *me = *ms + rl;
        return 1;
    }
    for (; off <= n; off++) {
        if (pcre2_match(op->re, (PCRE2_SPTR)s, n, off, 0, md, NULL) < 0) return 0;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        *ms = ov[0];
        *me = ov[1];
        if (*me > *ms) return 1;
        off = *ms; /* an empty match: look again one byte on */
    }
    return 0;
}

/* Splits s[a..b) at op's matches into out, keeping matches as op's behavior says. */
static int split_span(const vt_pre_op *op, pcre2_match_data *md, const char *s, size_t a, size_t b, span_list *out) {
    int behavior = op->kind == VT_PRE_METASPACE   ? (int)VT_SPLIT_MERGE_NEXT
                   : op->kind == VT_PRE_BYTELEVEL ? (int)VT_SPLIT_ISOLATED
                                                  : op->behavior;
    size_t prev = 0, off = 0, ms, me, n = b - a;
    int rc = 0;
    while (rc == 0 && next_match(op, md, s + a, n, off, &ms, &me)) {
        if (behavior == VT_SPLIT_ISOLATED) rc = add_span(out, a + prev, a + ms) || add_span(out, a + ms, a + me);
        else if (behavior == VT_SPLIT_REMOVED) rc = add_span(out, a + prev, a + ms);
        else if (behavior == VT_SPLIT_MERGE_PREV) rc = add_span(out, a + prev, a + me);
        else rc = add_span(out, a + prev, a + ms);
        prev = behavior == VT_SPLIT_MERGE_NEXT ? ms : me;
        off = me;
    }
    return rc ? -1 : add_span(out, a + prev, b);
}

/* Metaspace replaces spaces and may prepend; ByteLevel may prepend a space. A new string. */
static char *pre_transform(const struct vt_hf_model *m, const char *s, size_t n, int first, size_t *out_n) {
    char *cur = vt_malloc(n + 1, "pre-tokenized text");
    if (!cur) return NULL;
    memcpy(cur, s, n);
    cur[n] = '\0';
    *out_n = n;
    for (size_t i = 0; i < m->n_pre && cur; i++) {
        const vt_pre_op *p = &m->pre[i];
        const char *rep = p->kind == VT_PRE_METASPACE ? p->replacement : " ";
        int prepend = p->kind == VT_PRE_BYTELEVEL ? p->prepend
                      : p->kind == VT_PRE_METASPACE ? p->prepend == VT_PREPEND_ALWAYS || (p->prepend == VT_PREPEND_FIRST && first)
                                                    : 0;
        char *next = cur;
        if (p->kind == VT_PRE_METASPACE) {
            vt_norm_op replace = {VT_NORM_REPLACE, " ", p->replacement};
            next = apply_norm(&replace, cur, *out_n, out_n);
            free(cur);
            cur = next;
        }
        if (cur && prepend && *out_n && strncmp(cur, rep, strlen(rep)) != 0) {
            vt_norm_op pre = {VT_NORM_PREPEND, (char *)rep, NULL};
            next = apply_norm(&pre, cur, *out_n, out_n);
            free(cur);
            cur = next;
        }
    }
    return cur;
}

/* Pre-tokenizes s[0..n) into words and encodes each. */
static int encode_pretokenized(const vt_tokenizer *t, const char *s0, size_t n0, int first, id_buf *out) {
    const struct vt_hf_model *m = t->hf;
    size_t n;
    char *s = pre_transform(m, s0, n0, first, &n);
    if (!s) return -1;
    span_list cur = {0}, next = {0};
    int rc = add_span(&cur, 0, n);
    for (size_t i = 0; rc == 0 && i < m->n_pre; i++) {
        const vt_pre_op *op = &m->pre[i];
        if (!op->re && !(op->kind == VT_PRE_METASPACE && op->split)) continue;
        pcre2_match_data *md = op->re ? pcre2_match_data_create_from_pattern(op->re, NULL) : NULL;
        if (op->re && !md) rc = vt_fail("out of memory for regex matching");
        next.n = 0;
        for (size_t j = 0; rc == 0 && j < cur.n; j++) rc = split_span(op, md, s, cur.start[j], cur.end[j], &next);
        if (md) pcre2_match_data_free(md);
        span_list tmp = cur;
        cur = next;
        next = tmp;
    }
    for (size_t j = 0; rc == 0 && j < cur.n; j++) rc = encode_word(t, s + cur.start[j], cur.end[j] - cur.start[j], out);
    free(cur.start), free(cur.end), free(next.start), free(next.end);
    free(s);
    return rc;
}

/* ---- added tokens ---- */

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_word_byte(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int matches_at(const vt_added_token *a, const char *s, size_t n, size_t i) {
    if (n - i < a->len || memcmp(s + i, a->content, a->len) != 0) return 0;
    if (!a->single_word) return 1;
    return (i == 0 || !is_word_byte((unsigned char)s[i - 1])) &&
           (i + a->len == n || !is_word_byte((unsigned char)s[i + a->len]));
}

/* The leftmost, then longest, added token with this `normalized` in s[from..n), as [*ms, *me)
 * with the whitespace lstrip/rstrip take; NULL when none. */
static const vt_added_token *find_added(const struct vt_hf_model *m, int normalized, const char *s, size_t n,
                                        size_t from, size_t *ms, size_t *me) {
    unsigned char first[256] = {0};
    int any = 0;
    for (size_t k = 0; k < m->n_added; k++)
        if (m->added[k].normalized == normalized && m->added[k].len) first[(unsigned char)m->added[k].content[0]] = 1, any = 1;
    for (size_t i = from; any && i < n; i++) {
        if (!first[(unsigned char)s[i]]) continue;
        const vt_added_token *best = NULL;
        for (size_t k = 0; k < m->n_added; k++) {
            const vt_added_token *a = &m->added[k];
            if (a->normalized == normalized && (!best || a->len > best->len) && matches_at(a, s, n, i)) best = a;
        }
        if (!best) continue;
        *ms = i;
        *me = i + best->len;
        while (best->lstrip && *ms > from && is_space(s[*ms - 1])) --*ms;
        while (best->rstrip && *me < n && is_space(s[*me])) ++*me;
        return best;
    }
    return NULL;
}

/* A gap between raw-text added tokens: normalized, then split at normalized added tokens. */
static int encode_raw_gap(const vt_tokenizer *t, const char *raw, size_t raw_n, int first, id_buf *out) {
    size_t n, from = 0, ms, me;
    char *s = vt_hf_normalize(t->hf, raw, raw_n, &n);
    if (!s) return -1;
    int rc = 0;
    const vt_added_token *a;
    while (rc == 0 && (a = find_added(t->hf, 1, s, n, from, &ms, &me)) != NULL) {
        rc = encode_pretokenized(t, s + from, ms - from, first && from == 0, out);
        if (rc == 0) rc = push_id(out, a->id);
        from = me;
    }
    if (rc == 0) rc = encode_pretokenized(t, s + from, n - from, first && from == 0, out);
    free(s);
    return rc;
}

int vt_hf_encode(const vt_tokenizer *t, const char *text, size_t len, int bos, int eos, int **ids, size_t *n,
                 size_t *n_unk) {
    id_buf out = {0};
    int rc = bos && t->add_bos && t->bos_id >= 0 ? push_id(&out, t->bos_id) : 0;
    size_t from = 0, ms, me;
    const vt_added_token *a;
    while (rc == 0 && (a = find_added(t->hf, 0, text, len, from, &ms, &me)) != NULL) {
        rc = encode_raw_gap(t, text + from, ms - from, from == 0, &out);
        if (rc == 0) rc = push_id(&out, a->id);
        from = me;
    }
    if (rc == 0) rc = encode_raw_gap(t, text + from, len - from, from == 0, &out);
    if (rc == 0 && eos && t->eos_id >= 0) rc = push_id(&out, t->eos_id);
    if (rc == 0 && out.n == 0) rc = push_id(&out, 0), out.n = 0; /* a valid (empty) allocation */
    if (rc) {
        free(out.ids);
        return -1;
    }
    *ids = out.ids;
    *n = out.n;
    if (n_unk) *n_unk = out.n_unk;
    return 0;
}
