/* llama2c_bin.c — reads llama2.c v0 .bin checkpoints: header checks, size check, slice copies. */
#include "io/llama2c_bin.h"

#include <stdint.h>
#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"

#define HEADER_BYTES 28
#define LLAMA2C_V1_MAGIC 0x616b3432u /* "ak42": llama2.c's newer export versions */

/* Byte offsets of each weight array in the file (after the header). */
typedef struct {
    size_t embed, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls, end;
} bin_layout;

static int32_t read_i32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t x;
    memcpy(&x, &v, 4);
    return x;
}

/* Fills c's sizes from the header, with the config llama2.c implies; checks them (no per-layer
 * shapes yet: c->layers is NULL). */
static int parse_header(const char *path, const unsigned char *p, size_t size, vt_config *c, int *shared) {
    if (size < HEADER_BYTES)
        return vt_fail("%s: truncated: %zu bytes is shorter than the 28-byte llama2.c header", path, size);
    if ((uint32_t)read_i32(p) == LLAMA2C_V1_MAGIC)
        return vt_fail("%s: a llama2.c version 1/2 export (magic \"ak42\"); only the legacy v0 format is supported",
                       path);
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = read_i32(p + 4 * i);
    const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        int32_t v = i == 5 && h[i] < 0 && h[i] != INT32_MIN ? -h[i] : h[i]; /* INT32_MIN: refused below */
        if (v <= 0 || v > (1 << 24))
            return vt_fail("%s: bad header: %s = %d (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, "
                           "vocab_size %d, seq_len %d)",
                           path, names[i], h[i], h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    }
    memset(c, 0, sizeof *c);
    c->dim = h[0];
    c->ffn_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->vocab = h[5] < 0 ? -h[5] : h[5];
    c->seq_len = h[6];
    *shared = h[5] > 0;
    c->tied = *shared;
    if (c->dim % c->n_heads)
        return vt_fail("%s: bad header: dim %d is not a multiple of n_heads %d", path, c->dim, c->n_heads);
    if (c->n_heads % c->n_kv_heads)
        return vt_fail("%s: bad header: n_heads %d is not a multiple of n_kv_heads %d", path, c->n_heads,
                       c->n_kv_heads);
    c->head_dim = c->dim / c->n_heads;
    double d = c->dim, L = c->n_layers, kv = (double)c->n_kv_heads * c->head_dim, floats =
        (double)c->vocab * d * (*shared ? 1 : 2) + L * (2 * d + 2 * d * d + 2 * kv * d + 3.0 * c->ffn_dim * d) + d +
        (double)c->seq_len * c->head_dim;
    if (floats * 4 > 1e18)
        return vt_fail("%s: bad header: its sizes imply a %.3g-byte checkpoint", path, floats * 4);
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope = VT_ROPE_INTERLEAVED;
    return 0;
}

static void layout_of(const vt_config *c, int shared, bin_layout *b) {
    size_t L = (size_t)c->n_layers, d = (size_t)c->dim, kv = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t f = (size_t)c->ffn_dim, off = HEADER_BYTES;
#define NEXT(field, floats) (b->field = off, off += 4 * (floats))
    NEXT(embed, (size_t)c->vocab * d);
    NEXT(rms_att, L * d);
    NEXT(wq, L * d * d);
    NEXT(wk, L * kv * d);
    NEXT(wv, L * kv * d);
    NEXT(wo, L * d * d);
    NEXT(rms_ffn, L * d);
    NEXT(w1, L * f * d);
    NEXT(w2, L * d * f);
    NEXT(w3, L * f * d);
    NEXT(rms_final, d);
    off += 4 * (size_t)c->seq_len * (size_t)c->head_dim; /* freq_cis_real and freq_cis_imag, unused */
    NEXT(wcls, shared ? 0 : (size_t)c->vocab * d);
#undef NEXT
    if (shared) b->wcls = b->embed;
    b->end = off;
}

static int read_config_mapped(const char *path, const vt_mapped_file *f, vt_config *c, bin_layout *b) {
    int shared = 0;
    if (parse_header(path, f->data, f->size, c, &shared)) return -1;
    layout_of(c, shared, b);
    if (f->size != b->end) {
        vt_fail("%s: %s: the header (dim %d, hidden_dim %d, %d layers, %d heads, %d kv heads, vocab %d%s, seq_len %d) "
                "needs %zu bytes but the file has %zu",
                path, f->size < b->end ? "truncated" : "wrong size", c->dim, c->ffn_dim, c->n_layers, c->n_heads,
                c->n_kv_heads, c->vocab, shared ? " tied" : " untied", c->seq_len, b->end, f->size);
        return -1;
    }
    /* per-layer shapes only now: a 28-byte header must not allocate (and check) millions of
     * layers before the file's size has shown that it holds them (found by fuzz_llama2c) */
    if (vt_config_init_dense(c)) return -1;
    if (vt_config_validate(c, path)) {
        vt_config_free(c);
        return -1;
    }
    return 0;
}

int vt_llama2c_read_config(const char *path, vt_config *c) {
    vt_mapped_file f;
    bin_layout b;
    if (vt_map_file(&f, path)) return -1;
    int rc = read_config_mapped(path, &f, c, &b);
    vt_unmap_file(&f);
    return rc;
}

/* Copies n floats at byte offset off of the file into dst. */
static void copy_floats(float *dst, const vt_mapped_file *f, size_t off, size_t n) {
    memcpy(dst, f->data + off, n * sizeof(float));
}

int vt_llama2c_load(vt_model *m, const char *path, vt_load_parts parts) {
    vt_mapped_file f;
    vt_config c;
    bin_layout b;
    if (vt_map_file(&f, path)) return -1;
    if (read_config_mapped(path, &f, &c, &b)) {
        vt_unmap_file(&f);
        return -1;
    }
    int rc = vt_model_alloc(m, &c, parts);
    vt_config_free(&c);
    if (rc) {
        vt_unmap_file(&f);
        return vt_fail_context("%s", path);
    }
    const vt_config *cfg = &m->cfg;
    size_t d = (size_t)cfg->dim, kv = (size_t)cfg->n_kv_heads * (size_t)cfg->head_dim, ff = (size_t)cfg->ffn_dim;
    size_t vd = (size_t)cfg->vocab * d;
    if (m->has_embed) copy_floats(m->embed, &f, b.embed, vd);
    if (m->has_head) {
        copy_floats(m->final_norm, &f, b.rms_final, d);
        if (m->lm_head != m->embed) copy_floats(m->lm_head, &f, b.wcls, vd);
    }
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        vt_layer_weights *w = &m->layers[l];
        size_t i = (size_t)l;
        copy_floats(w->attn_norm, &f, b.rms_att + 4 * i * d, d);
        copy_floats(w->wq, &f, b.wq + 4 * i * d * d, d * d);
        copy_floats(w->wk, &f, b.wk + 4 * i * kv * d, kv * d);
        copy_floats(w->wv, &f, b.wv + 4 * i * kv * d, kv * d);
        copy_floats(w->wo, &f, b.wo + 4 * i * d * d, d * d);
        copy_floats(w->ffn_norm, &f, b.rms_ffn + 4 * i * d, d);
        copy_floats(w->w_gate, &f, b.w1 + 4 * i * ff * d, ff * d);
        copy_floats(w->w_down, &f, b.w2 + 4 * i * d * ff, d * ff);
        copy_floats(w->w_up, &f, b.w3 + 4 * i * ff * d, ff * d);
    }
    vt_unmap_file(&f);
    return 0;
}
