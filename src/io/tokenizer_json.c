/* tokenizer_json.c — loads a Hugging Face tokenizer.json (model BPE) with jansson: vocabulary,
 * merges, added tokens, normalizer and pre-tokenizer, and BOS/EOS from tokenizer_config.json. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer_hf.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "util/utf8.h"

/* GPT-2's ByteLevel pre-tokenizer pattern (HF tokenizers' byte_level.rs). */
const char VT_GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

unsigned vt_byte_level_char(unsigned char b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    unsigned n = 0; /* the others get 256, 257, ... in byte order */
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) n++;
    return 256 + n;
}

static char *dup_bytes(const char *s, size_t n) {
    char *d = vt_malloc(n + 1, "tokenizer piece");
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* ---- vocabulary ---- */

static int piece_order(const void *pa, const void *pb) {
    const vt_piece_ref *a = pa, *b = pb;
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->str, b->str, m);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Sets piece id (first writer wins: the model's vocabulary before added tokens). */
static int set_piece(vt_tokenizer *t, const char *path, int id, const char *s, size_t n) {
    if (id < 0 || id >= t->vocab_size) return vt_fail("%s: token id %d is outside [0, %d)", path, id, t->vocab_size);
    if (t->vocab[id]) return 0;
    if (!(t->vocab[id] = dup_bytes(s, n))) return -1;
    t->vocab_len[id] = (unsigned)n;
    if (n > t->max_token_length) t->max_token_length = (unsigned)n;
    return 0;
}

/* Ids index the piece table. They are dense in real files (the vocabulary, then the added tokens);
 * a few holes are allowed (they become empty pieces), an id far past the number of pieces is not:
 * a 558-byte file with an id of 61 million made a 490 MB table (found by fuzz_tokenizer_json). */
#define VT_HF_ID_HOLES 65536
/* One id (key: its vocabulary entry, else added token i), into *top. */
static int check_id(const char *path, json_t *v, json_int_t limit, json_int_t *top, const char *key, size_t i) {
    if (!json_is_integer(v)) return 0; /* refused with its own message where it is read */
    json_int_t id = json_integer_value(v);
    if (id >= 0 && id < limit) {
        if (id > *top) *top = id;
        return 0;
    }
    char what[64];
    if (key) snprintf(what, sizeof what, "model.vocab[\"%.40s\"]", key);
    else snprintf(what, sizeof what, "added_tokens[%zu].id", i);
    return vt_fail("%s: %s = %lld is outside [0, %lld): ids number the %lld pieces, with at most %d unused", path,
                   what, (long long)id, (long long)limit, (long long)(limit - VT_HF_ID_HOLES), VT_HF_ID_HOLES);
}

static int max_id(const char *path, json_t *vocab, json_t *added, int *top_out) {
    json_int_t top = -1, limit = (json_int_t)(json_object_size(vocab) + json_array_size(added)) + VT_HF_ID_HOLES;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) if (check_id(path, v, limit, &top, key, 0)) return -1;
    size_t i;
    json_array_foreach(added, i, v) if (check_id(path, json_object_get(v, "id"), limit, &top, NULL, i)) return -1;
    *top_out = (int)top;
    return 0;
}

static int read_vocab(vt_tokenizer *t, const char *path, json_t *vocab, json_t *added) {
    int top;
    if (max_id(path, vocab, added, &top)) return -1;
    if (top < 0) return vt_fail("%s: model.vocab is empty", path);
    t->vocab_size = top + 1;
    t->vocab = vt_calloc((size_t)t->vocab_size, sizeof *t->vocab, "tokenizer vocabulary");
    t->vocab_len = vt_calloc((size_t)t->vocab_size, sizeof *t->vocab_len, "tokenizer piece lengths");
    if (!t->vocab || !t->vocab_len) return -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v)) return vt_fail("%s: model.vocab[\"%s\"] is not an integer id", path, key);
        if (set_piece(t, path, (int)json_integer_value(v), key, strlen(key))) return -1;
    }
    return 0;
}

/* Holes in the id range become empty pieces; then the sorted index for lookup. */
static int index_vocab(vt_tokenizer *t) {
    t->sorted = vt_malloc((size_t)t->vocab_size * sizeof *t->sorted, "tokenizer index");
    if (!t->sorted) return -1;
    for (int i = 0; i < t->vocab_size; i++) {
        if (!t->vocab[i] && !(t->vocab[i] = dup_bytes("", 0))) return -1;
        t->sorted[i] = (vt_piece_ref){t->vocab[i], t->vocab_len[i], i};
    }
    qsort(t->sorted, (size_t)t->vocab_size, sizeof *t->sorted, piece_order);
    return 0;
}

/* ---- merges ---- */

static void merge_put(struct vt_hf_model *m, int a, int b, int rank, int id) {
    uint64_t key = (uint64_t)(a + 1) << 32 | (uint64_t)(b + 1);
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & m->merge_mask;
    while (m->merges[i].key && m->merges[i].key != key) i = (i + 1) & m->merge_mask;
    if (m->merges[i].key) return; /* a repeated merge keeps its first (best) rank */
    m->merges[i] = (vt_merge_slot){key, rank, id};
}

float *vt_hf_piece_scores(const vt_tokenizer *t) {
    float *scores = vt_malloc(sizeof *scores * (size_t)t->vocab_size, "piece scores");
    if (!scores) return NULL;
    for (int i = 0; i < t->vocab_size; i++) scores[i] = -1e9f;
    const struct vt_hf_model *m = t->hf;
    for (size_t i = 0; m->merges && i <= m->merge_mask; i++) {
        const vt_merge_slot *s = &m->merges[i];
        if (s->key && s->id >= 0 && s->id < t->vocab_size && -(float)s->rank > scores[s->id])
            scores[s->id] = -(float)s->rank;
    }
    return scores;
}

int vt_hf_merge_find(const struct vt_hf_model *m, int a, int b, int *rank, int *id) {
    if (!m->merges) return 0;
    uint64_t key = (uint64_t)(a + 1) << 32 | (uint64_t)(b + 1);
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & m->merge_mask;
    for (; m->merges[i].key; i = (i + 1) & m->merge_mask)
        if (m->merges[i].key == key) {
            *rank = m->merges[i].rank;
            *id = m->merges[i].id;
            return 1;
        }
    return 0;
}

/* Pieces a and b and their concatenation as ids; 0 when all three are in the vocabulary. */
static int merge_ids(const vt_tokenizer *t, const char *a, size_t la, const char *b, size_t lb, char *buf, int ids[3]) {
    ids[0] = vt_tokenizer_lookup(t, a, la);
    ids[1] = vt_tokenizer_lookup(t, b, lb);
    ids[2] = -1;
    if (ids[0] >= 0 && ids[1] >= 0 && la + lb <= 2 * (size_t)t->max_token_length) {
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        ids[2] = vt_tokenizer_lookup(t, buf, la + lb);
    }
    return ids[0] >= 0 && ids[1] >= 0 && ids[2] >= 0 ? 0 : -1;
}

/* Merge i, "a b" or ["a", "b"], as ids. A string with several spaces (pieces that contain a space)
 * splits at the space that leaves two pieces whose concatenation is a piece. */
static int resolve_merge(const vt_tokenizer *t, const char *path, size_t i, json_t *e, char *buf, int ids[3]) {
    if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
        json_is_string(json_array_get(e, 1))) {
        const char *a = json_string_value(json_array_get(e, 0)), *b = json_string_value(json_array_get(e, 1));
        if (merge_ids(t, a, strlen(a), b, strlen(b), buf, ids) == 0) return 0;
        return vt_fail("%s: model.merges[%zu] [\"%s\", \"%s\"]: %s is not in the vocabulary", path, i, a, b,
                       ids[0] < 0 ? "the first piece" : ids[1] < 0 ? "the second piece" : "their concatenation");
    }
    const char *s = json_string_value(e);
    if (!s || !strchr(s, ' ')) return vt_fail("%s: model.merges[%zu] is not \"a b\" or [\"a\", \"b\"]", path, i);
    int first_ids[3] = {-1, -1, -1}, tried = 0;
    for (const char *sp = strchr(s, ' '); sp; sp = strchr(sp + 1, ' ')) {
        if (merge_ids(t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), buf, ids) == 0) return 0;
        if (!tried++) memcpy(first_ids, ids, sizeof first_ids);
    }
    return vt_fail("%s: model.merges[%zu] \"%s\": %s is not in the vocabulary", path, i, s,
                   first_ids[0] < 0 ? "the first piece" : first_ids[1] < 0 ? "the second piece" : "their concatenation");
}

static int read_merges(vt_tokenizer *t, const char *path, json_t *merges) {
    struct vt_hf_model *m = t->hf;
    size_t n = json_array_size(merges), slots = 16;
    while (slots < 2 * n) slots *= 2;
    m->merges = vt_calloc(slots, sizeof *m->merges, "tokenizer merges");
    if (!m->merges) return -1;
    m->merge_mask = slots - 1;
    char *buf = vt_malloc(2 * (size_t)t->max_token_length + 1, "merge buffer");
    if (!buf) return -1;
    int rc = 0, ids[3];
    for (size_t i = 0; i < n && rc == 0; i++)
        if ((rc = resolve_merge(t, path, i, json_array_get(merges, i), buf, ids)) == 0)
            merge_put(m, ids[0], ids[1], (int)i, ids[2]);
    free(buf);
    return rc;
}

/* ---- normalizer ---- */

static char *dup_string(json_t *s) {
    return json_is_string(s) ? dup_bytes(json_string_value(s), strlen(json_string_value(s))) : NULL;
}

/* One normalizer (or a Sequence of them) onto m->norm. Only what LLaMA-family files use. */
static int read_normalizer(struct vt_hf_model *m, const char *path, json_t *n) {
    if (!n || json_is_null(n)) return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (type && strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(n, "normalizers"), i, e) if (read_normalizer(m, path, e)) return -1;
        return 0;
    }
    vt_norm_op op = {0};
    if (type && strcmp(type, "Prepend") == 0) {
        op = (vt_norm_op){VT_NORM_PREPEND, dup_string(json_object_get(n, "prepend")), NULL};
        if (!op.a) return vt_fail("%s: normalizer Prepend has no \"prepend\" string", path);
    } else if (type && strcmp(type, "Replace") == 0) {
        op = (vt_norm_op){VT_NORM_REPLACE, dup_string(json_object_get(json_object_get(n, "pattern"), "String")),
                          dup_string(json_object_get(n, "content"))};
        if (!op.a || !op.b || !op.a[0]) {
            free(op.a);
            free(op.b);
            return vt_fail("%s: normalizer Replace needs a String pattern and content (regex patterns are not "
                           "supported)", path);
        }
    } else {
        return vt_fail("%s: normalizer \"%s\" is not supported (supported: Sequence, Prepend, Replace)", path,
                       type ? type : "(no type)");
    }
    vt_norm_op *grown = realloc(m->norm, (m->n_norm + 1) * sizeof *grown);
    if (!grown) return vt_fail("out of memory for the normalizer");
    m->norm = grown;
    m->norm[m->n_norm++] = op;
    return 0;
}

/* Each Replace whose content is longer than its pattern multiplies the text's length, and a chain
 * of them multiplies those factors: a few hundred bytes of tokenizer.json could make every text
 * encoded gigabytes long. Real files replace a space by "▁" (3x); over 16x is refused. */
#define VT_HF_MAX_GROWTH 16
static int check_growth(const struct vt_hf_model *m, const char *path) {
    double growth = 1.0;
    for (size_t i = 0; i < m->n_norm; i++) {
        const vt_norm_op *op = &m->norm[i];
        double r = op->kind == VT_NORM_REPLACE ? (double)strlen(op->b) / (double)strlen(op->a) : 1.0;
        if (r > 1.0) growth *= r;
    }
    if (growth > VT_HF_MAX_GROWTH)
        return vt_fail("%s: the normalizer's Replace steps can make a text %.3g times longer (at most %d accepted)",
                       path, growth, VT_HF_MAX_GROWTH);
    return 0;
}

/* ---- pre-tokenizer ---- */

static int compile_regex(const char *path, const char *pattern, int literal, void **out) {
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return vt_fail("%s: pre-tokenizer pattern /%s/ at offset %zu: %s", path, pattern, (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* faster when available; matching works either way */
    *out = re;
    return 0;
}

static int split_behavior(const char *path, const char *b) {
    static const char *names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext"};
    for (int i = 0; i < 4; i++)
        if (b && strcmp(b, names[i]) == 0) return i;
    return vt_fail("%s: Split behavior \"%s\" is not supported (Isolated, Removed, MergedWithPrevious, "
                   "MergedWithNext)", path, b ? b : "(none)");
}

static int read_split(vt_pre_op *op, const char *path, json_t *p) {
    json_t *pat = json_object_get(p, "pattern");
    const char *re = json_string_value(json_object_get(pat, "Regex"));
    const char *lit = json_string_value(json_object_get(pat, "String"));
    if (json_is_true(json_object_get(p, "invert"))) return vt_fail("%s: Split with invert is not supported", path);
    if ((op->behavior = split_behavior(path, json_string_value(json_object_get(p, "behavior")))) < 0) return -1;
    if (!re && !lit) return vt_fail("%s: Split has no Regex or String pattern", path);
    if (re && !(op->pattern = dup_bytes(re, strlen(re)))) return -1;
    return compile_regex(path, re ? re : lit, !re, &op->re);
}

/* s is exactly one valid UTF-8 encoded character. */
static int one_utf8_char(const char *s) {
    size_t n = strlen(s);
    return n > 0 && vt_utf8_sequence((const unsigned char *)s, n) == n;
}

static int read_metaspace(vt_pre_op *op, const char *path, json_t *p) {
    op->replacement = dup_string(json_object_get(p, "replacement"));
    if (!op->replacement) return vt_fail("%s: Metaspace has no replacement", path);
    /* one character, as Hugging Face's own reader requires: a longer one holding spaces would grow
     * the text at each Metaspace of a sequence (found by fuzz_tokenizer_json) */
    if (!one_utf8_char(op->replacement))
        return vt_fail("%s: Metaspace replacement \"%.40s\" is not one character", path, op->replacement);
    const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
    json_t *aps = json_object_get(p, "add_prefix_space");
    op->prepend = scheme ? (strcmp(scheme, "always") == 0   ? VT_PREPEND_ALWAYS
                            : strcmp(scheme, "first") == 0  ? VT_PREPEND_FIRST
                                                             : VT_PREPEND_NEVER)
                         : (!aps || json_is_true(aps)) ? VT_PREPEND_ALWAYS : VT_PREPEND_NEVER;
    json_t *split = json_object_get(p, "split");
    op->split = !split || json_is_true(split);
    return 0;
}

static int read_pre_tokenizer(struct vt_hf_model *m, const char *path, json_t *p) {
    if (!p || json_is_null(p)) return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (type && strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(p, "pretokenizers"), i, e) if (read_pre_tokenizer(m, path, e)) return -1;
        return 0;
    }
    vt_pre_op op = {0};
    int rc;
    if (type && strcmp(type, "ByteLevel") == 0) {
        op.kind = VT_PRE_BYTELEVEL;
        op.prepend = json_is_true(json_object_get(p, "add_prefix_space"));
        json_t *use = json_object_get(p, "use_regex");
        if (!use || json_is_true(use)) {
            op.pattern = dup_bytes(VT_GPT2_PATTERN, strlen(VT_GPT2_PATTERN));
            rc = op.pattern ? compile_regex(path, VT_GPT2_PATTERN, 0, &op.re) : -1;
        } else {
            rc = 0;
        }
        m->byte_level = 1;
    } else if (type && strcmp(type, "Split") == 0) {
        op.kind = VT_PRE_SPLIT;
        rc = read_split(&op, path, p);
    } else if (type && strcmp(type, "Metaspace") == 0) {
        op.kind = VT_PRE_METASPACE;
        rc = read_metaspace(&op, path, p);
    } else {
        return vt_fail("%s: pre_tokenizer \"%s\" is not supported (supported: Sequence, ByteLevel, Split, Metaspace)",
                       path, type ? type : "(no type)");
    }
    vt_pre_op *grown = rc ? NULL : realloc(m->pre, (m->n_pre + 1) * sizeof *grown);
    if (!grown) {
        if (op.re) pcre2_code_free(op.re);
        free(op.replacement);
        free(op.pattern);
        return rc ? -1 : vt_fail("out of memory for the pre-tokenizer");
    }
    m->pre = grown;
    m->pre[m->n_pre++] = op;
    return 0;
}

/* ---- added tokens ---- */

static int read_added_token(vt_tokenizer *t, const char *path, size_t i, json_t *a, vt_added_token *out) {
    json_t *id = json_object_get(a, "id");
    const char *content = json_string_value(json_object_get(a, "content"));
    if (!json_is_integer(id) || !content || !content[0])
        return vt_fail("%s: added_tokens[%zu] needs an integer id and a non-empty content", path, i);
    *out = (vt_added_token){.id = (int)json_integer_value(id),
                            .normalized = json_is_true(json_object_get(a, "normalized")),
                            .lstrip = json_is_true(json_object_get(a, "lstrip")),
                            .rstrip = json_is_true(json_object_get(a, "rstrip")),
                            .single_word = json_is_true(json_object_get(a, "single_word")),
                            .special = json_is_true(json_object_get(a, "special"))};
    if (set_piece(t, path, out->id, content, strlen(content))) return -1;
    /* A normalized token is matched in normalized text, so its content is normalized too. */
    out->content = out->normalized ? vt_hf_normalize(t->hf, content, strlen(content), &out->len)
                                   : dup_bytes(content, out->len = strlen(content));
    return out->content ? 0 : -1;
}

static int read_added_tokens(vt_tokenizer *t, const char *path, json_t *added) {
    struct vt_hf_model *m = t->hf;
    size_t n = json_array_size(added), i;
    json_t *a;
    m->added = vt_calloc(n ? n : 1, sizeof *m->added, "added tokens");
    if (!m->added) return -1;
    json_array_foreach(added, i, a) {
        if (read_added_token(t, path, i, a, &m->added[i])) return -1;
        m->n_added++;
    }
    return 0;
}

/* ---- decoded text, BOS and EOS ---- */

static int is_added(const struct vt_hf_model *m, int id) {
    for (size_t i = 0; i < m->n_added; i++)
        if (m->added[i].id == id) return 1;
    return 0;
}

/* Piece id as text: byte-level characters back to their bytes, or "▁" back to a space. */
static char *decode_text(const vt_tokenizer *t, int id, const int *inverse) {
    const unsigned char *s = (const unsigned char *)t->vocab[id];
    size_t n = t->vocab_len[id], k = 0;
    char *out = vt_malloc(n + 1, "decoded piece");
    if (!out) return NULL;
    int raw = is_added(t->hf, id);
    for (size_t i = 0; i < n;) {
        unsigned cp = s[i], len = 1;
        if (s[i] >= 0xC0 && s[i] < 0xE0 && i + 1 < n) cp = (s[i] & 31u) << 6 | (s[i + 1] & 63u), len = 2;
        if (!raw && t->hf->byte_level && cp < 512 && inverse[cp] >= 0) {
            out[k++] = (char)inverse[cp];
        } else if (!raw && !t->hf->byte_level && n - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            out[k++] = ' ';
            len = 3;
        } else {
            memcpy(out + k, s + i, len);
            k += len;
        }
        i += len;
    }
    out[k] = '\0';
    return out;
}

static int fill_text(vt_tokenizer *t) {
    int inverse[512];
    for (int i = 0; i < 512; i++) inverse[i] = -1;
    for (int b = 0; b < 256; b++) inverse[vt_byte_level_char((unsigned char)b)] = b;
    t->text = vt_calloc((size_t)t->vocab_size, sizeof *t->text, "decoded pieces");
    if (!t->text) return -1;
    for (int i = 0; i < t->vocab_size; i++)
        if (!(t->text[i] = decode_text(t, i, inverse))) return -1;
    return 0;
}

static int token_id(const vt_tokenizer *t, json_t *tok) {
    const char *s = json_is_string(tok) ? json_string_value(tok) : json_string_value(json_object_get(tok, "content"));
    return s ? vt_tokenizer_lookup(t, s, strlen(s)) : -1;
}

/* BOS/EOS and whether to add BOS: tokenizer_config.json beside the file when it says, else the
 * post-processor's template (a special token before the sequence is a BOS). */
static void read_specials(vt_tokenizer *t, const char *path, json_t *root) {
    json_t *single = json_object_get(json_object_get(root, "post_processor"), "single");
    json_t *first = json_object_get(json_array_get(single, 0), "SpecialToken");
    t->bos_id = first ? token_id(t, json_object_get(first, "id")) : -1;
    t->add_bos = t->bos_id >= 0;
    t->eos_id = -1;
    static const char *eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>"};
    for (int i = 0; i < 3 && t->eos_id < 0; i++) t->eos_id = vt_tokenizer_lookup(t, eos_names[i], strlen(eos_names[i]));
    char cfg_path[VT_PATH_MAX];
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path) : 1;
    snprintf(cfg_path, sizeof cfg_path, "%.*s/tokenizer_config.json", dir_len, slash ? path : ".");
    json_t *cfg = json_load_file(cfg_path, 0, NULL);
    if (!cfg) return; /* optional: tokenizer.json alone is a complete tokenizer */
    int bos = token_id(t, json_object_get(cfg, "bos_token")), eos = token_id(t, json_object_get(cfg, "eos_token"));
    if (bos >= 0) t->bos_id = bos;
    if (eos >= 0) t->eos_id = eos;
    json_t *add = json_object_get(cfg, "add_bos_token");
    if (json_is_boolean(add)) t->add_bos = json_is_true(add) && t->bos_id >= 0;
    json_decref(cfg);
}

/* ---- the whole file ---- */

static const char *nonempty(json_t *s) {
    return json_is_string(s) && json_string_value(s)[0] ? json_string_value(s) : NULL;
}

/* The model object: BPE with a vocab object and a merges array, and nothing this encoder ignores. */
static int check_model(const char *path, json_t *model) {
    if (!json_is_object(model)) return vt_fail("%s: no \"model\" object; not a tokenizer.json", path);
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE") != 0)
        return vt_fail("%s: model type \"%s\" is not supported (only BPE)", path, type);
    if (!json_is_object(json_object_get(model, "vocab"))) return vt_fail("%s: model.vocab is missing", path);
    if (!json_is_array(json_object_get(model, "merges"))) return vt_fail("%s: model.merges is missing", path);
    if (nonempty(json_object_get(model, "continuing_subword_prefix")) ||
        nonempty(json_object_get(model, "end_of_word_suffix")))
        return vt_fail("%s: BPE continuing_subword_prefix/end_of_word_suffix are not supported", path);
    return 0;
}

static void find_byte_pieces(vt_tokenizer *t) {
    struct vt_hf_model *m = t->hf;
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        m->byte_id[b] = vt_tokenizer_lookup(t, s, 6);
        size_t n = vt_utf8_put(vt_byte_level_char((unsigned char)b), s);
        m->byte_char_id[b] = vt_tokenizer_lookup(t, s, n);
        t->byte_pieces[2 * b] = (char)b;
        t->byte_pieces[2 * b + 1] = '\0';
    }
}

static int load_parts(vt_tokenizer *t, const char *path, json_t *root) {
    json_t *model = json_object_get(root, "model"), *added = json_object_get(root, "added_tokens");
    if (check_model(path, model)) return -1;
    struct vt_hf_model *m = t->hf;
    m->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    m->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    m->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    if (read_normalizer(m, path, json_object_get(root, "normalizer")) || check_growth(m, path) ||
        read_pre_tokenizer(m, path, json_object_get(root, "pre_tokenizer")) ||
        read_vocab(t, path, json_object_get(model, "vocab"), added) || read_added_tokens(t, path, added) ||
        index_vocab(t) || read_merges(t, path, json_object_get(model, "merges")) || fill_text(t))
        return -1;
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    t->unk_id = unk ? vt_tokenizer_lookup(t, unk, strlen(unk)) : -1;
    if (unk && t->unk_id < 0) return vt_fail("%s: model.unk_token \"%s\" is not in the vocabulary", path, unk);
    find_byte_pieces(t);
    t->space_id = -1;
    t->sp_style = !m->byte_level;
    read_specials(t, path, root);
    return 0;
}

int vt_hf_load(vt_tokenizer *t, const char *path) {
    memset(t, 0, sizeof *t);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        if (err.line < 0) return vt_fail("%s: cannot read tokenizer: %s", path, err.text);
        return vt_fail("%s: not valid JSON (line %d, column %d: %s)", path, err.line, err.column, err.text);
    }
    t->hf = vt_calloc(1, sizeof *t->hf, "tokenizer model");
    int rc = t->hf ? load_parts(t, path, root) : -1;
    json_decref(root);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", vt_error());
        if (t->hf) vt_hf_free(t);
        return vt_fail("%s", msg);
    }
    return 0;
}

void vt_hf_free(vt_tokenizer *t) {
    struct vt_hf_model *m = t->hf;
    for (int i = 0; t->vocab && i < t->vocab_size; i++) free(t->vocab[i]);
    for (int i = 0; t->text && i < t->vocab_size; i++) free(t->text[i]);
    free(t->vocab);
    free(t->text);
    free(t->vocab_len);
    free(t->sorted);
    for (size_t i = 0; i < m->n_added; i++) free(m->added[i].content);
    for (size_t i = 0; i < m->n_norm; i++) free(m->norm[i].a), free(m->norm[i].b);
    for (size_t i = 0; i < m->n_pre; i++) {
        if (m->pre[i].re) pcre2_code_free(m->pre[i].re);
        free(m->pre[i].replacement);
        free(m->pre[i].pattern);
    }
    free(m->added);
    free(m->norm);
    free(m->pre);
    free(m->merges);
    free(m);
    memset(t, 0, sizeof *t);
}
