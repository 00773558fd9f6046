/* test_model_load.c — loading llama2.c .bin and HF checkpoints (whole and rank-local parts), the HF
 * writer (f32/f16/bf16, single and sharded, q/k permuted to rotate-half, pruned layers, atomic
 * output), and the errors for truncated files, config disagreements and missing tensors. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/checkpoint_info.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "io/hf_config.h"
#include "io/hf_tensors.h"
#include "io/hf_writer.h"
#include "io/llama2c_bin.h"
#include "io/safetensors.h"
#include "nn/forward.h"
#include "nn/model.h"


static void expect_error_has(const char *frag1, const char *frag2, const char *frag3) {
    const char *msg = vt_error();
    if (!strstr(msg, frag1) || (frag2 && !strstr(msg, frag2)) || (frag3 && !strstr(msg, frag3)))
        fail_msg("error '%s' should contain '%s', '%s' and '%s'", msg, frag1, frag2 ? frag2 : "", frag3 ? frag3 : "");
}

static float stored(float x, vt_dtype t) {
    return t == VT_F32 ? x : t == VT_F16 ? vt_f16_to_f32(vt_f32_to_f16(x)) : vt_bf16_to_f32(vt_f32_to_bf16(x));
}

/* Writes m as a llama2.c v0 file (independently of the reader: straight from the spec). */
static void write_llama2c(const vt_model *m, const char *path) {
    const vt_config *c = &m->cfg;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    int32_t h[7] = {c->dim, c->ffn_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->tied ? c->vocab : -c->vocab,
                    c->seq_len};
    fwrite(h, 4, 7, f);
    size_t d = (size_t)c->dim, kv = (size_t)c->n_kv_heads * (size_t)c->head_dim, ff = (size_t)c->ffn_dim;
    fwrite(m->embed, 4, (size_t)c->vocab * d, f);
#define EACH(field, n) for (int l = 0; l < c->n_layers; l++) fwrite(m->layers[l].field, 4, (n), f)
    EACH(attn_norm, d);
    EACH(wq, d * d);
    EACH(wk, kv * d);
    EACH(wv, kv * d);
    EACH(wo, d * d);
    EACH(ffn_norm, d);
    EACH(w_gate, ff * d);
    EACH(w_down, d * ff);
    EACH(w_up, ff * d);
#undef EACH
    fwrite(m->final_norm, 4, d, f);
    float *zeros = calloc((size_t)c->seq_len * (size_t)c->head_dim, 4);
    fwrite(zeros, 4, (size_t)c->seq_len * (size_t)c->head_dim, f); /* freq_cis real and imag */
    free(zeros);
    if (!c->tied) fwrite(m->lm_head, 4, (size_t)c->vocab * d, f);
    fclose(f);
}

/* Every tensor of got equals want (as stored in dtype). q/k rows are compared through the
 * rotate-half permutation when want is interleaved and got is rotate-half. */
static void compare_models(const vt_model *want, const vt_model *got, vt_dtype dtype) {
    const vt_config *c = &want->cfg;
    assert_int_equal(got->cfg.dim, c->dim);
    assert_int_equal(got->cfg.n_layers, c->n_layers);
    assert_int_equal(got->cfg.vocab, c->vocab);
    assert_int_equal(got->cfg.tied, c->tied);
    vt_hf_tensor *a, *b;
    int na, nb;
    vt_load_parts parts = {got->layer_begin, got->layer_end, got->has_embed, got->has_head};
    assert_int_equal(vt_hf_tensor_list(c, parts, want, &a, &na), 0);
    assert_int_equal(vt_hf_tensor_list(&got->cfg, parts, got, &b, &nb), 0);
    assert_int_equal(na, nb);
    int permute = want->cfg.rope == VT_ROPE_INTERLEAVED && got->cfg.rope == VT_ROPE_HALF;
    for (int i = 0; i < na; i++) {
        assert_string_equal(a[i].name, b[i].name);
        int64_t rows = a[i].shape[0], cols = a[i].ndim == 2 ? a[i].shape[1] : 1;
        int hd = c->head_dim;
        int qk = a[i].kind == VT_HF_WQ || a[i].kind == VT_HF_WK;
        for (int64_t r = 0; r < rows; r++) {
            /* stored row (h, half, j) holds source row (h, 2j + half) */
            int64_t src = r;
            if (qk && permute) {
                int64_t h = r / hd, half = (r % hd) / (hd / 2), j = r % (hd / 2);
                src = h * hd + 2 * j + half;
            }
            for (int64_t k = 0; k < cols; k++)
                if (b[i].data[r * cols + k] != stored(a[i].data[src * cols + k], dtype))
                    fail_msg("%s[%lld, %lld]: %g != %g", a[i].name, (long long)r, (long long)k, b[i].data[r * cols + k],
                             stored(a[i].data[src * cols + k], dtype));
        }
    }
    free(a);
    free(b);
}

/* A non-dense config: layer 1 has no attention, layer 2 no MLP, layer 0 fewer heads. Untied. */
static void pruned_config(vt_config *c) {
    tu_small_config(c);
    c->n_layers = 4;
    free(c->layers);
    vt_config_init_dense(c);
    c->tied = 0;
    c->layers[0] = (vt_layer_shape){2, 1, 7};
    c->layers[1] = (vt_layer_shape){0, 0, 24};
    c->layers[2] = (vt_layer_shape){4, 2, 0};
}

static void test_load_stories260k(void **state) {
    (void)state;
    if (!tu_have_fixture("stories260K/stories260K.bin")) skip();
    const char *path = tu_fixture("stories260K/stories260K.bin");
    vt_model m;
    assert_int_equal(vt_model_load(&m, path, vt_load_all()), 0);
    const vt_config *c = &m.cfg;
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->ffn_dim, 172);
    assert_int_equal(c->vocab, 512);
    assert_int_equal(c->seq_len, 512);
    assert_int_equal(c->tied, 1);
    assert_int_equal(c->rope, VT_ROPE_INTERLEAVED);
    assert_ptr_equal(m.lm_head, m.embed);
    /* Spot-check against the raw file: first embedding value and the final norm. */
    vt_mapped_file f;
    assert_int_equal(vt_map_file(&f, path), 0);
    float x;
    memcpy(&x, f.data + 28, 4);
    assert_true(m.embed[0] == x);
    size_t rms_final = 28 + 4 * (512 * 64 + 5 * 64 + 5 * 64 * 64 * 2 + 2 * 5 * 32 * 64 + 5 * 64 + 3 * 5 * 172 * 64);
    memcpy(&x, f.data + rms_final + 4 * 63, 4);
    assert_true(m.final_norm[63] == x);
    vt_unmap_file(&f);

    /* A last pipeline stage: layers [3, 5) and the head, no embedding; the tied classifier is
     * still read (from the embedding). */
    vt_model part;
    vt_load_parts p = {3, -1, 0, 1};
    assert_int_equal(vt_model_load(&part, path, p), 0);
    assert_null(part.embed);
    assert_null(part.layers[2].wq);
    assert_memory_equal(part.lm_head, m.embed, 512 * 64 * sizeof(float));
    assert_memory_equal(part.layers[4].w_down, m.layers[4].w_down, 64 * 172 * sizeof(float));
    vt_model_free(&part);

    vt_checkpoint_info info;
    assert_int_equal(vt_checkpoint_info_read(path, &info), 0);
    assert_int_equal(info.format, VT_CKPT_LLAMA2C);
    assert_int_equal(info.dtype_tensors[VT_F32], 2 + 9 * 5);
    assert_int_equal(info.tensor_bytes, 4 * vt_params_total(&info.cfg));
    vt_checkpoint_info_free(&info);
    vt_model_free(&m);
}

static void test_llama2c_round_trip_untied(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    c.tied = 0;
    vt_model m, r;
    tu_random_model(&m, &c, 7);
    const char *path = tu_in_dir("untied.bin");
    write_llama2c(&m, path);
    assert_int_equal(vt_model_load(&r, path, vt_load_all()), 0);
    assert_int_equal(r.cfg.tied, 0);
    assert_true(r.lm_head != r.embed);
    assert_int_equal(r.arena_floats, m.arena_floats);
    compare_models(&m, &r, VT_F32);
    vt_model_free(&r);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_truncated_bin(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m, r;
    tu_random_model(&m, &c, 3);
    const char *path = tu_in_dir("full.bin"), *cut = tu_in_dir("cut.bin");
    write_llama2c(&m, path);
    char *data;
    size_t n;
    assert_int_equal(vt_read_file(path, &data, &n), 0);
    assert_int_equal(tu_write_file(cut, data, n - 100), 0);
    char want[64], have[64];
    snprintf(want, sizeof want, "needs %zu bytes", n);
    snprintf(have, sizeof have, "file has %zu", n - 100);
    vt_error_clear();
    assert_int_equal(vt_model_load(&r, cut, vt_load_all()), -1);
    expect_error_has(cut, "truncated", want);
    expect_error_has(have, NULL, NULL);
    /* Shorter than the header. */
    assert_int_equal(tu_write_file(cut, data, 10), 0);
    assert_int_equal(vt_model_load(&r, cut, vt_load_all()), -1);
    expect_error_has(cut, "truncated", "28-byte");
    /* A bad header value. */
    int32_t zero = 0;
    memcpy(data + 12, &zero, 4); /* n_heads */
    assert_int_equal(tu_write_file(cut, data, n), 0);
    assert_int_equal(vt_model_load(&r, cut, vt_load_all()), -1);
    expect_error_has(cut, "bad header", "n_heads = 0");
    int32_t seven = 7;
    memcpy(data + 12, &seven, 4); /* dim 16 is not a multiple of 7 heads */
    assert_int_equal(tu_write_file(cut, data, n), 0);
    assert_int_equal(vt_model_load(&r, cut, vt_load_all()), -1);
    expect_error_has(cut, "not a multiple of n_heads 7", NULL);
    free(data);
    assert_int_equal(vt_model_load(&r, tu_in_dir("absent.bin"), vt_load_all()), -1);
    expect_error_has("absent.bin", "no such file", NULL);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_truncated_stories260k(void **state) {
    (void)state;
    if (!tu_have_fixture("stories260K/stories260K.bin")) skip();
    char *data;
    size_t n;
    assert_int_equal(vt_read_file(tu_fixture("stories260K/stories260K.bin"), &data, &n), 0);
    const char *cut = tu_in_dir("stories-cut.bin");
    assert_int_equal(tu_write_file(cut, data, n / 2), 0);
    free(data);
    vt_model r;
    assert_int_equal(vt_model_load(&r, cut, vt_load_all()), -1);
    expect_error_has(cut, "needs 1056540 bytes", "file has 528270");
}

static void hf_round_trip(const vt_model *m, vt_dtype dtype, size_t shard_bytes, const char *name, int expect_files) {
    const char *out = tu_in_dir(name);
    assert_int_equal(vt_hf_write(m, out, dtype, shard_bytes, NULL), 0);
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", out);
    assert_int_equal(vt_path_exists(p), expect_files != 1);
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    assert_int_equal(vt_path_exists(p), expect_files == 1);
    vt_checkpoint_info info;
    assert_int_equal(vt_checkpoint_info_read(out, &info), 0);
    assert_int_equal(info.format, VT_CKPT_HF);
    if (expect_files > 0) assert_int_equal(info.n_files, expect_files);
    else assert_true(info.n_files > 1);
    assert_int_equal(info.dtype_tensors[dtype], info.n_tensors);
    vt_checkpoint_info_free(&info);
    vt_model r;
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), 0);
    assert_int_equal(r.cfg.rope, VT_ROPE_HALF);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        assert_int_equal(r.cfg.layers[l].n_heads, m->cfg.layers[l].n_heads);
        assert_int_equal(r.cfg.layers[l].n_kv_heads, m->cfg.layers[l].n_kv_heads);
        assert_int_equal(r.cfg.layers[l].ffn, m->cfg.layers[l].ffn);
    }
    compare_models(m, &r, dtype);
    vt_model_free(&r);
}

static void test_hf_single_and_sharded(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 11);
    hf_round_trip(&m, VT_F32, 0, "hf-f32", 1);
    /* 8 KiB shards: embedding + layer 0 up to gate_proj (6784 bytes; up_proj would pass 8192),
     * then up/down + layer 1 up to gate_proj (7808), then the rest. */
    hf_round_trip(&m, VT_F32, 8192, "hf-f32-sharded", 3);
    hf_round_trip(&m, VT_F16, 0, "hf-f16", 1);
    /* 1 KiB BF16 shards: the 1 KiB embedding alone, then 10 more. */
    hf_round_trip(&m, VT_BF16, 1024, "hf-bf16-sharded", 11);
    /* The index lists every tensor with its file and the total size. */
    char *text;
    size_t n;
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", tu_in_dir("hf-f32-sharded"));
    assert_int_equal(vt_read_file(p, &text, &n), 0);
    char total[64];
    snprintf(total, sizeof total, "\"total_size\": %zu", 4 * vt_params_total(&c));
    assert_non_null(strstr(text, total));
    assert_non_null(strstr(text, "\"model.embed_tokens.weight\": \"model-00001-of-00003.safetensors\""));
    assert_non_null(strstr(text, "\"model.layers.0.mlp.gate_proj.weight\": \"model-00001-of-00003.safetensors\""));
    assert_non_null(strstr(text, "\"model.layers.0.mlp.up_proj.weight\": \"model-00002-of-00003.safetensors\""));
    assert_non_null(strstr(text, "\"model.norm.weight\": \"model-00003-of-00003.safetensors\""));
    assert_null(strstr(text, "lm_head")); /* tied */
    free(text);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* The plan keeps order, never passes the limit except for one oversized tensor, and starts a new
 * file only when the next tensor would not fit. */
static void test_shard_plan(void **state) {
    (void)state;
    vt_config c;
    pruned_config(&c);
    vt_hf_tensor *t;
    int n, shard_of[64];
    assert_int_equal(vt_hf_tensor_list(&c, vt_load_all(), NULL, &t, &n), 0);
    assert_int_equal(n, 3 + 3 * 5 + 3 * 4); /* embedding, norm, lm_head; 3 attention and 3 MLP blocks */
    assert_string_equal(t[n - 1].name, "lm_head.weight");
    for (uint64_t limit = 100; limit < 20000; limit = limit * 3 / 2) {
        int shards = vt_hf_plan_shards(t, n, VT_F16, limit, shard_of);
        uint64_t size[64] = {0};
        int count[64] = {0};
        for (int i = 0; i < n; i++) {
            assert_true(shard_of[i] >= 0 && shard_of[i] < shards);
            if (i) assert_true(shard_of[i] == shard_of[i - 1] || shard_of[i] == shard_of[i - 1] + 1);
            size[shard_of[i]] += (uint64_t)t[i].shape[0] * (t[i].ndim == 2 ? (uint64_t)t[i].shape[1] : 1) * 2;
            count[shard_of[i]]++;
        }
        for (int s = 0; s < shards; s++) {
            assert_true(size[s] <= limit || count[s] == 1);
            if (s + 1 < shards) {
                int first_next = 0;
                while (shard_of[first_next] != s + 1) first_next++;
                const vt_hf_tensor *nx = &t[first_next];
                uint64_t b = (uint64_t)nx->shape[0] * (nx->ndim == 2 ? (uint64_t)nx->shape[1] : 1) * 2;
                assert_true(size[s] + b > limit);
            }
        }
    }
    assert_int_equal(vt_hf_plan_shards(t, n, VT_F32, 0, shard_of), 1);
    char name[64];
    vt_hf_shard_name(1, 12, name, sizeof name);
    assert_string_equal(name, "model-00002-of-00012.safetensors");
    vt_hf_shard_name(0, 1, name, sizeof name);
    assert_string_equal(name, "model.safetensors");
    free(t);
    vt_config_free(&c);
}

/* A model already in rotate-half layout is written without permuting. */
static void test_hf_rotate_half_not_permuted_twice(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    c.rope = VT_ROPE_HALF;
    vt_model m, r;
    tu_random_model(&m, &c, 5);
    const char *out = tu_in_dir("hf-half");
    assert_int_equal(vt_hf_write(&m, out, VT_F32, 0, NULL), 0);
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), 0);
    assert_memory_equal(r.arena, m.arena, m.arena_floats * sizeof(float));
    vt_model_free(&r);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_hf_pruned_round_trip(void **state) {
    (void)state;
    vt_config c;
    pruned_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 13);
    hf_round_trip(&m, VT_F32, 0, "hf-pruned", 1);
    hf_round_trip(&m, VT_BF16, 1500, "hf-pruned-sharded", -1);
    vt_model r;
    assert_int_equal(vt_model_load(&r, tu_in_dir("hf-pruned"), vt_load_all()), 0);
    assert_null(r.layers[1].wq);
    assert_null(r.layers[1].attn_norm);
    assert_null(r.layers[2].w_gate);
    assert_non_null(r.layers[2].wo);
    assert_int_equal(vt_params_total(&r.cfg), vt_params_total(&c));
    vt_model_free(&r);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* logits [T, vocab] of one sequence of T tokens. */
static float *logits_of(const vt_model *m, const int32_t *tok, int T) {
    float *x = malloc(sizeof(float) * T * m->cfg.dim), *lg = malloc(sizeof(float) * T * m->cfg.vocab);
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, m, 1, T, T), 0);
    vt_embed(m, tok, T, x);
    vt_layers_forward(m, &f, 0, m->cfg.n_layers, x, 1, T, 0);
    vt_head_forward(m, &f, x, T, lg);
    vt_fwd_free(&f);
    free(x);
    return lg;
}

/* A model with every bias (attention_bias, mlp_bias; non-zero q and k biases too, in the
 * interleaved-RoPE layout) written as HF and read back (rotate-half): the same logits, so the q/k
 * biases were permuted with their weights' rows; o_proj's and down_proj's come back as they were. */
static void test_hf_biases_round_trip(void **state) {
    (void)state;
    vt_config c;
    pruned_config(&c);
    c.attn_bias = c.mlp_bias = 1;
    vt_model m, r;
    tu_random_model(&m, &c, 17);
    assert_int_equal(m.cfg.rope, VT_ROPE_INTERLEAVED);
    size_t nb = 0;
    for (int l = 0; l < c.n_layers; l++) nb += vt_layer_bias_params(&c, l);
    for (size_t i = 0; i < nb; i++) m.bias[i] = 0.05f * (float)((i * 37) % 11) - 0.25f;
    assert_int_equal(vt_params_total(&c), vt_params_total(&m.cfg));
    const char *out = tu_in_dir("hf-biases");
    assert_int_equal(vt_hf_write(&m, out, VT_F32, 0, NULL), 0);
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), 0);
    assert_true(r.cfg.attn_bias && r.cfg.mlp_bias);
    for (int l = 0; l < c.n_layers; l++) {
        if (c.layers[l].n_heads) assert_memory_equal(r.layers[l].bo, m.layers[l].bo, sizeof(float) * c.dim);
        if (c.layers[l].ffn) assert_memory_equal(r.layers[l].b_down, m.layers[l].b_down, sizeof(float) * c.dim);
    }
    enum { T = 6 };
    int32_t tok[T] = {1, 5, 9, 2, 7, 3};
    float *a = logits_of(&m, tok, T), *b = logits_of(&r, tok, T);
    double e = tu_rel_diff(b, a, (size_t)T * c.vocab);
    if (e > 1e-5) fail_msg("logits after the HF round trip differ by %g", e);
    memset(m.layers[0].b_qkv, 0, sizeof(float) * c.head_dim); /* the q biases matter */
    float *z = logits_of(&m, tok, T);
    assert_true(tu_rel_diff(z, a, (size_t)T * c.vocab) > 1e-4);
    free(a), free(b), free(z);
    vt_model_free(&r);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* A pipeline stage reads only the files holding its tensors. */
static void test_hf_rank_local_parts(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m, r;
    tu_random_model(&m, &c, 17);
    const char *out = tu_in_dir("hf-parts");
    assert_int_equal(vt_hf_write(&m, out, VT_F32, 2048, NULL), 0); /* embedding alone in file 1 of 11 */
    char p[4096];
    snprintf(p, sizeof p, "%s/model-00001-of-00011.safetensors", out);
    assert_int_equal(remove(p), 0);
    vt_load_parts mid = {1, 2, 0, 0};
    assert_int_equal(vt_model_load(&r, out, mid), 0);
    assert_null(r.embed);
    assert_null(r.layers[0].wq);
    compare_models(&m, &r, VT_F32);
    vt_model_free(&r);
    /* The head of a tied model needs the embedding's file: a clear error now it is gone. */
    vt_load_parts head = {1, 2, 0, 1};
    vt_error_clear();
    assert_int_equal(vt_model_load(&r, out, head), -1);
    expect_error_has("model-00001-of-00011.safetensors", "cannot open", NULL);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* Replaces `from` with `to` in a file. */
static void edit_file(const char *path, const char *from, const char *to) {
    char *text;
    size_t n;
    assert_int_equal(vt_read_file(path, &text, &n), 0);
    char *at = strstr(text, from);
    assert_non_null(at);
    size_t nf = strlen(from), nt = strlen(to);
    char *out = malloc(n - nf + nt + 1);
    memcpy(out, text, (size_t)(at - text));
    memcpy(out + (at - text), to, nt);
    memcpy(out + (at - text) + nt, at + nf, n - (size_t)(at - text) - nf);
    assert_int_equal(tu_write_file(path, out, n - nf + nt), 0);
    free(out);
    free(text);
}

static void test_hf_config_disagreements(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m, r;
    tu_random_model(&m, &c, 19);
    const char *out = tu_in_dir("hf-bad");
    assert_int_equal(vt_hf_write(&m, out, VT_F32, 0, NULL), 0);
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    /* dtype: the config says float16, the tensors are F32 */
    edit_file(cfg, "\"torch_dtype\": \"float32\"", "\"torch_dtype\": \"float16\"");
    vt_error_clear();
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), -1);
    expect_error_has("model.safetensors: tensor model.embed_tokens.weight", "stored as F32", "torch_dtype float16");
    vt_checkpoint_info info;
    assert_int_equal(vt_checkpoint_info_read(out, &info), -1);
    edit_file(cfg, "\"torch_dtype\": \"float16\"", "\"torch_dtype\": \"float32\"");
    /* shape: the config says FFN 20, the tensors have 24 rows */
    edit_file(cfg, "\"intermediate_size\": 24", "\"intermediate_size\": 20");
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), -1);
    expect_error_has("tensor model.layers.0.mlp.gate_proj.weight has shape [24, 16]", "config.json implies [20, 16]",
                     NULL);
    assert_int_equal(vt_checkpoint_info_read(out, &info), -1);
    /* missing tensor: the config says untied, so lm_head.weight must be there */
    edit_file(cfg, "\"intermediate_size\": 20", "\"intermediate_size\": 24");
    edit_file(cfg, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), -1);
    expect_error_has("model.safetensors: missing tensor lm_head.weight", NULL, NULL);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* Rewrites dir/model.safetensors (F32) with tensor `from` renamed `to` and the metadata meta_kv. */
static void rename_tensor(const char *dir, const char *from, const char *to, const char *const *meta_kv, int n_meta) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    vt_safetensors st;
    assert_int_equal(vt_st_open(&st, path), 0);
    vt_st_entry *e = calloc((size_t)st.n_tensors, sizeof *e);
    for (int i = 0; i < st.n_tensors; i++) {
        const vt_st_tensor *t = &st.tensors[i];
        float *data = malloc(sizeof(float) * t->n_elems);
        assert_int_equal(vt_st_read_f32(&st, t, data), 0);
        e[i].name = strcmp(t->name, from) == 0 ? to : t->name;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof t->shape);
        e[i].data = data;
    }
    assert_int_equal(vt_st_write_meta(tmp, e, st.n_tensors, VT_F32, meta_kv, n_meta), 0);
    for (int i = 0; i < st.n_tensors; i++) free((void *)e[i].data);
    free(e);
    vt_st_close(&st);
    assert_int_equal(rename(tmp, path), 0);
}

/* The tied matrix under either name: only lm_head.weight, tied by config.json or by the metadata
 * alias torch's save_model writes; without either it is an error. Whole model and last stage. */
static void test_hf_tied_as_lm_head(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m, r;
    tu_random_model(&m, &c, 37);
    const char *out = tu_in_dir("hf-tied-head");
    assert_int_equal(vt_hf_write(&m, out, VT_F32, 0, NULL), 0);
    rename_tensor(out, "model.embed_tokens.weight", "lm_head.weight", NULL, 0);
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), 0);
    compare_models(&m, &r, VT_F32);
    vt_model_free(&r);
    vt_load_parts last = {2, c.n_layers, 0, 1};
    assert_int_equal(vt_model_load(&r, out, last), 0);
    assert_memory_equal(r.lm_head, m.embed, sizeof(float) * (size_t)c.vocab * (size_t)c.dim);
    vt_model_free(&r);
    /* config.json says untied (as when the key is absent): only the alias makes it tied. */
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    edit_file(cfg, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    vt_error_clear();
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), -1);
    expect_error_has("missing tensor model.embed_tokens.weight", "only lm_head.weight is stored", "config.json");
    const char *alias[] = {"format", "pt", "model.embed_tokens.weight", "lm_head.weight"};
    rename_tensor(out, "lm_head.weight", "lm_head.weight", alias, 2);
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), 0);
    compare_models(&m, &r, VT_F32);
    vt_model_free(&r);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* tie_word_embeddings absent with both matrices stored: untied, two matrices (HF's default). */
static void test_hf_untied_key_absent(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    c.tied = 0;
    vt_model m, r;
    tu_random_model(&m, &c, 41);
    const char *out = tu_in_dir("hf-untied-absent");
    assert_int_equal(vt_hf_write(&m, out, VT_F32, 0, NULL), 0);
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    edit_file(cfg, "\"tie_word_embeddings\": false,", "");
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), 0);
    assert_int_equal(r.cfg.tied, 0);
    assert_true(r.lm_head != r.embed);
    compare_models(&m, &r, VT_F32);
    vt_model_free(&r);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* An index listing a tensor twice: in the same file it loads, in two files the error names both. */
static void test_hf_index_lists_twice(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m, r;
    tu_random_model(&m, &c, 43);
    const char *out = tu_in_dir("hf-twice");
    assert_int_equal(vt_hf_write(&m, out, VT_F32, 4096, NULL), 0);
    char idx[4096];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", out);
    char *text;
    size_t n;
    assert_int_equal(vt_read_file(idx, &text, &n), 0);
    const char *key = "\"model.norm.weight\": \"";
    char *at = strstr(text, key);
    assert_non_null(at);
    char file[64];
    snprintf(file, sizeof file, "%.*s", (int)strcspn(at + strlen(key), "\""), at + strlen(key));
    free(text);
    assert_string_not_equal(file, "model-00001-of-00011.safetensors");
    char same[256], other[256];
    snprintf(same, sizeof same, "\"weight_map\": {\n    \"model.norm.weight\": \"%s\",", file);
    edit_file(idx, "\"weight_map\": {", same);
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), 0);
    compare_models(&m, &r, VT_F32);
    vt_model_free(&r);
    snprintf(other, sizeof other, "\"weight_map\": {\n    \"model.norm.weight\": \"model-00001-of-00011.safetensors\",");
    edit_file(idx, same, other);
    vt_error_clear();
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), -1);
    expect_error_has("model.safetensors.index.json: tensor model.norm.weight is listed twice",
                     "model-00001-of-00011.safetensors", file);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_hf_missing_tensor_sharded(void **state) {
    (void)state;
    vt_config c;
    pruned_config(&c);
    vt_model m, r;
    tu_random_model(&m, &c, 23);
    const char *out = tu_in_dir("hf-missing");
    assert_int_equal(vt_hf_write(&m, out, VT_F32, 4096, NULL), 0);
    char idx[4096];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", out);
    edit_file(idx, "\"model.layers.3.mlp.up_proj.weight\"", "\"model.layers.3.mlp.up_proj_renamed\"");
    vt_error_clear();
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), -1);
    expect_error_has("model.safetensors.index.json", "missing tensor model.layers.3.mlp.up_proj.weight", NULL);
    /* The config claims layer 1 has attention, but its tensors were never written. */
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    edit_file(idx, "\"model.layers.3.mlp.up_proj_renamed\"", "\"model.layers.3.mlp.up_proj.weight\"");
    edit_file(cfg, "\"num_attention_heads_per_layer\": [\n    2,\n    0,",
              "\"num_attention_heads_per_layer\": [\n    2,\n    4,");
    edit_file(cfg, "\"num_key_value_heads_per_layer\": [\n    1,\n    0,",
              "\"num_key_value_heads_per_layer\": [\n    1,\n    2,");
    assert_int_equal(vt_model_load(&r, out, vt_load_all()), -1);
    expect_error_has("missing tensor model.layers.1.input_layernorm.weight", NULL, NULL);
    vt_model_free(&m);
    vt_config_free(&c);
}

static void test_hf_write_is_atomic(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 29);
    /* A non-empty target is refused and left alone. */
    const char *out = tu_in_dir("occupied");
    assert_int_equal(vt_mkdir_p(out), 0);
    char keep[4096];
    snprintf(keep, sizeof keep, "%s/keep.txt", out);
    assert_int_equal(tu_write_file(keep, "x", 1), 0);
    vt_error_clear();
    assert_int_equal(vt_hf_write(&m, out, VT_F32, 0, NULL), -1);
    expect_error_has(out, "not empty", NULL);
    assert_true(vt_path_exists(keep));
    /* An empty target directory is fine, and the tokenizer is copied. */
    const char *empty = tu_in_dir("empty"), *tok = tu_in_dir("tok.bin");
    assert_int_equal(vt_mkdir_p(empty), 0);
    assert_int_equal(tu_write_file(tok, "tokenizer", 9), 0);
    assert_int_equal(vt_hf_write(&m, empty, VT_F32, 0, tok), 0);
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.bin", empty);
    char *text;
    size_t n;
    assert_int_equal(vt_read_file(p, &text, &n), 0);
    assert_int_equal(n, 9);
    free(text);
    /* A failure part-way (the tokenizer is missing) leaves neither the target nor a temp dir. */
    const char *failed = tu_in_dir("failed");
    assert_int_equal(vt_hf_write(&m, failed, VT_F32, 0, tu_in_dir("no-such-tokenizer.bin")), -1);
    expect_error_has("no-such-tokenizer.bin", "cannot open", NULL);
    assert_false(vt_path_exists(failed));
    int leftovers = 0;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -d %s/failed* 2>/dev/null | grep -q .", tu_dir);
    leftovers = system(cmd) == 0;
    assert_false(leftovers);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* A written HF directory is a drop-in for its source: tokenizer.json and the tokenizer, special
 * token and generation files come along; a source that is a file (a .bin) has none. */
static void test_hf_write_carries_hf_files(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 47);
    const char *src = tu_in_dir("dropin-src");
    assert_int_equal(vt_hf_write(&m, src, VT_F32, 0, NULL), 0);
    const char *names[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "generation_config.json"};
    char p[4096], q[4096];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", src, names[i]);
        assert_int_equal(tu_write_file(p, names[i], strlen(names[i])), 0);
    }
    snprintf(p, sizeof p, "%s/tokenizer.json", src);
    const char *out = tu_in_dir("dropin-out");
    assert_int_equal(vt_hf_write_from(&m, out, VT_F16, 0, p, src), 0);
    for (int i = 0; i < 4; i++) {
        snprintf(q, sizeof q, "%s/%s", out, names[i]);
        char *text;
        size_t n;
        if (vt_read_file(q, &text, &n)) fail_msg("%s was not carried over: %s", names[i], vt_error());
        assert_int_equal(n, strlen(names[i]));
        assert_memory_equal(text, names[i], n);
        free(text);
    }
    /* Absent in the source: absent in the result. */
    const char *out2 = tu_in_dir("dropin-out2");
    assert_int_equal(vt_hf_write_from(&m, out2, VT_F32, 0, NULL, tu_in_dir("dropin-out2-nosuch")), 0);
    snprintf(q, sizeof q, "%s/generation_config.json", out2);
    assert_false(vt_path_exists(q));
    vt_model_free(&m);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_stories260k),
        cmocka_unit_test(test_llama2c_round_trip_untied),
        cmocka_unit_test(test_truncated_bin),
        cmocka_unit_test(test_truncated_stories260k),
        cmocka_unit_test(test_hf_single_and_sharded),
        cmocka_unit_test(test_shard_plan),
        cmocka_unit_test(test_hf_rotate_half_not_permuted_twice),
        cmocka_unit_test(test_hf_pruned_round_trip),
        cmocka_unit_test(test_hf_biases_round_trip),
        cmocka_unit_test(test_hf_rank_local_parts),
        cmocka_unit_test(test_hf_config_disagreements),
        cmocka_unit_test(test_hf_missing_tensor_sharded),
        cmocka_unit_test(test_hf_tied_as_lm_head),
        cmocka_unit_test(test_hf_untied_key_absent),
        cmocka_unit_test(test_hf_index_lists_twice),
        cmocka_unit_test(test_hf_write_is_atomic),
        cmocka_unit_test(test_hf_write_carries_hf_files),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
