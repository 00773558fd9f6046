/* gguf_writer.c — GGUF export (see gguf_writer.h). */
#include "io/gguf_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/hf_tensors.h"
#include "io/tokenizer_hf.h"
#include "util/error.h"
#include "util/fsutil.h"

int vt_ggml_type_parse(const char *s, uint32_t *type) {
    static const struct { const char *name; uint32_t type; } names[] = {
        {"f32", VT_GGML_F32}, {"f16", VT_GGML_F16}, {"bf16", VT_GGML_BF16}, {"q8_0", VT_GGML_Q8_0}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(s, names[i].name)) {
            *type = names[i].type;
            return 0;
        }
    return vt_fail("'%s' is not a GGUF tensor type (f32, f16, bf16 or q8_0)", s);
}

/* One tensor to write: its data comes from src (rows permuted for q/k), or is all zeros. */
typedef struct {
    char name[64];
    int ndim;
    uint64_t ne[2];
    uint32_t type;
    const float *src; /* NULL: zeros */
    int rope_heads;   /* > 0: rotate-half q/k rows to store interleaved */
    uint64_t offset;
} out_tensor;

typedef struct {
    FILE *f;
    const char *path;
    out_tensor *t;
    int n;
    int heads[4096], kv[4096], ffn[4096]; /* sizes as written (padded, see gguf_writer.h) */
    int uniform;
} writer;

static void w_u32(writer *w, uint32_t v) { fwrite(&v, 4, 1, w->f); }
static void w_u64(writer *w, uint64_t v) { fwrite(&v, 8, 1, w->f); }
static void w_f32(writer *w, float v) { fwrite(&v, 4, 1, w->f); }
static void w_bytes(writer *w, const char *s, uint64_t n) {
    w_u64(w, n);
    fwrite(s, 1, n, w->f);
}
static void w_key(writer *w, const char *key, uint32_t type) {
    w_bytes(w, key, strlen(key));
    w_u32(w, type);
}
static void kv_u32(writer *w, const char *key, uint32_t v) { w_key(w, key, VT_GGUF_U32), w_u32(w, v); }
static void kv_f32(writer *w, const char *key, float v) { w_key(w, key, VT_GGUF_F32), w_f32(w, v); }
static void kv_str(writer *w, const char *key, const char *s) { w_key(w, key, VT_GGUF_STRING), w_bytes(w, s, strlen(s)); }
static void kv_bool(writer *w, const char *key, int v) {
    w_key(w, key, VT_GGUF_BOOL);
    fputc(v ? 1 : 0, w->f);
}
static void kv_arr_i32(writer *w, const char *key, const int *v, int n) {
    w_key(w, key, VT_GGUF_ARRAY);
    w_u32(w, VT_GGUF_I32);
    w_u64(w, (uint64_t)n);
    for (int i = 0; i < n; i++) w_u32(w, (uint32_t)v[i]);
}

/* The piece as sentencepiece writes it: ' ' as '▁'; llama2.c's "\n<s>\n" markers unwrapped. */
static void w_piece(writer *w, const char *s, unsigned len) {
    if (len > 2 && s[0] == '\n' && s[len - 1] == '\n') s++, len -= 2;
    uint64_t n = 0;
    for (unsigned i = 0; i < len; i++) n += s[i] == ' ' ? 3 : 1;
    w_u64(w, n);
    for (unsigned i = 0; i < len; i++)
        if (s[i] == ' ') fwrite("\xe2\x96\x81", 1, 3, w->f);
        else fputc(s[i], w->f);
}

static int token_type(const vt_tokenizer *t, int id) {
    const char *s = t->vocab[id];
    if (id == (t->unk_id >= 0 ? t->unk_id : 0)) return 2; /* unknown */
    if (id == t->bos_id || id == t->eos_id) return 3;     /* control */
    if (t->vocab_len[id] == 6 && !strncmp(s, "<0x", 3) && s[5] == '>') return 6; /* byte */
    return 1;                                              /* normal */
}

/* The vocabulary as llama.cpp's sentencepiece-style "llama" model: pieces, scores (a tokenizer.json's
 * from its merge ranks, so the same pairs merge first), types and special ids. */
static void write_tokenizer(writer *w, const vt_tokenizer *t, const float *scores) {
    kv_str(w, "tokenizer.ggml.model", "llama");
    w_key(w, "tokenizer.ggml.tokens", VT_GGUF_ARRAY);
    w_u32(w, VT_GGUF_STRING);
    w_u64(w, (uint64_t)t->vocab_size);
    for (int i = 0; i < t->vocab_size; i++) w_piece(w, t->vocab[i], t->vocab_len[i]);
    w_key(w, "tokenizer.ggml.scores", VT_GGUF_ARRAY);
    w_u32(w, VT_GGUF_F32);
    w_u64(w, (uint64_t)t->vocab_size);
    for (int i = 0; i < t->vocab_size; i++) w_f32(w, scores[i]);
    w_key(w, "tokenizer.ggml.token_type", VT_GGUF_ARRAY);
    w_u32(w, VT_GGUF_I32);
    w_u64(w, (uint64_t)t->vocab_size);
    for (int i = 0; i < t->vocab_size; i++) w_u32(w, (uint32_t)token_type(t, i));
    kv_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)(t->unk_id >= 0 ? t->unk_id : 0));
    kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)(t->bos_id >= 0 ? t->bos_id : VT_TOKEN_BOS));
    kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(t->eos_id >= 0 ? t->eos_id : VT_TOKEN_EOS));
    kv_bool(w, "tokenizer.ggml.add_bos_token", 1);
    kv_bool(w, "tokenizer.ggml.add_eos_token", 0);
}

/* Byte-level (GPT-2/LLaMA-3 style) tokenizer.json as llama.cpp's "gpt2" model. llama.cpp splits
 * text with its own code for each pre-tokenizer it knows by name (tokenizer.ggml.pre), so the
 * regex is mapped to the name convert_hf_to_gguf.py gives it; others are refused. */
static const struct {
    const char *pattern, *name;
} PRE_NAMES[] = {
    {VT_GPT2_PATTERN, "gpt-2"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "llama-bpe"},
};

/* The tokenizer.ggml.pre name of a byte-level model, or NULL with an error: no normalizer, one
 * regex (ByteLevel's own or an Isolated Split), no add_prefix_space, a regex llama.cpp knows. */
static const char *byte_level_pre_name(const struct vt_hf_model *m, const char *path) {
    const char *pattern = NULL;
    if (m->n_norm) return vt_fail("%s: a byte-level tokenizer with a normalizer has no llama.cpp equivalent", path), NULL;
    for (size_t i = 0; i < m->n_pre; i++) {
        const vt_pre_op *op = &m->pre[i];
        if (op->kind == VT_PRE_METASPACE || (op->kind == VT_PRE_BYTELEVEL && op->prepend) ||
            (op->kind == VT_PRE_SPLIT && (op->behavior != VT_SPLIT_ISOLATED || !op->pattern)) || (op->pattern && pattern))
            return vt_fail("%s: GGUF export takes a byte-level pre-tokenizer of one regex (ByteLevel, or an Isolated "
                           "Split then ByteLevel without regex) and no add_prefix_space; this one differs (step %zu)",
                           path, i),
                   NULL;
        if (op->pattern) pattern = op->pattern;
    }
    for (size_t i = 0; pattern && i < sizeof PRE_NAMES / sizeof PRE_NAMES[0]; i++)
        if (!strcmp(pattern, PRE_NAMES[i].pattern)) return PRE_NAMES[i].name;
    vt_fail("%s: llama.cpp has no pre-tokenizer name known here for the regex /%s/ (known: GPT-2's as \"gpt-2\", "
            "LLaMA-3's as \"llama-bpe\"); export as an HF directory instead",
            path, pattern ? pattern : "(none)");
    return NULL;
}

typedef struct {
    int rank, a, b;
} merge_ref;

static int cmp_merge(const void *x, const void *y) {
    const merge_ref *p = x, *q = y;
    return (p->rank > q->rank) - (p->rank < q->rank);
}

/* The merges in rank order, from the loader's hash table. *n receives their count. */
static merge_ref *sorted_merges(const struct vt_hf_model *m, size_t *n) {
    *n = 0;
    merge_ref *r = vt_malloc((m->merge_mask + 1) * sizeof *r, "tokenizer merges");
    if (!r) return NULL;
    for (size_t i = 0; i <= m->merge_mask; i++) {
        uint64_t k = m->merges[i].key;
        if (k) r[(*n)++] = (merge_ref){m->merges[i].rank, (int)(k >> 32) - 1, (int)(k & 0xffffffffu) - 1};
    }
    qsort(r, *n, sizeof *r, cmp_merge);
    return r;
}

/* 4 (user defined) for an added token that is not special, 3 (control) for a special one. */
static int bpe_token_type(const struct vt_hf_model *m, int id) {
    for (size_t i = 0; i < m->n_added; i++)
        if (m->added[i].id == id) return m->added[i].special ? 3 : 4;
    return 1;
}

/* The vocabulary as llama.cpp's "gpt2" model: tokenizer.json's pieces as they are (byte
 * characters included), types, merges "a b" in rank order, the pre-tokenizer's name. */
static void write_tokenizer_bpe(writer *w, const vt_tokenizer *t, const merge_ref *mr, size_t n_merges, const char *pre) {
    kv_str(w, "tokenizer.ggml.model", "gpt2");
    kv_str(w, "tokenizer.ggml.pre", pre);
    w_key(w, "tokenizer.ggml.tokens", VT_GGUF_ARRAY);
    w_u32(w, VT_GGUF_STRING);
    w_u64(w, (uint64_t)t->vocab_size);
    for (int i = 0; i < t->vocab_size; i++) w_bytes(w, t->vocab[i], t->vocab_len[i]);
    w_key(w, "tokenizer.ggml.token_type", VT_GGUF_ARRAY);
    w_u32(w, VT_GGUF_I32);
    w_u64(w, (uint64_t)t->vocab_size);
    for (int i = 0; i < t->vocab_size; i++) w_u32(w, (uint32_t)bpe_token_type(t->hf, i));
    w_key(w, "tokenizer.ggml.merges", VT_GGUF_ARRAY);
    w_u32(w, VT_GGUF_STRING);
    w_u64(w, (uint64_t)n_merges);
    for (size_t i = 0; i < n_merges; i++) {
        w_u64(w, (uint64_t)t->vocab_len[mr[i].a] + 1 + t->vocab_len[mr[i].b]);
        fwrite(t->vocab[mr[i].a], 1, t->vocab_len[mr[i].a], w->f);
        fputc(' ', w->f);
        fwrite(t->vocab[mr[i].b], 1, t->vocab_len[mr[i].b], w->f);
    }
    int bos = t->bos_id >= 0 ? t->bos_id : t->eos_id, eos = t->eos_id >= 0 ? t->eos_id : t->bos_id;
    kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    kv_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos);
    kv_bool(w, "tokenizer.ggml.add_eos_token", 0);
}

#define N_ARCH_KV 14 /* the keys write_arch writes */
#define N_TOK_KV 9   /* the keys write_tokenizer and write_tokenizer_bpe write */

static void write_arch(writer *w, const vt_config *c) {
    const char *a = w->uniform ? "llama" : "deci";
    char key[96];
#define KEY(name) (snprintf(key, sizeof key, "%s.%s", a, name), key)
    kv_str(w, "general.architecture", a);
    kv_str(w, "general.name", "vtrans-dist");
    kv_u32(w, "general.alignment", VT_GGUF_DEFAULT_ALIGNMENT);
    kv_u32(w, KEY("context_length"), (uint32_t)c->seq_len);
    kv_u32(w, KEY("embedding_length"), (uint32_t)c->dim);
    kv_u32(w, KEY("block_count"), (uint32_t)c->n_layers);
    if (w->uniform) {
        kv_u32(w, KEY("feed_forward_length"), (uint32_t)w->ffn[0]);
        kv_u32(w, KEY("attention.head_count"), (uint32_t)w->heads[0]);
        kv_u32(w, KEY("attention.head_count_kv"), (uint32_t)w->kv[0]);
    } else {
        kv_arr_i32(w, KEY("feed_forward_length"), w->ffn, c->n_layers);
        kv_arr_i32(w, KEY("attention.head_count"), w->heads, c->n_layers);
        kv_arr_i32(w, KEY("attention.head_count_kv"), w->kv, c->n_layers);
    }
    kv_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
    kv_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    kv_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
    kv_f32(w, KEY("rope.freq_base"), c->rope_theta);
    kv_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
#undef KEY
}

/* The sizes written per layer, padded where llama.cpp's deci graph needs it (gguf_writer.h). */
static int plan_sizes(writer *w, const vt_config *c) {
    if (c->n_layers > VT_MAX_LAYERS)
        return vt_fail("%s: %d layers is more than GGUF export handles (%d)", w->path, c->n_layers, VT_MAX_LAYERS);
    w->uniform = 1;
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l], *s0 = &c->layers[0];
        w->heads[l] = s->n_heads, w->kv[l] = s->n_kv_heads, w->ffn[l] = s->ffn;
        if (s->n_heads != s0->n_heads || s->n_kv_heads != s0->n_kv_heads || s->ffn != s0->ffn || !s->n_heads || !s->ffn)
            w->uniform = 0;
    }
    if (w->uniform) return 0;
    if (w->heads[0] == 0) w->heads[0] = w->kv[0] = 1; /* zero head: llama.cpp takes the head size from layer 0 */
    for (int l = 0; l < c->n_layers; l++)
        if (c->layers[l].n_heads && !w->ffn[l]) w->ffn[l] = 1; /* zero FFN keeps the attention output */
    return 0;
}

static void add(writer *w, vt_hf_kind kind, int layer, uint64_t rows, uint64_t cols, const float *src, uint32_t type,
                int rope_heads) {
    out_tensor *t = &w->t[w->n++];
    vt_gguf_tensor_name(kind, layer, t->name, (int)sizeof t->name);
    t->ndim = cols ? 2 : 1;
    t->ne[0] = cols ? cols : rows;
    t->ne[1] = cols ? rows : 1;
    t->type = !cols ? VT_GGML_F32 : type == VT_GGML_Q8_0 && t->ne[0] % VT_Q8_0_BLOCK ? VT_GGML_F16 : type;
    t->src = src;
    t->rope_heads = rope_heads;
}

/* The file stores o_proj's and down_proj's biases only (blk.N.attn_output.bias, ffn_down.bias, which
 * llama.cpp's llama and deci architectures load when present): the others must be zero, as the
 * re-fit leaves them (prune/refit.h). */
static int check_biases(const writer *w, const vt_model *m) {
    const vt_config *c = &m->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_weights *lw = &m->layers[l];
        const vt_layer_shape *s = &c->layers[l];
        size_t nq = lw->b_qkv ? (size_t)(s->n_heads + 2 * s->n_kv_heads) * c->head_dim : 0;
        size_t ng = lw->b_gate_up ? 2 * (size_t)s->ffn : 0;
        for (size_t i = 0; i < nq; i++)
            if (lw->b_qkv[i] != 0.0f)
                return vt_fail("%s: layer %d has non-zero q/k/v biases; GGUF export writes o_proj's and down_proj's "
                               "biases only", w->path, l);
        for (size_t i = 0; i < ng; i++)
            if (lw->b_gate_up[i] != 0.0f)
                return vt_fail("%s: layer %d has non-zero gate/up biases; GGUF export writes o_proj's and "
                               "down_proj's biases only", w->path, l);
    }
    return 0;
}

static int plan_tensors(writer *w, const vt_model *m, uint32_t type) {
    if (check_biases(w, m)) return -1;
    const vt_config *c = &m->cfg;
    w->t = vt_calloc((size_t)(11 * c->n_layers + 3), sizeof *w->t, "GGUF tensor list");
    if (!w->t) return -1;
    uint64_t d = (uint64_t)c->dim, hd = (uint64_t)c->head_dim;
    int half = c->rope == VT_ROPE_HALF;
    add(w, VT_HF_EMBED, -1, (uint64_t)c->vocab, d, m->embed, type, 0);
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_weights *lw = &m->layers[l];
        int real_attn = c->layers[l].n_heads > 0, real_ffn = c->layers[l].ffn > 0;
        uint64_t q = (uint64_t)w->heads[l] * hd, kv = (uint64_t)w->kv[l] * hd, f = (uint64_t)w->ffn[l];
        if (w->heads[l]) {
            add(w, VT_HF_ATTN_NORM, l, d, 0, real_attn ? lw->attn_norm : NULL, type, 0);
            add(w, VT_HF_WQ, l, q, d, real_attn ? lw->wq : NULL, type, half ? w->heads[l] : 0);
            add(w, VT_HF_WK, l, kv, d, real_attn ? lw->wk : NULL, type, half ? w->kv[l] : 0);
            add(w, VT_HF_WV, l, kv, d, real_attn ? lw->wv : NULL, type, 0);
            add(w, VT_HF_WO, l, d, q, real_attn ? lw->wo : NULL, type, 0);
            if (c->attn_bias) add(w, VT_HF_BO, l, d, 0, real_attn ? lw->bo : NULL, type, 0);
        }
        if (w->ffn[l]) {
            add(w, VT_HF_FFN_NORM, l, d, 0, real_ffn ? lw->ffn_norm : NULL, type, 0);
            add(w, VT_HF_GATE, l, f, d, real_ffn ? lw->w_gate : NULL, type, 0);
            add(w, VT_HF_UP, l, f, d, real_ffn ? lw->w_up : NULL, type, 0);
            add(w, VT_HF_DOWN, l, d, f, real_ffn ? lw->w_down : NULL, type, 0);
            if (c->mlp_bias) add(w, VT_HF_BDOWN, l, d, 0, real_ffn ? lw->b_down : NULL, type, 0);
        }
    }
    add(w, VT_HF_FINAL_NORM, -1, d, 0, m->final_norm, type, 0);
    if (!c->tied) add(w, VT_HF_LM_HEAD, -1, (uint64_t)c->vocab, d, m->lm_head, type, 0);
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        w->t[i].offset = off;
        off += (vt_ggml_row_bytes(w->t[i].type, w->t[i].ne[0] * w->t[i].ne[1]) + VT_GGUF_DEFAULT_ALIGNMENT - 1) /
               VT_GGUF_DEFAULT_ALIGNMENT * VT_GGUF_DEFAULT_ALIGNMENT;
    }
    return 0;
}

static void pad_to(writer *w, uint64_t align) {
    long at = ftell(w->f);
    while (at >= 0 && (uint64_t)at % align) fputc(0, w->f), at++;
}

/* The fp32 rows of a tensor as stored: zeros, a copy, or q/k rows in interleaved order. */
static int tensor_data(const out_tensor *t, uint64_t n, const float **out, float **owned) {
    *owned = NULL;
    if (t->src && !t->rope_heads) {
        *out = t->src;
        return 0;
    }
    float *buf = vt_calloc(n, sizeof *buf, "GGUF tensor staging");
    if (!buf) return -1;
    if (t->src) {
        int rows = (int)t->ne[1], hd = rows / t->rope_heads, *order = malloc(sizeof(int) * (size_t)rows);
        if (!order) return free(buf), vt_fail("out of memory staging %s", t->name);
        vt_rope_half_row_order(t->rope_heads, hd, order);
        for (int j = 0; j < rows; j++) memcpy(buf + (size_t)order[j] * t->ne[0], t->src + (size_t)j * t->ne[0], t->ne[0] * 4);
        free(order);
    }
    *out = *owned = buf;
    return 0;
}

static int write_data(writer *w) {
    for (int i = 0; i < w->n; i++) {
        const out_tensor *t = &w->t[i];
        uint64_t n = t->ne[0] * t->ne[1], bytes = vt_ggml_row_bytes(t->type, n);
        const float *src = NULL;
        float *owned = NULL;
        unsigned char *dst = malloc(bytes ? bytes : 1);
        if (!dst || tensor_data(t, n, &src, &owned)) return free(dst), vt_fail("%s: out of memory at %s", w->path, t->name);
        pad_to(w, VT_GGUF_DEFAULT_ALIGNMENT);
        vt_ggml_from_f32(dst, src, t->type, n);
        fwrite(dst, 1, bytes, w->f);
        free(dst);
        free(owned);
        if (ferror(w->f)) return vt_fail("%s: write failed at tensor %s: %s", w->path, t->name, strerror(errno));
    }
    return 0;
}

static int write_all(writer *w, const vt_model *m, const vt_tokenizer *tok) {
    const char *pre = NULL;
    float *scores = NULL;
    merge_ref *mr = NULL;
    size_t n_merges = 0;
    if (tok->hf && tok->hf->byte_level) {
        if (!(pre = byte_level_pre_name(tok->hf, w->path)) || !(mr = sorted_merges(tok->hf, &n_merges))) return -1;
    } else if (!tok->scores && !(scores = vt_hf_piece_scores(tok))) {
        return -1;
    }
    fwrite("GGUF", 1, 4, w->f);
    w_u32(w, 3);
    w_u64(w, (uint64_t)w->n);
    w_u64(w, N_ARCH_KV + N_TOK_KV);
    write_arch(w, &m->cfg);
    if (pre) write_tokenizer_bpe(w, tok, mr, n_merges, pre);
    else write_tokenizer(w, tok, tok->scores ? tok->scores : scores);
    free(scores);
    free(mr);
    for (int i = 0; i < w->n; i++) {
        const out_tensor *t = &w->t[i];
        w_bytes(w, t->name, strlen(t->name));
        w_u32(w, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) w_u64(w, t->ne[d]);
        w_u32(w, t->type);
        w_u64(w, t->offset);
    }
    return write_data(w);
}

int vt_gguf_write(const vt_model *m, const vt_tokenizer *tok, uint32_t type, const char *path, int overwrite) {
    if (!m->has_embed || !m->has_head || m->layer_begin != 0 || m->layer_end != m->cfg.n_layers)
        return vt_fail("%s: GGUF export needs the whole model in one process", path);
    if (!tok) return vt_fail("%s: GGUF export needs the model's tokenizer (llama.cpp reads it from the file)", path);
    if (tok->vocab_size != m->cfg.vocab)
        return vt_fail("%s: the tokenizer has %d tokens but the model's vocabulary is %d", path, tok->vocab_size, m->cfg.vocab);
    if (tok->hf && tok->hf->byte_level) {
        if (!byte_level_pre_name(tok->hf, path)) return -1;
        if (tok->bos_id < 0 && tok->eos_id < 0)
            return vt_fail("%s: the byte-level tokenizer names no BOS or EOS token (llama.cpp needs one)", path);
    }
    if (!overwrite && vt_path_exists(path)) return vt_fail("%s already exists (pass overwrite to replace it)", path);
    writer w = {.path = path};
    vt_atomic_file a;
    int rc = plan_sizes(&w, &m->cfg) || plan_tensors(&w, m, type) || vt_atomic_begin(&a, path) ? -1 : 0;
    if (rc == 0) {
        w.f = a.f;
        rc = write_all(&w, m, tok) ? -1 : vt_atomic_commit(&a);
        if (rc) vt_atomic_abort(&a);
    }
    free(w.t);
    return rc;
}
