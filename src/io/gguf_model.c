/* gguf_model.c — LLaMA checkpoints in GGUF files (see gguf_model.h). */
#define _GNU_SOURCE
#include "io/gguf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/error.h"

void vt_gguf_tensor_name(vt_hf_kind kind, int layer, char *out, int cap) {
    static const char *const names[VT_HF_BDOWN + 1] = {
        [VT_HF_ATTN_NORM] = "attn_norm", [VT_HF_WQ] = "attn_q",     [VT_HF_WK] = "attn_k",
        [VT_HF_WV] = "attn_v",           [VT_HF_WO] = "attn_output", [VT_HF_FFN_NORM] = "ffn_norm",
        [VT_HF_GATE] = "ffn_gate",       [VT_HF_UP] = "ffn_up",      [VT_HF_DOWN] = "ffn_down",
    };
    int weight = vt_hf_bias_of(kind);
    if (weight >= 0) { /* llama.cpp's optional biases of the llama/deci architectures */
        snprintf(out, (size_t)cap, "blk.%d.%s.bias", layer, names[weight]);
        return;
    }
    switch (kind) {
    case VT_HF_EMBED: snprintf(out, (size_t)cap, "token_embd.weight"); break;
    case VT_HF_FINAL_NORM: snprintf(out, (size_t)cap, "output_norm.weight"); break;
    case VT_HF_LM_HEAD: snprintf(out, (size_t)cap, "output.weight"); break;
    default: snprintf(out, (size_t)cap, "blk.%d.%s.weight", layer, names[kind]); break;
    }
}

/* Reads "<arch>.<name>" as an integer; absent keys give def (or an error when def < 0). */
static int arch_int(const vt_gguf *g, const char *arch, const char *name, int64_t def, int64_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    const vt_gguf_kv *kv = vt_gguf_find_kv(g, key);
    if (!kv) {
        if (def < 0) return vt_fail("%s: metadata key %s is missing", g->path, key);
        *out = def;
        return 0;
    }
    if (vt_gguf_kv_int(g, kv, out)) return -1;
    if (*out < 0 || *out > (1 << 30)) return vt_fail("%s: %s = %lld is out of range", g->path, key, (long long)*out);
    return 0;
}

static double arch_float(const vt_gguf *g, const char *arch, const char *name, double def) {
    char key[128];
    double v = def;
    snprintf(key, sizeof key, "%s.%s", arch, name);
    const vt_gguf_kv *kv = vt_gguf_find_kv(g, key);
    if (kv && vt_gguf_kv_float(g, kv, &v)) return -1.0;
    return v;
}

/* A per-layer size: a scalar for every layer or an array of n_layers integers. out[l] filled. */
static int per_layer(const vt_gguf *g, const char *arch, const char *name, int n_layers, int *out, int required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    const vt_gguf_kv *kv = vt_gguf_find_kv(g, key);
    if (!kv) return required ? vt_fail("%s: metadata key %s is missing", g->path, key) : 1;
    if (kv->type != VT_GGUF_ARRAY) {
        int64_t v;
        if (vt_gguf_kv_int(g, kv, &v)) return -1;
        for (int l = 0; l < n_layers; l++) out[l] = (int)v;
    } else {
        if (kv->count != (uint64_t)n_layers || kv->elem_type == VT_GGUF_STRING || kv->elem_type == VT_GGUF_F32 ||
            kv->elem_type == VT_GGUF_F64)
            return vt_fail("%s: %s must be an integer or %d integers (one per layer)", g->path, key, n_layers);
        for (int l = 0; l < n_layers; l++) out[l] = (int)vt_gguf_arr_int(kv, (uint64_t)l);
    }
    for (int l = 0; l < n_layers; l++)
        if (out[l] < 0 || out[l] > (1 << 24)) return vt_fail("%s: %s of layer %d is out of range", g->path, key, l);
    return 0;
}

/* Computation-changing keys this project does not implement. */
static int refuse_unsupported(const vt_gguf *g, const char *arch, const vt_config *c) {
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const vt_gguf_kv *kv = vt_gguf_find_kv(g, key);
    if (kv && kv->type == VT_GGUF_STRING) {
        uint64_t len;
        memcpy(&len, kv->value, 8);
        const char *s = (const char *)kv->value + 8;
        if (!(len == 4 && !memcmp(s, "none", 4)))
            return vt_fail("%s: %s = \"%.*s\": RoPE scaling is not supported", g->path, key, (int)len, s);
    }
    double factor = arch_float(g, arch, "rope.scaling.factor", 1.0);
    if (factor != 1.0 && factor != 0.0)
        return vt_fail("%s: %s.rope.scaling.factor = %g: RoPE scaling is not supported", g->path, arch, factor);
    if (vt_gguf_find_tensor(g, "rope_freqs.weight"))
        return vt_fail("%s: has rope_freqs.weight (LLaMA-3 RoPE frequency factors), which is not supported", g->path);
    int64_t rot, vlen;
    if (arch_int(g, arch, "rope.dimension_count", c->head_dim, &rot) ||
        arch_int(g, arch, "attention.value_length", c->head_dim, &vlen))
        return -1;
    if (rot != c->head_dim || vlen != c->head_dim)
        return vt_fail("%s: rope.dimension_count %lld / value_length %lld differ from the head size %d (partial "
                       "rotary or unequal heads are not supported)", g->path, (long long)rot, (long long)vlen,
                       c->head_dim);
    return 0;
}

static int read_arch(const vt_gguf *g, char *arch, size_t cap) {
    const vt_gguf_kv *kv = vt_gguf_find_kv(g, "general.architecture");
    if (!kv || kv->type != VT_GGUF_STRING) return vt_fail("%s: general.architecture is missing", g->path);
    uint64_t len;
    memcpy(&len, kv->value, 8);
    snprintf(arch, cap, "%.*s", (int)(len < cap ? len : cap - 1), (const char *)kv->value + 8);
    if (strcmp(arch, "llama") && strcmp(arch, "deci"))
        return vt_fail("%s: architecture \"%s\" is not supported (llama or deci)", g->path, arch);
    return 0;
}

/* Per-layer heads, KV heads and FFN sizes; the nominal sizes are the largest. */
static int fill_layers(const vt_gguf *g, const char *arch, vt_config *c) {
    int n = c->n_layers, *v = malloc(sizeof(int) * 3 * (size_t)n);
    if (!v) return vt_fail("out of memory reading %s", g->path);
    int *heads = v, *kv = v + n, *ffn = v + 2 * n;
    int rc = per_layer(g, arch, "attention.head_count", n, heads, 1);
    if (rc == 0) rc = per_layer(g, arch, "feed_forward_length", n, ffn, 1);
    int kv_rc = rc ? rc : per_layer(g, arch, "attention.head_count_kv", n, kv, 0);
    if (kv_rc == 1) memcpy(kv, heads, sizeof(int) * (size_t)n); /* absent: one KV head per query head */
    rc = kv_rc < 0 ? -1 : rc;
    for (int l = 0; l < n && rc == 0; l++) {
        c->layers[l] = (vt_layer_shape){heads[l], kv[l], ffn[l]};
        if (heads[l] && !kv[l])
            rc = vt_fail("%s: layer %d has %d heads and no KV heads (deci linear attention is not supported)",
                         g->path, l, heads[l]);
        if (heads[l] > c->n_heads) c->n_heads = heads[l], c->n_kv_heads = kv[l];
        if (ffn[l] > c->ffn_dim) c->ffn_dim = ffn[l];
    }
    free(v);
    return rc;
}

static int first_heads(const vt_config *c) {
    for (int l = 0; l < c->n_layers; l++)
        if (c->layers[l].n_heads) return c->layers[l].n_heads;
    return 0;
}

/* long: one key after another, each with its check */
/* attn_bias / mlp_bias when any layer stores a bias of the block (llama.cpp loads them optionally). */
static void gguf_biases(const vt_gguf *g, vt_config *c) {
    char name[96];
    for (int l = 0; l < c->n_layers; l++)
        for (int k = VT_HF_BQ; k <= VT_HF_BDOWN; k++) {
            vt_gguf_tensor_name((vt_hf_kind)k, l, name, (int)sizeof name);
            if (!vt_gguf_find_tensor(g, name)) continue;
            if (k <= VT_HF_BO) c->attn_bias = 1;
            else c->mlp_bias = 1;
        }
}

int vt_gguf_config(const vt_gguf *g, vt_config *c) {
    char arch[32];
    int64_t layers, dim, ctx, hd;
    memset(c, 0, sizeof *c);
    if (read_arch(g, arch, sizeof arch) || arch_int(g, arch, "block_count", -1, &layers) ||
        arch_int(g, arch, "embedding_length", -1, &dim) || arch_int(g, arch, "context_length", 2048, &ctx))
        return -1;
    if (layers < 1 || layers > VT_MAX_LAYERS)
        return vt_fail("%s: %s.block_count %lld is out of range (1 to %d)", g->path, arch, (long long)layers, VT_MAX_LAYERS);
    const vt_gguf_tensor *emb = vt_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) return vt_fail("%s: tensor token_embd.weight is missing or not 2-D", g->path);
    if (emb->ne[1] > (1u << 24)) return vt_fail("%s: token_embd.weight has an impossible vocabulary", g->path);
    c->n_layers = (int)layers;
    c->dim = (int)dim;
    c->vocab = (int)emb->ne[1];
    c->seq_len = (int)ctx;
    c->layers = vt_calloc((size_t)layers, sizeof *c->layers, "layer sizes");
    if (!c->layers || fill_layers(g, arch, c)) goto fail;
    int h0 = first_heads(c);
    if (arch_int(g, arch, "attention.key_length", h0 ? dim / h0 : 0, &hd)) goto fail;
    c->head_dim = (int)hd;
    double eps = arch_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5);
    double theta = arch_float(g, arch, "rope.freq_base", 10000.0);
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;
    c->tied = vt_gguf_find_tensor(g, "output.weight") == NULL;
    gguf_biases(g, c);
    c->rope = VT_ROPE_INTERLEAVED; /* llama.cpp's llama/deci RoPE pairs (2i, 2i+1) */
    if (c->n_heads == 0) c->n_heads = c->n_kv_heads = 1; /* every attention block removed */
    if (refuse_unsupported(g, arch, c) || vt_config_validate(c, g->path)) goto fail;
    return 0;
fail:
    vt_config_free(c);
    return -1;
}

int vt_gguf_read_config(const char *path, vt_config *c) {
    vt_gguf g;
    if (vt_gguf_open(&g, path)) return -1;
    int rc = vt_gguf_config(&g, c);
    vt_gguf_close(&g);
    return rc;
}

/* The stored tensor for an HF-listed one, checked against its shape. */
static int find_checked(const vt_gguf *g, const vt_hf_tensor *t, const vt_gguf_tensor **out) {
    char name[96];
    vt_gguf_tensor_name(t->kind, t->layer, name, (int)sizeof name);
    const vt_gguf_tensor *s = vt_gguf_find_tensor(g, name);
    *out = NULL;
    if (!s && t->optional) return 0; /* a bias the file does not store: zeros */
    if (!s) return vt_fail("%s: missing tensor %s", g->path, name);
    uint64_t want0 = (uint64_t)(t->ndim == 2 ? t->shape[1] : t->shape[0]), want1 = t->ndim == 2 ? (uint64_t)t->shape[0] : 1;
    if (s->n_dims > 2 || s->ne[0] != want0 || s->ne[1] != want1)
        return vt_fail("%s: tensor %s has shape [%llu, %llu], expected [%llu, %llu] (ne0, ne1)", g->path, name,
                       (unsigned long long)s->ne[0], (unsigned long long)s->ne[1], (unsigned long long)want0,
                       (unsigned long long)want1);
    *out = s;
    return 0;
}

/* Every tensor the parts read (and the embedding a tied classifier reads) is present with its
 * shape: checked before the model is allocated, so the allocation is bounded by the file's size
 * (found by fuzz_gguf: a 20 kB file whose metadata claimed a 2.7 GB model). */
static int check_tensors(const vt_gguf *g, const vt_config *c, vt_load_parts parts) {
    vt_hf_tensor *list = NULL;
    int n = 0, rc = vt_hf_tensor_list(c, parts, NULL, &list, &n);
    const vt_gguf_tensor *s = NULL;
    for (int i = 0; i < n && rc == 0; i++) rc = find_checked(g, &list[i], &s);
    free(list);
    vt_hf_tensor emb = {.kind = VT_HF_EMBED, .layer = -1, .ndim = 2, .shape = {c->vocab, c->dim}};
    return rc ? rc : find_checked(g, &emb, &s);
}

int vt_gguf_load(vt_model *m, const char *path, vt_load_parts parts) {
    vt_gguf g;
    vt_config c;
    if (vt_gguf_open(&g, path)) return -1;
    int rc = vt_gguf_config(&g, &c);
    if (rc) {
        vt_gguf_close(&g);
        return -1;
    }
    vt_hf_tensor *list = NULL;
    int n = 0, held = -1;
    rc = check_tensors(&g, &c, parts);
    if (rc) {
        vt_config_free(&c);
        vt_gguf_close(&g);
        return -1;
    }
    rc = vt_model_alloc(m, &c, parts);
    if (rc == 0) rc = vt_hf_tensor_list(&m->cfg, parts, m, &list, &n);
    /* A tied classifier held without the embedding (the last pipeline stage) is read from it. */
    if (rc == 0 && m->has_head && m->cfg.tied && m->lm_head != m->embed) {
        vt_hf_tensor t = {.kind = VT_HF_EMBED, .layer = -1, .ndim = 2, .shape = {c.vocab, c.dim}, .data = m->lm_head};
        list[n++] = t;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        const vt_gguf_tensor *s = NULL;
        rc = find_checked(&g, &list[i], &s);
        if (rc || !s) continue;
        vt_ggml_to_f32(list[i].data, s->data, s->type, s->ne[0] * s->ne[1]);
        if (rc == 0) /* Q8_0 is no vt_dtype: held as fp32 */
            held = vt_hold_merge(held, list[i].ndim,
                                 s->type == VT_GGML_F16 ? VT_F16 : s->type == VT_GGML_BF16 ? VT_BF16 : VT_F32);
    }
    m->hold = vt_hold_of(held);
    free(list);
    vt_config_free(&c);
    vt_gguf_close(&g);
    if (rc) vt_model_free(m);
    return rc;
}

int vt_gguf_tensor_stats(const char *path, vt_config *c, int *n_tensors, int type_count[32], uint64_t *bytes) {
    vt_gguf g;
    if (vt_gguf_open(&g, path)) return -1;
    vt_hf_tensor *list = NULL;
    int n = 0, rc = vt_gguf_config(&g, c);
    if (rc == 0) rc = vt_hf_tensor_list(c, vt_load_all(), NULL, &list, &n);
    *n_tensors = 0;
    *bytes = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const vt_gguf_tensor *s = NULL;
        rc = find_checked(&g, &list[i], &s);
        if (rc) break;
        if (!s) continue; /* an optional bias not stored */
        type_count[s->type & 31]++;
        *bytes += s->bytes;
        (*n_tensors)++;
    }
    free(list);
    if (rc && c->layers) vt_config_free(c);
    vt_gguf_close(&g);
    return rc;
}

/* The tokenizer.bin bytes of a GGUF llama vocabulary: max length, then {score, length, piece}. */
static int vocab_bytes(const vt_gguf *g, const vt_gguf_kv *toks, const vt_gguf_kv *scores, FILE *f) {
    vt_gguf_str *s = vt_calloc(toks->count, sizeof *s, "GGUF tokens");
    if (!s) return -1;
    vt_gguf_arr_strings(toks, s);
    uint32_t max_len = 0;
    for (uint64_t i = 0; i < toks->count; i++) max_len = s[i].len > max_len ? (uint32_t)s[i].len : max_len;
    fwrite(&max_len, 4, 1, f);
    for (uint64_t i = 0; i < toks->count; i++) {
        char buf[1024];
        int32_t len = 0;
        for (uint64_t k = 0; k < s[i].len && len < (int32_t)sizeof buf; k++) {
            if (k + 2 < s[i].len && !memcmp(s[i].str + k, "\xe2\x96\x81", 3)) { /* '▁' stands for ' ' */
                buf[len++] = ' ';
                k += 2;
            } else
                buf[len++] = s[i].str[k];
        }
        float score = scores ? (float)vt_gguf_arr_float(scores, i) : 0.0f;
        fwrite(&score, 4, 1, f);
        fwrite(&len, 4, 1, f);
        fwrite(buf, 1, (size_t)len, f);
    }
    free(s);
    return ferror(f) ? vt_fail("%s: could not stage the vocabulary", g->path) : 0;
}

static int check_tokenizer_keys(const vt_gguf *g, const vt_gguf_kv **toks, const vt_gguf_kv **scores) {
    const vt_gguf_kv *model = vt_gguf_find_kv(g, "tokenizer.ggml.model");
    if (!model || model->type != VT_GGUF_STRING) return vt_fail("%s: has no tokenizer (tokenizer.ggml.model)", g->path);
    if (memcmp(model->value, "\5\0\0\0\0\0\0\0llama", 13))
        return vt_fail("%s: tokenizer.ggml.model is not \"llama\"; only the llama (sentencepiece) vocabulary is supported",
                       g->path);
    *toks = vt_gguf_find_kv(g, "tokenizer.ggml.tokens");
    *scores = vt_gguf_find_kv(g, "tokenizer.ggml.scores");
    if (!*toks || (*toks)->type != VT_GGUF_ARRAY || (*toks)->elem_type != VT_GGUF_STRING || (*toks)->count < 3)
        return vt_fail("%s: tokenizer.ggml.tokens is missing or not a string array", g->path);
    if (*scores && ((*scores)->type != VT_GGUF_ARRAY || (*scores)->elem_type != VT_GGUF_F32 ||
                    (*scores)->count != (*toks)->count))
        return vt_fail("%s: tokenizer.ggml.scores is not %llu floats", g->path, (unsigned long long)(*toks)->count);
    static const char *const ids[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    for (int i = 0; i < 2; i++) {
        const vt_gguf_kv *kv = vt_gguf_find_kv(g, ids[i]);
        int64_t v = i + 1;
        if (kv && vt_gguf_kv_int(g, kv, &v)) return -1;
        if (v != i + 1) return vt_fail("%s: %s is %lld; only BOS 1 and EOS 2 are supported", g->path, ids[i], (long long)v);
    }
    return 0;
}

int vt_gguf_tokenizer_load(vt_tokenizer *t, const char *path) {
    vt_gguf g;
    const vt_gguf_kv *toks = NULL, *scores = NULL;
    if (vt_gguf_open(&g, path)) return -1;
    int rc = check_tokenizer_keys(&g, &toks, &scores);
    /* The vocabulary is staged as an in-memory tokenizer.bin so the one llama2.c reader loads it. */
    int fd = rc ? -1 : memfd_create("gguf-vocab", 0);
    FILE *f = fd >= 0 ? fdopen(fd, "w+b") : NULL;
    if (rc == 0 && !f) rc = vt_fail("%s: could not stage the vocabulary", path);
    if (rc == 0) rc = vocab_bytes(&g, toks, scores, f);
    if (rc == 0 && fflush(f)) rc = vt_fail("%s: could not stage the vocabulary", path);
    if (rc == 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        rc = vt_tokenizer_load(t, proc);
        if (rc) vt_fail_context("%s: the embedded vocabulary", path);
    }
    if (f) fclose(f);
    else if (fd >= 0) close(fd);
    vt_gguf_close(&g);
    return rc;
}
